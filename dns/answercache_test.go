package dns

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
)

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(2_000_000, 0)} }

func withClock(c *fakeClock) proxyOpt { return func(cfg *Config) { cfg.Now = c.now } }

// An answer is served from the cache with its TTLs decremented by the
// time it spent there, and forwarded again once its TTL has run out.
func TestAnswerCacheTTLDecrementAndExpiry(t *testing.T) {
	clock := newFakeClock()
	up := startUpstream(t, worldAnswers(t)) // TTL 300
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr}, withClock(clock))
	ttlOf := func() uint32 {
		r := ask(t, "udp", p.addr, query("allowed.test", dns.TypeA))
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("answer %v", r)
		}
		return r.Answer[0].Header().Ttl
	}
	if got := ttlOf(); got != 300 {
		t.Errorf("first answer TTL %d, want 300", got)
	}
	clock.advance(100*time.Second + 400*time.Millisecond)
	if got := ttlOf(); got != 200 {
		t.Errorf("cached answer after 100.4 s: TTL %d, want 200", got)
	}
	if n := up.queries.Load(); n != 1 {
		t.Errorf("%d upstream queries after a cache hit, want 1", n)
	}
	clock.advance(200 * time.Second)
	if got := ttlOf(); got != 300 {
		t.Errorf("answer after expiry: TTL %d, want a fresh 300", got)
	}
	if n := up.queries.Load(); n != 2 {
		t.Errorf("%d upstream queries after expiry, want 2", n)
	}
	lines := auditLines(p.logs, obs.MsgDNSAllowed)
	var cached []any
	for _, l := range lines {
		cached = append(cached, field(l, "cached"))
	}
	if fmt.Sprint(cached) != "[false true false]" {
		t.Errorf("cached fields %v, want [false true false]", cached)
	}
	if field(lines[1], "answers") != int64(1) {
		t.Errorf("cache hit learned %v addresses, want 1", field(lines[1], "answers"))
	}
}

// soaNegative answers NXDOMAIN for nx.allowed.test and NODATA for AAAA of
// nodata.allowed.test, both with an SOA of TTL 3600 and MINIMUM 30, and
// NXDOMAIN without an SOA for nosoa.allowed.test; SERVFAIL and REFUSED
// for the names that say so.
func soaNegative(t *testing.T) handleFunc {
	const soa = "allowed.test. 3600 IN SOA ns.allowed.test. admin.allowed.test. 1 7200 900 1209600 30"
	return func(_ string, q *dns.Msg) *dns.Msg {
		m := answer(t, q)
		switch strings.ToLower(q.Question[0].Name) {
		case "nx.allowed.test.":
			m.Rcode = dns.RcodeNameError
			m.Ns = rrs(t, soa)
		case "nodata.allowed.test.":
			m.Ns = rrs(t, soa)
		case "nosoa.allowed.test.":
			m.Rcode = dns.RcodeNameError
		case "servfail.allowed.test.":
			m.Rcode = dns.RcodeServerFailure
		case "refused.allowed.test.":
			m.Rcode = dns.RcodeRefused
		}
		return m
	}
}

