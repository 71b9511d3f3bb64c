package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/forge/forge-supervisor/tests/world"
)

// forgeYAML is a Forge project whose model server is the world's echo
// service on port 7000: Forge's allowlist would name the host only (ports
// 80/443); the supervisor adds allowed_tcp allowed.test:7000. Its
// supervisor: section answers denied names with NXDOMAIN.
const forgeYAML = `agent_id: e2e-agent
version: "1"
entrypoint: sleep 600
model:
  provider: openai
  name: local
  base_url: http://allowed.test:7000/v1
egress:
  profile: standard
  mode: allowlist
  allowed_domains: [allowed.test]
supervisor:
  dns_deny_rcode: nxdomain
`

// TestForgeYAMLPolicyEndToEnd: FORGE_SUPERVISOR_POLICY_PATH pointing at a
// forge.yaml enforces its egress section, endpoint port included, with its
// supervisor settings.
func TestForgeYAMLPolicyEndToEnd(t *testing.T) {
	w := world.New(t)
	s := w.StartSupervisor(t, w.WritePolicy(t, "forge.yaml", forgeYAML), nil, "sleep", "600")
	s.WaitReady()

	if code, body, err := w.Curl("https://allowed.test/"); err != nil || code != "200" {
		t.Fatalf("allowed TLS: %s %v %q", code, err, body)
	}
	if code, body, err := w.Curl("--resolve", "evil.test:443:198.51.100.1", "https://evil.test/"); err == nil || !strings.Contains(strings.ToLower(body), "access denied") {
		t.Fatalf("denied TLS: %s %v %q", code, err, body)
	}
	// The model endpoint's port, from model.base_url.
	if out, err := w.AsAgent("sh", "-c", "printf hello | nc -N -w 3 allowed.test 7000").CombinedOutput(); err != nil || !strings.Contains(string(out), "echo 5 bytes") {
		t.Errorf("model endpoint allowed.test:7000: %v %q", err, out)
	}
	e := lastEgress(t, s, func(e world.Event) bool { return fmt.Sprint(e["dst_port"]) == "7000" })
	if e.Msg() != "egress_allowed" || e.Str("rule") != "allowed_tcp:allowed.test:7000" {
		t.Errorf("allowed.test:7000 audit: %v", e)
	}
	// Another port of the same host stays closed.
	_, _ = w.AsAgent("sh", "-c", "printf hello | nc -N -w 3 allowed.test 2525").CombinedOutput()
	if e := lastEgress(t, s, func(e world.Event) bool { return fmt.Sprint(e["dst_port"]) == "2525" }); e.Msg() != "egress_denied" {
		t.Errorf("allowed.test:2525 audit: %v", e)
	}
	// supervisor.dns_deny_rcode from forge.yaml.
	if out, _ := w.AsAgent("dig", "+time=2", "+tries=1", "evil.test").CombinedOutput(); !strings.Contains(string(out), "NXDOMAIN") {
		t.Errorf("denied DNS with dns_deny_rcode nxdomain: %s", out)
	}
}
