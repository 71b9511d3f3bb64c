package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/netenv"
	"github.com/forge/forge-supervisor/tests/world"
)

// TestSuggestAfterDryRun: the way to bootstrap an allowlist. A dry run
// lets a denied name through and logs it; `suggest` on that log prints a
// patch that applies to the policy file, and `check` then allows the name.
func TestSuggestAfterDryRun(t *testing.T) {
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	s := w.StartSupervisor(t, pol, []string{"FORGE_SUPERVISOR_DRY_RUN=1"}, "sleep", "600")
	s.WaitReady()
	if code, body, err := w.Curl("https://evil.test/"); err != nil || code != "200" {
		t.Fatalf("dry run lets evil.test through: %s %v %q", code, err, body)
	}
	s.WaitEvent(func(e world.Event) bool { return e.Str("sni") == "evil.test" && e["would_deny"] == true }, 10*time.Second)

	dir := t.TempDir()
	policyCopy := filepath.Join(dir, "egress_allowlist.json")
	b, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(policyCopy, b, 0o644)
	cmd := exec.Command(netenv.Binary(t), "suggest", "-policy", policyCopy)
	cmd.Stdin = strings.NewReader(s.Out.String())
	patch, err := cmd.Output()
	if err != nil || !strings.Contains(string(patch), `"evil.test"`) {
		t.Fatalf("suggest: %v\n%s", err, patch)
	}
	apply := exec.Command("patch", "-p1", "--batch")
	apply.Dir = dir
	apply.Stdin = strings.NewReader(string(patch))
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("patch: %v\n%s\n%s", err, out, patch)
	}
	if code, out, errOut := world.RunBinary(t, nil, "check", "-policy", policyCopy, "-name", "evil.test", "-port", "443"); code != 0 {
		t.Errorf("check after the patch: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := world.RunBinary(t, nil, "lint", policyCopy); code != 0 || !strings.Contains(out, "0 errors") {
		t.Errorf("lint after the patch: exit %d\n%s", code, out)
	}
}
