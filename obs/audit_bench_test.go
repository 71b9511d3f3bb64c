package obs

import (
	"io"
	"testing"
)

// BenchmarkAuditorEgress is the per-connection cost of auditing: one JSON
// line, metric updates, and for denials a ring insert.
func BenchmarkAuditorEgress(b *testing.B) {
	log, err := NewLogger(io.Discard, "info")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		opts []AuditorOption
		f    Flow
	}{
		{"allowed", nil, Flow{Allowed: true, Proto: "tls", SNI: "api.allowed.test", DstIP: "198.51.100.1", DstPort: 443, Reason: "domain_allowed"}},
		{"allowed-sampled", []AuditorOption{WithSampling(true)}, Flow{Allowed: true, Proto: "tls", SNI: "api.allowed.test", DstIP: "198.51.100.1", DstPort: 443, Reason: "domain_allowed"}},
		{"denied", nil, Flow{Proto: "tls", SNI: "evil.test", DstIP: "198.51.100.3", DstPort: 443, Reason: "domain_not_allowed"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			a := NewAuditor(log, NewMetrics(), NewDenials(256), bc.opts...)
			b.ReportAllocs()
			for b.Loop() {
				a.Egress(bc.f)
			}
		})
	}
}