// Negative answers are cached per RFC 2308 for the lower of the SOA's
// TTL and MINIMUM; without an SOA they are not cached, nor are SERVFAIL
// and REFUSED.
func TestAnswerCacheNegative(t *testing.T) {
	clock := newFakeClock()
	up := startUpstream(t, soaNegative(t))
	p := startProxy(t, allowlist("*.allowed.test"), []string{up.addr}, withClock(clock))
	tests := []struct {
		name    string
		qtype   uint16
		rcode   int
		cached  bool
		soaTTLs []uint32 // the SOA's TTL at the second and third ask
	}{
		{"nx.allowed.test", dns.TypeA, dns.RcodeNameError, true, []uint32{3590, 3580}},
		{"nodata.allowed.test", dns.TypeAAAA, dns.RcodeSuccess, true, []uint32{3590, 3580}},
		{"nosoa.allowed.test", dns.TypeA, dns.RcodeNameError, false, nil},
		{"servfail.allowed.test", dns.TypeA, dns.RcodeServerFailure, false, nil},
		{"refused.allowed.test", dns.TypeA, dns.RcodeRefused, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.queries.Load()
			for i := range 3 {
				r := ask(t, "udp", p.addr, query(tt.name, tt.qtype))
				if r.Rcode != tt.rcode {
					t.Fatalf("ask %d: rcode %s, want %s", i, dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
				}
				if i > 0 && tt.cached && (len(r.Ns) != 1 || r.Ns[0].Header().Ttl != tt.soaTTLs[i-1]) {
					t.Errorf("ask %d: authority %v, want the SOA with TTL %d", i, r.Ns, tt.soaTTLs[i-1])
				}
				clock.advance(10 * time.Second)
			}
			want := int64(3)
			if tt.cached {
				want = 1
			}
			// The forwarder fails over on SERVFAIL/REFUSED only between
			// upstreams; with one, each ask is one query.
			if got := up.queries.Load() - before; got != want {
				t.Errorf("%d upstream queries for 3 asks, want %d", got, want)
			}
		})
	}
	// The negative TTL is MINIMUM (30 s), not the SOA's 3600: 30 s after
	// it was stored, nx.allowed.test is asked upstream again.
	before := up.queries.Load()
	ask(t, "udp", p.addr, query("nx.allowed.test", dns.TypeA))
	if up.queries.Load() != before+1 {
		t.Error("negative answer outlived the SOA MINIMUM")
	}
}

// The DO bit (and the presence of EDNS) are part of the key: a DNSSEC
// answer is never served to a query without DO, nor an answer with an
// OPT record to a query without one.
func TestAnswerCacheDOBitSeparate(t *testing.T) {
	up := startUpstream(t, func(_ string, q *dns.Msg) *dns.Msg {
		n := q.Question[0].Name
		m := answer(t, q, n+" 300 IN A 198.51.100.1")
		if opt := q.IsEdns0(); opt != nil && opt.Do() {
			m.Answer = append(m.Answer, rrs(t, n+" 300 IN RRSIG A 13 2 300 20300101000000 20200101000000 12345 allowed.test. AAAA")...)
		}
		return m
	})
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr})
	plain, withDO, edns := query("allowed.test", dns.TypeA), query("allowed.test", dns.TypeA), query("allowed.test", dns.TypeA)
	withDO.SetEdns0(1232, true)
	edns.SetEdns0(1232, false)
	for round := range 2 {
		if r := ask(t, "udp", p.addr, withDO); len(r.Answer) != 2 {
			t.Errorf("round %d: DO query got %d records, want A and RRSIG", round, len(r.Answer))
		}
		if r := ask(t, "udp", p.addr, plain); len(r.Answer) != 1 || r.IsEdns0() != nil {
			t.Errorf("round %d: plain query got %d records, OPT %v; want the A alone, no OPT", round, len(r.Answer), r.IsEdns0())
		}
		if r := ask(t, "udp", p.addr, edns); len(r.Answer) != 1 || r.IsEdns0() == nil {
			t.Errorf("round %d: EDNS query without DO got %d records, OPT %v; want the A with an OPT", round, len(r.Answer), r.IsEdns0())
		}
	}
	if n := up.queries.Load(); n != 3 {
		t.Errorf("%d upstream queries, want 3 (one per key)", n)
	}
}

// switchPolicy is a decider whose policy a test replaces, as a reload does.
type switchPolicy struct{ p atomic.Pointer[fakePolicy] }

func (s *switchPolicy) Mode() policy.Mode { return s.p.Load().Mode() }
func (s *switchPolicy) CheckName(name string, port uint16) policy.Verdict {
	return s.p.Load().CheckName(name, port)
}

