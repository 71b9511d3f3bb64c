package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"

	"github.com/forge/forge-supervisor/policy"
)

// regoBenchDoc is an allowlist of n domain rules, half exact and half
// wildcards, plus allowed_tcp name and address rules.
func regoBenchDoc(n int) []byte {
	var domains []string
	for i := range n {
		if i%2 == 0 {
			domains = append(domains, fmt.Sprintf("host-%d.example-%d.test", i, i%97))
		} else {
			domains = append(domains, fmt.Sprintf("*.zone-%d.example.test", i))
		}
	}
	data, err := json.Marshal(map[string]any{
		"mode":            "allowlist",
		"allowed_domains": domains,
		"allowed_tcp":     []string{"db.example.test:5432", "*.svc.example.test:8443", "198.51.100.7:5432"},
	})
	if err != nil {
		panic(err) // a map of strings always marshals
	}
	return data
}

// regoBenchResolver confirms every name and has learned one allowed name
// for every address.
type regoBenchResolver struct{ learned []string }

func (regoBenchResolver) Resolves(context.Context, string, netip.Addr) bool { return true }
func (r regoBenchResolver) NamesFor(netip.Addr) []string                    { return r.learned }

// BenchmarkRegoDecide compares Decide through the JSON tables with Decide
// through the Rego module GenerateRego makes from the same policy: same
// verdicts (the policy package's differential test proves that), the cost
// of OPA's evaluation per connection. Report ns/op side by side.
func BenchmarkRegoDecide(b *testing.B) {
	pub := netip.MustParseAddr("198.51.100.1")
	for _, n := range []int{10, 1_000} {
		jp, err := policy.Parse(regoBenchDoc(n))
		if err != nil {
			b.Fatal(err)
		}
		src, err := policy.GenerateRego(jp)
		if err != nil {
			b.Fatal(err)
		}
		rp, err := policy.ParseRego("generated.rego", src)
		if err != nil {
			b.Fatal(err)
		}
		exact := fmt.Sprintf("host-%d.example-%d.test", n/2&^1, (n/2&^1)%97)
		res := regoBenchResolver{learned: []string{exact, "db.example.test"}}
		cases := []struct {
			name  string
			req   policy.Request
			allow bool
		}{
			{"hit_exact", policy.Request{Name: exact, IP: pub, Port: 443}, true},
			{"hit_wildcard", policy.Request{Name: fmt.Sprintf("a.b.zone-%d.example.test", n/2|1), IP: pub, Port: 443}, true},
			{"miss", policy.Request{Name: "unlisted.deep.sub.domain.nowhere.test", IP: pub, Port: 443}, false},
			{"ip_rule", policy.Request{IP: netip.MustParseAddr("198.51.100.7"), Port: 5432}, true},
			{"no_name_learned", policy.Request{IP: pub, Port: 5432}, true},
		}
		for _, engine := range []struct {
			name string
			p    *policy.Policy
		}{{"json", jp}, {"rego", rp}} {
			for _, c := range cases {
				b.Run(fmt.Sprintf("rules=%d/%s/%s", n, c.name, engine.name), func(b *testing.B) {
					b.ReportAllocs()
					ctx := context.Background()
					timeouts := 0
					for b.Loop() {
						v := engine.p.Decide(ctx, c.req, res)
						switch {
						case v.Reason == policy.ReasonRegoError && v.Rule == "rego:timeout":
							// A starved evaluation on a shared machine
							// denies by design; count it, do not fail.
							timeouts++
						case v.Allow != c.allow:
							b.Fatalf("Decide(%+v) = %+v, want allow=%t", c.req, v, c.allow)
						}
					}
					b.ReportMetric(float64(timeouts), "timeouts")
				})
			}
		}
	}
}

// BenchmarkRegoLoad is the startup cost: compile and prepare the generated
// module, against parsing the JSON it came from.
func BenchmarkRegoLoad(b *testing.B) {
	for _, n := range []int{10, 1_000} {
		doc := regoBenchDoc(n)
		jp, err := policy.Parse(doc)
		if err != nil {
			b.Fatal(err)
		}
		src, err := policy.GenerateRego(jp)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("rules=%d/json", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := policy.Parse(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("rules=%d/rego", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := policy.ParseRego("generated.rego", src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
