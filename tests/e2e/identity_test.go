package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

// buildGoClient builds the e2e's second client binary into a directory
// the agent can read.
func buildGoClient(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "forge-identity-bin")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "goclient")
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", bin, "./goclient")
	cmd.Dir = filepath.Dir(file)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build goclient: %v\n%s", err, out)
	}
	return bin
}

// identityPolicy lets only the Go client reach allowed.test on 443;
// every identified process may resolve it.
func identityPolicy(client string) string {
	return fmt.Sprintf(`package forge.egress

client := %q

default decision := {"allow": false, "reason": "not_allowed"}

decision := {"allow": true, "reason": "dns", "rule": "dns"} if {
	input.kind == "dns"
	input.name == "allowed.test"
}

decision := {"allow": true, "reason": "go_client", "rule": "only_goclient"} if {
	input.kind == "tcp"
	input.name == "allowed.test"
	input.port == 443
	input.process.exe == client
}

decision := {"allow": false, "reason": "wrong_binary", "rule": "only_goclient"} if {
	input.kind == "tcp"
	input.name == "allowed.test"
	input.process.exe != client
}
`, client)
}

// TestProcessIdentityEndToEnd: two binaries in the agent, curl and a Go
// client; a Rego rule lets only the Go client reach allowed.test. Both
// are audited with their exe (connections and DNS queries), and a client
// that is gone before its connection is decided is denied
// (process_unknown), never allowed.
func TestProcessIdentityEndToEnd(t *testing.T) {
	w := world.New(t)
	client := buildGoClient(t)
	pol := w.WritePolicy(t, "identity.rego", identityPolicy(client))
	script := fmt.Sprintf(`curl -sS --max-time 8 --cacert %[1]s -o /dev/null https://allowed.test/ ; echo curl=$? >&2
%[2]s -ca %[1]s https://allowed.test/ >&2
%[2]s -cork-exit 198.51.100.1:443 allowed.test
sleep 600`, w.CAFile, client)
	s := w.StartSupervisor(t, pol, nil, "sh", "-c", script)
	s.WaitReady()

	byExe := func(msg, exe string) world.Event {
		return s.WaitEvent(func(e world.Event) bool { return e.Msg() == msg && e.Str("exe") == exe }, 15*time.Second)
	}
	curl := byExe("egress_denied", "/usr/bin/curl")
	if curl.Str("reason") != "wrong_binary" || curl.Str("sni") != "allowed.test" {
		t.Errorf("curl's connection: %v, want denied wrong_binary", curl)
	}
	goc := byExe("egress_allowed", client)
	if goc.Str("reason") != "go_client" || goc["pid"] == 0.0 {
		t.Errorf("the Go client's connection: %v, want allowed go_client with a pid", goc)
	}
	for _, exe := range []string{"/usr/bin/curl", client} {
		if d := byExe("dns_allowed", exe); d.Str("qname") != "allowed.test" {
			t.Errorf("DNS of %s: %v", exe, d)
		}
	}
	gone := s.WaitEvent(func(e world.Event) bool {
		return strings.HasPrefix(e.Msg(), "egress_") && e.Str("reason") == "process_unknown"
	}, 15*time.Second)
	if gone.Msg() != "egress_denied" || gone.Str("exe") != "" || gone.Str("process_unknown") == "" ||
		!strings.HasPrefix(gone.Str("rule"), "process:") {
		t.Errorf("client gone before the lookup: %v, want denied with exe \"\" and a reason", gone)
	}
	for _, e := range s.Events() {
		if e.Msg() == "egress_allowed" && e.Str("exe") != client {
			t.Errorf("allowed a connection not from the Go client: %v", e)
		}
	}
}

// TestAuditProcessWithJSONPolicy: FORGE_SUPERVISOR_AUDIT_PROCESS=1 puts
// pid and exe in the events of a JSON allowlist, which never needs them.
func TestAuditProcessWithJSONPolicy(t *testing.T) {
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	script := fmt.Sprintf(`curl -sS --max-time 8 --cacert %s -o /dev/null https://allowed.test/; sleep 600`, w.CAFile)
	s := w.StartSupervisor(t, pol, []string{"FORGE_SUPERVISOR_AUDIT_PROCESS=1"}, "sh", "-c", script)
	s.WaitReady()
	e := s.WaitEvent(func(e world.Event) bool { return e.Msg() == "egress_allowed" }, 15*time.Second)
	if e.Str("exe") != "/usr/bin/curl" || e["pid"] == nil {
		t.Errorf("egress event: %v, want exe /usr/bin/curl and a pid", e)
	}
	d := s.WaitEvent(func(e world.Event) bool { return e.Msg() == "dns_allowed" }, 15*time.Second)
	if d.Str("exe") != "/usr/bin/curl" {
		t.Errorf("dns event: %v, want exe /usr/bin/curl", d)
	}
}
