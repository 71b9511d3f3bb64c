package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/forge/forge-supervisor/tests/netenv"
	"github.com/forge/forge-supervisor/tests/world"
)

// TestRegoPolicyEndToEnd: `generate rego` turns the allowlist into a Rego
// policy, and the supervisor started on that .rego file makes the same
// decisions as on the JSON file: allowed TLS passes, a denied name gets
// the alert, a denied DNS name is refused.
func TestRegoPolicyEndToEnd(t *testing.T) {
	w := world.New(t)
	jsonPath := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	out, err := exec.Command(netenv.Binary(t), "-policy-path", jsonPath, "generate", "rego").Output()
	if err != nil || !strings.Contains(string(out), "package forge.egress") {
		t.Fatalf("generate rego: %v\n%s", err, out)
	}
	regoPath := w.WritePolicy(t, "policy.rego", string(out))
	s := w.StartSupervisor(t, regoPath, nil, "sleep", "600")
	s.WaitReady()

	code, body, err := w.Curl("https://allowed.test/")
	if err != nil || code != "200" {
		t.Fatalf("allowed TLS under Rego: %s %v %q", code, err, body)
	}
	code, body, err = w.Curl("--resolve", "evil.test:443:198.51.100.1", "https://evil.test/")
	if err == nil || !strings.Contains(strings.ToLower(body), "access denied") {
		t.Fatalf("denied TLS under Rego: %s %v %q", code, err, body)
	}
	e := lastEgress(t, s, func(e world.Event) bool { return e.Str("sni") == "evil.test" })
	if e.Msg() != "egress_denied" || e.Str("reason") != "not_in_allowlist" {
		t.Errorf("denied audit under Rego: %v", e)
	}
	if out, _ := w.AsAgent("dig", "+time=2", "+tries=1", "evil.test").CombinedOutput(); !strings.Contains(string(out), "REFUSED") {
		t.Errorf("denied DNS under Rego: %s", out)
	}
}
