package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

// TestDNSServiceNamesUnderWildcard: names DNS accepts, with underscores
// (RFC 2181), are answered when their suffix is allowed — the SRV lookup
// of every mongodb+srv:// client and the _grpc_config TXT lookup of every
// gRPC client. They were refused as invalid_name (issue #12).
func TestDNSServiceNamesUnderWildcard(t *testing.T) {
	w, s := startAllowlist(t)
	for _, q := range []struct {
		name, qtype, want string
	}{
		{"_mongodb._tcp.cluster0.wild.test", "SRV", "27017 shard-00.cluster0.wild.test."},
		{"_grpc_config.api.wild.test", "TXT", `"grpc_config={}"`},
	} {
		out, err := w.AsAgent("dig", "+short", "+time=2", "+tries=1", q.name, q.qtype).CombinedOutput()
		if err != nil || !strings.Contains(string(out), q.want) {
			t.Errorf("dig %s %s: %v %q, want %q", q.name, q.qtype, err, out, q.want)
			continue
		}
		s.WaitEvent(func(e world.Event) bool {
			return e.Msg() == "dns_allowed" && strings.TrimSuffix(e.Str("qname"), ".") == q.name &&
				e.Str("qtype") == q.qtype && e.Str("rule") == "*.wild.test"
		}, 5*time.Second)
	}
}