// A reload that denies a name is obeyed at the next query: the cached
// answer is not served, and the denial carries an Extended DNS Error.
func TestAnswerCacheReloadDenies(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	var pol switchPolicy
	pol.p.Store(allowlist("allowed.test"))
	p := startProxy(t, &pol, []string{up.addr})
	q := query("allowed.test", dns.TypeA)
	q.SetEdns0(1232, false)
	for range 2 {
		if r := ask(t, "udp", p.addr, q); r.Rcode != dns.RcodeSuccess {
			t.Fatalf("allowed: %s", dns.RcodeToString[r.Rcode])
		}
	}
	pol.p.Store(allowlist("other.test"))
	r := ask(t, "udp", p.addr, q)
	if r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
		t.Fatalf("after the reload: rcode %s with %d answers, want REFUSED and none", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	if code, text := edeOf(r); code != dns.ExtendedErrorCodeBlocked || text != policy.ReasonNotAllowed {
		t.Errorf("EDE %d %q, want Blocked (%d) %q", code, text, dns.ExtendedErrorCodeBlocked, policy.ReasonNotAllowed)
	}
	denied := auditLines(p.logs, obs.MsgDNSDenied)
	if len(denied) != 1 || field(denied[0], "cached") != false {
		t.Errorf("denial lines %v, want one, not cached", denied)
	}
}

func edeOf(r *dns.Msg) (uint16, string) {
	if opt := r.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e.InfoCode, e.ExtraText
			}
		}
	}
	return 0xFFFF, ""
}

// Denials carry EDE Blocked with the reason only when the query had EDNS
// (an OPT may not answer a query without one).
func TestDenialEDE(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr})
	q := query("denied.test", dns.TypeA)
	if r := ask(t, "udp", p.addr, q); r.IsEdns0() != nil {
		t.Errorf("denial of a query without EDNS has an OPT: %v", r)
	}
	q.SetEdns0(1232, false)
	r := ask(t, "udp", p.addr, q)
	if code, text := edeOf(r); code != dns.ExtendedErrorCodeBlocked || text != policy.ReasonNotAllowed {
		t.Errorf("EDE %d %q, want Blocked %q", code, text, policy.ReasonNotAllowed)
	}
}

// In a dry run a would-deny query is answered from the cache as it would
// be forwarded: audited as would_deny and cached, nothing learned.
func TestAnswerCacheDryRun(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	var pol switchPolicy
	pol.p.Store(allowlist("allowed.test"))
	p := startProxy(t, &pol, []string{up.addr}, func(c *Config) { c.DryRun = true })
	ask(t, "udp", p.addr, query("allowed.test", dns.TypeA))
	pol.p.Store(allowlist("other.test"))
	p.Cache().Learn("placeholder.test", netip.MustParseAddr("192.0.2.1"), time.Minute)
	r := ask(t, "udp", p.addr, query("allowed.test", dns.TypeA))
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("dry run would-deny: %v", r)
	}
	lines := auditLines(p.logs, obs.MsgDNSAllowed)
	last := lines[len(lines)-1]
	if field(last, "would_deny") != true || field(last, "cached") != true || field(last, "answers") != int64(0) {
		t.Errorf("dry-run line %v, want would_deny, cached, 0 answers", last.ContextMap())
	}
	if up.queries.Load() != 1 {
		t.Errorf("%d upstream queries, want 1", up.queries.Load())
	}
}

// Concurrent identical misses make one upstream query.
func TestAnswerCacheCoalescesMisses(t *testing.T) {
	release := make(chan struct{})
	up := startUpstream(t, func(_ string, q *dns.Msg) *dns.Msg {
		<-release
		return answer(t, q, q.Question[0].Name+" 300 IN A 198.51.100.1")
	})
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr}, func(c *Config) { c.Timeout = 3 * time.Second })
	const n = 20
	var wg sync.WaitGroup
	var answered atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := query("allowed.test", dns.TypeA)
			q.Id = uint16(100 + i)
			r := ask(t, "udp", p.addr, q)
			if r.Id == q.Id && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
				answered.Add(1)
			}
		}()
	}
	// Let every query reach the proxy before the one upstream answers.
	deadline := time.Now().Add(2 * time.Second)
	for up.queries.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	close(release)
	wg.Wait()
	if answered.Load() != n {
		t.Errorf("%d of %d coalesced queries answered with their own ID", answered.Load(), n)
	}
	if got := up.queries.Load(); got != 1 {
		t.Errorf("%d upstream queries for %d concurrent identical misses, want 1", got, n)
	}
}

