package dns

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	ip1 = netip.MustParseAddr("198.51.100.1")
	ip2 = netip.MustParseAddr("198.51.100.3")
	ip6 = netip.MustParseAddr("2001:db8::1")
)

func TestCacheExpiryHonoursTTLAndMinimum(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e6, 0)}
	c := NewCache(10, 60*time.Second, clk.now)
	c.Learn("short.test", ip1, 5*time.Second)  // raised to 60s
	c.Learn("long.test", ip1, 300*time.Second) // kept
	steps := []struct {
		at          time.Duration
		short, long bool
	}{
		{0, true, true},
		{59 * time.Second, true, true},
		{60 * time.Second, false, true}, // minimum TTL over
		{299 * time.Second, false, true},
		{300 * time.Second, false, false},
	}
	start := clk.now()
	for _, s := range steps {
		clk.advance(start.Add(s.at).Sub(clk.now()))
		if got := c.Knows("short.test", ip1); got != s.short {
			t.Errorf("at %v: Knows(short.test) = %v, want %v", s.at, got, s.short)
		}
		if got := c.Knows("long.test", ip1); got != s.long {
			t.Errorf("at %v: Knows(long.test) = %v, want %v", s.at, got, s.long)
		}
	}
}

func TestCacheRelearnExtendsNeverShortens(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e6, 0)}
	c := NewCache(10, time.Second, clk.now)
	c.Learn("a.test", ip1, 100*time.Second)
	c.Learn("a.test", ip1, 10*time.Second) // must not cut the 100 s
	clk.advance(50 * time.Second)
	if !c.Knows("a.test", ip1) {
		t.Fatal("a shorter re-learn shortened the entry")
	}
	c.Learn("a.test", ip1, 100*time.Second) // now lives until 150 s
	clk.advance(90 * time.Second)
	if !c.Knows("a.test", ip1) {
		t.Fatal("a longer re-learn did not extend the entry")
	}
	if c.Len() != 1 {
		t.Errorf("Len %d after re-learning one pair, want 1", c.Len())
	}
}

func TestCacheLRUBound(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e6, 0)}
	c := NewCache(3, time.Minute, clk.now)
	for i := range 3 {
		c.Learn(fmt.Sprintf("n%d.test", i), ip1, time.Hour)
	}
	c.Knows("n0.test", ip1) // n0 is now the most recently used
	c.Learn("n3.test", ip1, time.Hour)
	if c.Len() != 3 {
		t.Fatalf("Len %d, want the bound 3", c.Len())
	}
	if c.Knows("n1.test", ip1) {
		t.Error("n1 (least recently used) survived eviction")
	}
	for _, n := range []string{"n0.test", "n2.test", "n3.test"} {
		if !c.Knows(n, ip1) {
			t.Errorf("%s evicted, want kept", n)
		}
	}
	if got, want := c.NamesFor(ip1), []string{"n0.test", "n2.test", "n3.test"}; !slices.Equal(got, want) {
		t.Errorf("NamesFor after eviction = %v, want %v", got, want)
	}
}

func TestCacheDropsExpiredBeforeEvictingLive(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e6, 0)}
	c := NewCache(2, time.Second, clk.now)
	c.Learn("old.test", ip1, time.Second)
	c.Learn("live.test", ip1, time.Hour)
	c.Knows("old.test", ip1) // old is most recent but about to expire
	clk.advance(2 * time.Second)
	c.Learn("new.test", ip2, time.Hour)
	if !c.Knows("live.test", ip1) || !c.Knows("new.test", ip2) {
		t.Error("a live entry was evicted while an expired one was held")
	}
}

func TestCacheNamesForAndUnmapped(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e6, 0)}
	c := NewCache(0, time.Minute, clk.now)
	c.Learn("b.test", ip1, time.Minute)
	c.Learn("a.test", netip.AddrFrom16(ip1.As16()), time.Hour) // ::ffff:198.51.100.1
	c.Learn("c.test", ip6, time.Hour)
	c.Learn("", ip1, time.Hour)                // ignored
	c.Learn("d.test", netip.Addr{}, time.Hour) // ignored
	if got, want := c.NamesFor(ip1), []string{"a.test", "b.test"}; !slices.Equal(got, want) {
		t.Errorf("NamesFor(%s) = %v, want %v", ip1, got, want)
	}
	if !c.Knows("a.test", ip1) || !c.Knows("b.test", netip.AddrFrom16(ip1.As16())) {
		t.Error("4in6 and plain IPv4 forms do not match")
	}
	clk.advance(90 * time.Second)
	if got, want := c.NamesFor(ip1), []string{"a.test"}; !slices.Equal(got, want) {
		t.Errorf("NamesFor after b expired = %v, want %v", got, want)
	}
	if got := c.NamesFor(ip2); got != nil {
		t.Errorf("NamesFor(unknown) = %v, want nil", got)
	}
	if c.Len() != 3 {
		t.Errorf("Len %d, want 3", c.Len())
	}
}

func TestCacheConcurrent(t *testing.T) {
	c := NewCache(64, time.Minute, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(i % 7)})
				name := fmt.Sprintf("n%d-%d.test", g, i%97)
				c.Learn(name, ip, time.Minute)
				c.Knows(name, ip)
				c.NamesFor(ip)
			}
		})
	}
	wg.Wait()
	if c.Len() > 64 {
		t.Errorf("Len %d over the bound 64", c.Len())
	}
}
