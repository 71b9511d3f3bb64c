package dns

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func rrs(t *testing.T, lines ...string) []dns.RR {
	t.Helper()
	out := make([]dns.RR, 0, len(lines))
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("bad RR %q: %v", l, err)
		}
		out = append(out, rr)
	}
	return out
}

func TestChainAddrs(t *testing.T) {
	tests := []struct {
		name   string
		answer []string
		want   []learnedAddr
	}{
		{"direct A and AAAA", []string{
			"www.allowed.test. 300 IN A 198.51.100.1",
			"www.allowed.test. 200 IN AAAA 2001:db8::1",
		}, []learnedAddr{{ip1, 300 * time.Second}, {ip6, 200 * time.Second}}},
		{"CNAME chain keeps the lowest TTL", []string{
			"www.allowed.test. 30 IN CNAME edge.cdn.test.",
			"edge.cdn.test. 600 IN CNAME e1.cdn.test.",
			"e1.cdn.test. 300 IN A 198.51.100.1",
		}, []learnedAddr{{ip1, 30 * time.Second}}},
		{"record TTL below the chain's", []string{
			"www.allowed.test. 300 IN CNAME e1.cdn.test.",
			"e1.cdn.test. 20 IN A 198.51.100.1",
		}, []learnedAddr{{ip1, 20 * time.Second}}},
		{"case-insensitive owners", []string{
			"WWW.Allowed.TEST. 300 IN CNAME E1.cdn.test.",
			"e1.CDN.test. 300 IN A 198.51.100.1",
		}, []learnedAddr{{ip1, 300 * time.Second}}},
		{"records off the chain ignored", []string{
			"www.allowed.test. 300 IN CNAME e1.cdn.test.",
			"e1.cdn.test. 300 IN A 198.51.100.1",
			"bank.example. 300 IN A 198.51.100.3",
			"www.allowed.test. 300 IN A 198.51.100.3", // owner is a CNAME: not its address
		}, []learnedAddr{{ip1, 300 * time.Second}}},
		{"CNAME loop ends", []string{
			"www.allowed.test. 300 IN CNAME a.loop.test.",
			"a.loop.test. 300 IN CNAME www.allowed.test.",
		}, nil},
		{"dangling CNAME", []string{
			"www.allowed.test. 300 IN CNAME gone.test.",
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := chainAddrs("www.allowed.test.", rrs(t, tt.answer...))
			if !slices.Equal(got, tt.want) {
				t.Errorf("chainAddrs = %v, want %v", got, tt.want)
			}
		})
	}
}

// The proxy learns a CNAME'd answer under the name the agent asked, with
// the chain's TTL raised to MinTTL.
func TestLearnsCNAMEChainForAskedName(t *testing.T) {
	up := startUpstream(t, func(_ string, q *dns.Msg) *dns.Msg {
		return answer(t, q,
			q.Question[0].Name+" 5 IN CNAME edge.cdn.test.",
			"edge.cdn.test. 300 IN A 198.51.100.1",
			"unrelated.test. 300 IN A 198.51.100.3",
		)
	})
	clk := &fakeClock{t: time.Unix(1e6, 0)}
	p := startProxy(t, allowlist("www.allowed.test"), []string{up.addr}, func(c *Config) {
		c.MinTTL = 30 * time.Second
		c.Now = clk.now
	})
	r := ask(t, "udp", p.addr, query("WWW.allowed.TEST", dns.TypeA))
	if len(r.Answer) != 3 {
		t.Fatalf("agent got %d answers, want the upstream's 3 unchanged", len(r.Answer))
	}
	if got := p.NamesFor(ip1); !slices.Equal(got, []string{"www.allowed.test"}) {
		t.Fatalf("NamesFor(%s) = %v, want [www.allowed.test]", ip1, got)
	}
	if p.NamesFor(ip2) != nil {
		t.Error("learned an address off the CNAME chain")
	}
	if p.Cache().Knows("edge.cdn.test", ip1) {
		t.Error("learned the CNAME target's name, want only the asked name")
	}
	clk.advance(29 * time.Second)
	if !p.Cache().Knows("www.allowed.test", ip1) {
		t.Error("forgot before MinTTL (chain TTL 5 s raised to 30 s)")
	}
	clk.advance(2 * time.Second)
	if p.Cache().Knows("www.allowed.test", ip1) {
		t.Error("still known after MinTTL")
	}
}