// A flood of unique names evicts: the cache stays within its bytes.
func TestAnswerCacheFloodEvicts(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	const limit = 32 << 10
	p := startProxy(t, allowlist("*.allowed.test"), []string{up.addr}, func(c *Config) { c.AnswerCacheBytes = limit })
	for i := range 1000 {
		ask(t, "udp", p.addr, query(fmt.Sprintf("n%d.allowed.test", i), dns.TypeA))
		if b, _ := p.answers.stats(); b > limit {
			t.Fatalf("cache holds %d bytes after %d names, bound %d", b, i+1, limit)
		}
	}
	b, n := p.answers.stats()
	if n == 0 || n >= 1000 {
		t.Errorf("cache holds %d answers (%d bytes) after 1000 names, want some but not all", n, b)
	}
	// The newest survive.
	before := up.queries.Load()
	ask(t, "udp", p.addr, query("n999.allowed.test", dns.TypeA))
	if up.queries.Load() != before {
		t.Error("the newest answer was evicted")
	}
}

// Cache hits feed the learned-IP cache: an address evicted from it is
// learned again when its answer is served from the answer cache.
func TestAnswerCacheFeedsLearned(t *testing.T) {
	up := startUpstream(t, func(_ string, q *dns.Msg) *dns.Msg {
		if strings.HasPrefix(q.Question[0].Name, "a.") {
			return answer(t, q, q.Question[0].Name+" 300 IN A 198.51.100.1")
		}
		return answer(t, q, q.Question[0].Name+" 300 IN A 198.51.100.2")
	})
	p := startProxy(t, allowlist("*.allowed.test"), []string{up.addr}, func(c *Config) { c.CacheSize = 1 })
	ask(t, "udp", p.addr, query("a.allowed.test", dns.TypeA))
	ask(t, "udp", p.addr, query("b.allowed.test", dns.TypeA)) // evicts a's address
	if p.Cache().Knows("a.allowed.test", netip.MustParseAddr("198.51.100.1")) {
		t.Fatal("learned cache of size 1 kept both")
	}
	ask(t, "udp", p.addr, query("a.allowed.test", dns.TypeA))
	if !p.Cache().Knows("a.allowed.test", netip.MustParseAddr("198.51.100.1")) {
		t.Error("an answer served from the cache did not teach its address")
	}
	if up.queries.Load() != 2 {
		t.Errorf("%d upstream queries, want 2", up.queries.Load())
	}
}

// Resolve (the supervisor's lookups) uses answers the agent's queries
// cached, and spends no rate on them.
func TestResolveUsesAnswerCache(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	// A bucket of two, spent by the agent's two queries: Resolve must
	// not need a token.
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr}, func(c *Config) {
		c.RateLimit, c.RateBurst, c.Now = 1, 2, frozen()
	})
	ask(t, "udp", p.addr, query("allowed.test", dns.TypeA))
	ask(t, "udp", p.addr, query("allowed.test", dns.TypeAAAA))
	addrs, err := p.Resolve(context.Background(), "allowed.test")
	if err != nil || len(addrs) != 2 {
		t.Fatalf("Resolve: %v %v", addrs, err)
	}
	if up.queries.Load() != 2 {
		t.Errorf("%d upstream queries, want 2 (Resolve answered from the cache)", up.queries.Load())
	}
}

