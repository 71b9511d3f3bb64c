package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/forge/forge-supervisor/policy"
)

// policyDoc builds an allowlist of n domain rules, half exact names and
// half wildcards, spread over allowed_domains and tool_domains as Forge
// writes them, plus a few allowed_tcp entries.
func policyDoc(n int) []byte {
	var exact, wild []string
	for i := range n {
		if i%2 == 0 {
			exact = append(exact, fmt.Sprintf("host-%d.example-%d.test", i, i%97))
		} else {
			wild = append(wild, fmt.Sprintf("*.zone-%d.example.test", i))
		}
	}
	doc := map[string]any{
		"profile":         "standard",
		"mode":            "allowlist",
		"allowed_domains": exact,
		"tool_domains":    wild,
		"all_domains":     append(append([]string{}, exact...), wild...),
		"allowed_tcp":     []string{"db.example.test:5432", "*.svc.example.test:8443", "198.51.100.7:5432"},
	}
	data, err := json.Marshal(doc)
	if err != nil {
		panic(err) // a map of strings always marshals
	}
	return data
}

// benchResolver answers like the DNS proxy's learned cache: every name
// resolves to worldAddr's IP, and that IP was learned for one allowed name.
type benchResolver struct{ learned []string }

func (benchResolver) Resolves(context.Context, string, netip.Addr) bool { return true }
func (r benchResolver) NamesFor(netip.Addr) []string                    { return r.learned }

var policySizes = []int{10, 1_000, 10_000}

// BenchmarkPolicyCheckName: the cost of one name lookup must not grow with
// the number of rules, and an already-normalized name allocates nothing.
func BenchmarkPolicyCheckName(b *testing.B) {
	for _, n := range policySizes {
		p, err := policy.Parse(policyDoc(n))
		if err != nil {
			b.Fatal(err)
		}
		cases := []struct {
			name  string
			host  string
			allow bool
		}{
			{"hit_exact", fmt.Sprintf("host-%d.example-%d.test", n/2&^1, (n/2&^1)%97), true},
			{"hit_wildcard", fmt.Sprintf("a.b.c.zone-%d.example.test", n/2|1), true},
			{"miss", "unlisted.deep.sub.domain.nowhere.test", false},
			{"hit_exact_uppercase", fmt.Sprintf("HOST-%d.example-%d.test.", n/2&^1, (n/2&^1)%97), true},
		}
		for _, c := range cases {
			b.Run(fmt.Sprintf("rules=%d/%s", n, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if v := p.CheckName(c.host, 443); v.Allow != c.allow {
						b.Fatalf("CheckName(%s) = %+v, want allow=%t", c.host, v, c.allow)
					}
				}
			})
		}
	}
}

// BenchmarkPolicyDecide: the whole per-connection decision, for a claimed
// allowed name (with SNI/IP verification), a learned IP (opaque traffic),
// and a denial.
func BenchmarkPolicyDecide(b *testing.B) {
	p, err := policy.Parse(policyDoc(10_000))
	if err != nil {
		b.Fatal(err)
	}
	ip := worldAddr.Addr()
	allowed := "host-100.example-3.test"
	// Nameless traffic rides on a learned name only off the web ports:
	// db.example.test is granted on 5432 by allowed_tcp.
	var r policy.Resolver = benchResolver{learned: []string{"unlisted.test", allowed, "db.example.test"}}
	ctx := context.Background()
	cases := []struct {
		name   string
		req    policy.Request
		reason string
	}{
		{"sni_allowed", policy.Request{Name: allowed, IP: ip, Port: 443}, policy.ReasonAllowedDomain},
		{"learned_ip", policy.Request{IP: ip, Port: 5432}, policy.ReasonLearnedIP},
		{"not_in_allowlist", policy.Request{Name: "evil.test", IP: ip, Port: 443}, policy.ReasonNotAllowed},
		{"metadata", policy.Request{Name: allowed, IP: netip.MustParseAddr("169.254.169.254"), Port: 80}, policy.ReasonMetadata},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if v := p.Decide(ctx, c.req, r); v.Reason != c.reason {
					b.Fatalf("Decide(%+v) = %+v, want %s", c.req, v, c.reason)
				}
			}
		})
	}
}

// BenchmarkPolicyLoad: reading, validating and compiling a 10,000-rule
// policy file (what a SIGHUP reload costs).
func BenchmarkPolicyLoad(b *testing.B) {
	path := filepath.Join(b.TempDir(), "egress_allowlist.json")
	data := policyDoc(10_000)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		p, err := policy.Load(path)
		if err != nil {
			b.Fatal(err)
		}
		if p.RuleCount() != 10_000+3 {
			b.Fatalf("RuleCount() = %d", p.RuleCount())
		}
	}
}