func TestResolveAndResolverSemantics(t *testing.T) {
	up := startUpstream(t, func(_ string, q *dns.Msg) *dns.Msg {
		n := q.Question[0].Name
		if n == "nx.allowed.test." {
			m := new(dns.Msg)
			return m.SetRcode(q, dns.RcodeNameError)
		}
		switch q.Question[0].Qtype {
		case dns.TypeA:
			return answer(t, q, n+" 300 IN A 198.51.100.1")
		case dns.TypeAAAA:
			return answer(t, q, n+" 300 IN AAAA 2001:db8::1")
		}
		return answer(t, q)
	})
	p := startProxy(t, allowlist("*.allowed.test"), []string{up.addr})
	ctx := context.Background()

	addrs, err := p.Resolve(ctx, "API.allowed.test.")
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	if want := []netip.Addr{ip1, ip6}; !slices.Equal(addrs, want) {
		t.Fatalf("Resolve = %v, want %v", addrs, want)
	}
	if got := p.NamesFor(ip6); !slices.Equal(got, []string{"api.allowed.test"}) {
		t.Errorf("NamesFor after Resolve = %v", got)
	}
	before := up.queries.Load()
	if !p.Resolves(ctx, "api.allowed.test", netip.AddrFrom16(ip1.As16())) {
		t.Error("Resolves(api, 4in6 form of a learned address) = false")
	}
	if up.queries.Load() != before {
		t.Error("Resolves asked upstream for a cached pair")
	}
	// A miss triggers a fresh lookup, which learns.
	if !p.Resolves(ctx, "fresh.allowed.test", ip1) || up.queries.Load() != before+2 {
		t.Errorf("Resolves(fresh) did not do one fresh A+AAAA lookup (queries %d → %d)", before, up.queries.Load())
	}
	for _, tt := range []struct {
		name string
		ip   netip.Addr
	}{
		{"api.allowed.test", ip2}, // resolves, but not there
		{"nx.allowed.test", ip1},  // NXDOMAIN
		{"bad..name", ip1},        // invalid
		{"api.allowed.test", netip.Addr{}},
	} {
		if p.Resolves(ctx, tt.name, tt.ip) {
			t.Errorf("Resolves(%q, %v) = true, want false", tt.name, tt.ip)
		}
	}
	if _, err := p.Resolve(ctx, "nx.allowed.test"); err == nil {
		t.Error("Resolve(NXDOMAIN) returned no error")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.Resolve(cctx, "other.allowed.test"); err == nil {
		t.Error("Resolve with a cancelled context succeeded")
	}
}

// TestResolveObeysPolicyAndLabelCaps: the supervisor's own lookups never
// send upstream a name the DNS proxy would refuse the agent — not a denied
// name, not one over the wildcard label caps (an SNI or CONNECT target
// under an allowed wildcard must not become an exfiltration query).
func TestResolveObeysPolicyAndLabelCaps(t *testing.T) {
	var asked atomic.Int64
	up := startUpstream(t, func(_ string, q *dns.Msg) *dns.Msg {
		asked.Add(1)
		return answer(t, q, q.Question[0].Name+" 300 IN A 198.51.100.1")
	})
	p := startProxy(t, allowlist("*.allowed.test"), []string{up.addr}, func(c *Config) {
		c.MaxLabels, c.MaxLabelLen = 5, 20
	})
	ctx := context.Background()
	for _, name := range []string{
		"evil.test",
		strings.Repeat("a", 40) + ".allowed.test",
		"a.b.c.d.e.allowed.test",
	} {
		if _, err := p.Resolve(ctx, name); err == nil {
			t.Errorf("Resolve(%q) succeeded", name)
		}
	}
	if n := asked.Load(); n != 0 {
		t.Fatalf("%d queries reached the upstream for refused names", n)
	}
	if _, err := p.Resolve(ctx, "api.allowed.test"); err != nil {
		t.Fatalf("allowed name: %v", err)
	}
}