// ECH configs are stripped from HTTPS answers (forwarded and cached), so
// clients send their real name in the ClientHello; other SvcParams stay.
func TestECHStripped(t *testing.T) {
	up := startUpstream(t, func(_ string, q *dns.Msg) *dns.Msg {
		n := q.Question[0].Name
		switch q.Question[0].Qtype {
		case dns.TypeHTTPS:
			return answer(t, q, n+` 300 IN HTTPS 1 . alpn="h2,h3" ech="AEX+DQBBpQAgACB/RJQvYL2fqhSI4mV8QhF6QPbPNl7Y3l0v1aFmeHdbIAAEAAEAAQASY2xvdWRmbGFyZS1lY2guY29tAAA=" ipv4hint=198.51.100.1`)
		case dns.TypeSVCB:
			return answer(t, q, "_dns."+n+` 300 IN SVCB 1 dns.allowed.test. ech="AEX+DQBBpQAgACB/RJQvYL2fqhSI4mV8QhF6QPbPNl7Y3l0v1aFmeHdbIAAEAAEAAQASY2xvdWRmbGFyZS1lY2guY29tAAA=" port=853`)
		}
		return answer(t, q)
	})
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr})
	for round := range 2 {
		for _, qt := range []uint16{dns.TypeHTTPS, dns.TypeSVCB} {
			r := ask(t, "udp", p.addr, query("allowed.test", qt))
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("round %d %s: %v", round, dns.TypeToString[qt], r)
			}
			text := r.Answer[0].String()
			if strings.Contains(text, "ech=") {
				t.Errorf("round %d: ech passed through: %s", round, text)
			}
			if qt == dns.TypeHTTPS && (!strings.Contains(text, `alpn="h2,h3"`) || !strings.Contains(text, `ipv4hint="198.51.100.1"`)) {
				t.Errorf("round %d: other SvcParams lost: %s", round, text)
			}
			if qt == dns.TypeSVCB && !strings.Contains(text, `port="853"`) {
				t.Errorf("round %d: other SvcParams lost: %s", round, text)
			}
		}
	}
	if up.queries.Load() != 2 {
		t.Errorf("%d upstream queries, want 2 (the second round from the cache)", up.queries.Load())
	}
}

// In a dry run without a policy (no name to key on) every would-deny
// query is forwarded alone: answers are neither shared between names nor
// cached.
func TestDryRunWithoutKeyNotCached(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	p := startProxy(t, nil, []string{up.addr}, func(c *Config) { c.DryRun = true })
	for range 2 {
		for _, name := range []string{"a.test", "b.test"} {
			r := ask(t, "udp", p.addr, query(name, dns.TypeA))
			if len(r.Answer) != 1 || r.Answer[0].Header().Name != name+"." {
				t.Fatalf("%s: answer %v", name, r.Answer)
			}
		}
	}
	if n := up.queries.Load(); n != 4 {
		t.Errorf("%d upstream queries, want 4 (nothing cached)", n)
	}
}

// TestAnswerCacheRefusesNamesOverRewrittenBytes: a name read through a
// pointer whose labels cross a TTL would change as the copy ages (the
// fuzz crasher in testdata/fuzz/FuzzCachedAnswer); such an answer is not
// cached. An address that looks like a pointer (192.0.2.1: 0xC0 0x00)
// does not stop an ordinary answer from being cached.
func TestAnswerCacheRefusesNamesOverRewrittenBytes(t *testing.T) {
	qb := packedQuery(t, "www.allowed.test", dns.TypeA, 0x4242)
	key := answerKey{name: "www.allowed.test", qtype: dns.TypeA}
	cache := func(raw []byte) bool {
		var idx [stackRRs]rrRef
		msg := append([]byte(nil), raw...)
		a, err := parseAnswer(msg, qb, idx[:])
		if err != nil {
			t.Fatalf("walker refuses the answer: %v", err)
		}
		_, ok := newCachedAnswer(key, msg, a, nil, time.Unix(5_000_000, 0))
		return ok
	}
	hostile := []byte("BB\x810\x00\x01000000\x03www\aAllowed\x04test\x00\x00\x01\x00\x01\xc0700000000\x00\v00000\x03000\xc0C\xc0100000000\x00\x05\x0200\xc01\xc0100000000\x00\x040000\x000000000\x00\x00\x00")
	if cache(hostile) {
		t.Error("an answer whose names read TTL bytes was cached")
	}
	if !cache(packedAnswer(t, replyTo(t, qb, "www.allowed.test. 300 IN A 192.0.2.1"), true)) {
		t.Error("an ordinary answer for 192.0.2.1 was not cached")
	}
}
