package e2e

import (
	"fmt"
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

// forgeWritten is a policy as Forge writes it, with what Forge adds
// verbatim: a field the supervisor does not know, surrounding whitespace,
// an IP literal from a model URL, an unexpanded variable, no
// allow_private_ips.
const forgeWritten = `{"profile":"standard","mode":"allowlist","generated_at":"2026-11-30T12:00:00Z",
 "allowed_domains":["  allowed.test  ","192.168.1.50","$K8S_API_DOMAIN"],"tool_domains":[],
 "all_domains":["allowed.test","192.168.1.50"]}`

// TestForgeWrittenPolicyLoads: such a file starts the agent, with one
// policy_warning per thing it did not take as written (issue #12); the
// trimmed name is allowed. FORGE_SUPERVISOR_STRICT_POLICY=1 refuses the
// unknown field instead.
func TestForgeWrittenPolicyLoads(t *testing.T) {
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", forgeWritten)
	s := w.StartSupervisor(t, pol, nil, "sleep", "600")
	s.WaitReady()
	for _, want := range []string{"generated_at: unknown field", `"$K8S_API_DOMAIN": an unexpanded environment variable`,
		"192.168.1.50 is a private address", "private destinations are denied"} {
		s.WaitEvent(func(e world.Event) bool {
			return e.Msg() == "policy_warning" && strings.Contains(e.Str("warning"), want)
		}, 5*time.Second)
	}
	if out, err := w.AsAgent("curl", "-sS", "--max-time", "5", "--cacert", w.CAFile, "https://allowed.test/").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "world says hello") {
		t.Errorf("curl https://allowed.test/: %v %q", err, out)
	}

	strict := w.StartSupervisor(t, pol, []string{"FORGE_SUPERVISOR_STRICT_POLICY=1"}, "true")
	if code := strict.MustExit(10 * time.Second); code == 0 || !strings.Contains(strict.Err.String(), "generated_at: unknown field") {
		t.Errorf("strict: exit %d, stderr %q; want a startup error naming the field", code, strict.Err.String())
	}
}

// TestPortNotAllowedNamesTheFix: a connection to an allowed name on a port
// no rule opens is denied port_not_allowed (not no_name_for_ip), and a
// warning names the allowed_tcp entry that would open it (issue #11, #12).
func TestPortNotAllowedNamesTheFix(t *testing.T) {
	w, s := startAllowlist(t)
	_, _ = w.AsAgent("sh", "-c", "printf hello | nc -N -w 3 allowed.test 2525").CombinedOutput()
	e := lastEgress(t, s, func(e world.Event) bool { return fmt.Sprint(e["dst_port"]) == "2525" })
	if e.Msg() != "egress_denied" || e.Str("reason") != "port_not_allowed" {
		t.Errorf("allowed.test:2525 audit: %v", e)
	}
	s.WaitEvent(func(e world.Event) bool {
		return e.Msg() == "denial_fix" && strings.Contains(e.Str("hint"), `add "allowed.test:2525" to allowed_tcp`)
	}, 5*time.Second)
}
