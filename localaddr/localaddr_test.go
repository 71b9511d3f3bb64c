package localaddr

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestContains(t *testing.T) {
	now := time.Unix(1000, 0)
	reads := 0
	own := []netip.Addr{netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("2001:db8::2")}
	s := newSet(func() ([]netip.Addr, error) { reads++; return own, nil }, func() time.Time { return now })
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", true}, {"127.13.37.1", true}, {"::1", true},
		{"198.51.100.2", true}, {"::ffff:198.51.100.2", true}, {"2001:db8::2", true},
		{"198.51.100.3", false}, {"2001:db8::3", false}, {"10.0.0.1", false},
	} {
		if got := s.Contains(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("Contains(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
	if reads != 1 {
		t.Errorf("%d reads of the addresses within one interval, want 1", reads)
	}
	// A new address is seen after the interval.
	own = append(own, netip.MustParseAddr("198.51.100.9"))
	if s.Contains(netip.MustParseAddr("198.51.100.9")) {
		t.Error("an address added within the interval was seen without a refresh")
	}
	now = now.Add(refreshInterval)
	if !s.Contains(netip.MustParseAddr("198.51.100.9")) {
		t.Error("an address added earlier is not seen after the interval")
	}
}

func TestUnreadableAddressesAreNotLocal(t *testing.T) {
	s := newSet(func() ([]netip.Addr, error) { return nil, errors.New("netlink down") }, time.Now)
	if s.Contains(netip.MustParseAddr("198.51.100.2")) {
		t.Error("an address was called local although none could be read")
	}
	if !s.Contains(netip.MustParseAddr("127.0.0.1")) {
		t.Error("loopback is always local")
	}
}

// TestConcurrentContains is for -race: hits read without the lock while
// misses refresh.
func TestConcurrentContains(t *testing.T) {
	own := []netip.Addr{netip.MustParseAddr("198.51.100.2")}
	s := newSet(func() ([]netip.Addr, error) { return own, nil }, time.Now)
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := range 1000 {
				ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(2 + (i+j)%2)})
				if got := s.Contains(ip); got != (ip == own[0]) {
					t.Errorf("Contains(%s) = %v", ip, got)
					return
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
}
