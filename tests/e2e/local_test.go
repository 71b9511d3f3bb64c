package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

// TestLocalServersWithRealClients: loopback is policy (issue 11, item 3),
// and real clients still work with it. A dev server the agent runs on
// 127.0.0.1 answers curl, Python and Node — through the proxy, audited as
// local_agent_listener — while the same server run by root (a sidecar of
// the pod) is refused and audited local_port_not_allowed.
func TestLocalServersWithRealClients(t *testing.T) {
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		t.Skip("needs /usr/bin/python3 (python3 from Debian)")
	}
	w, s := startAllowlist(t)
	serve := func(cmd *exec.Cmd) {
		ctx, cancel := context.WithCancel(context.Background())
		c := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
		c.Dir = "/"
		if err := c.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); _ = c.Wait() })
	}
	serve(w.AsAgent(py, "-m", "http.server", "8765", "--bind", "127.0.0.1"))
	serve(w.Agent.Cmd(py, "-m", "http.server", "8766", "--bind", "127.0.0.1"))
	waitListening(t, w, "8765")
	waitListening(t, w, "8766")

	clients := map[string][]string{
		"curl":   {"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "http://127.0.0.1:PORT/"},
		"python": {py, "-c", "import urllib.request as u; print(u.urlopen('http://127.0.0.1:PORT/', timeout=5).status)"},
	}
	if node, err := exec.LookPath("node"); err == nil {
		clients["node"] = []string{node, "-e", "require('http').get('http://127.0.0.1:PORT/', r => console.log(r.statusCode)).on('error', e => { console.log(e.code); process.exit(1) })"}
	}
	for name, argv := range clients {
		run := func(port string) (string, error) {
			args := make([]string, len(argv))
			for i, a := range argv {
				args[i] = strings.ReplaceAll(a, "PORT", port)
			}
			out, err := w.AsAgent(args[0], args[1:]...).CombinedOutput()
			return strings.TrimSpace(string(out)), err
		}
		if out, err := run("8765"); err != nil || !strings.HasSuffix(out, "200") {
			t.Errorf("%s to the agent's own server: %q %v", name, out, err)
		}
		if out, err := run("8766"); err == nil && strings.HasSuffix(out, "200") {
			t.Errorf("%s reached root's server on loopback: %q", name, out)
		}
	}
	own := lastEgress(t, s, func(e world.Event) bool { return e.Str("dst_ip") == "127.0.0.1" && e["dst_port"] == 8765.0 })
	if own.Msg() != "egress_allowed" || own.Str("reason") != "local_agent_listener" {
		t.Errorf("audit of the agent's own server: %v", own)
	}
	root := lastEgress(t, s, func(e world.Event) bool { return e.Str("dst_ip") == "127.0.0.1" && e["dst_port"] == 8766.0 })
	if root.Msg() != "egress_denied" || root.Str("reason") != "local_port_not_allowed" {
		t.Errorf("audit of root's server: %v", root)
	}
}

// waitListening waits until something listens on 127.0.0.1:port in the
// agent namespace.
func waitListening(t *testing.T, w *world.World, port string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := w.Agent.Cmd("ss", "-Htln", "sport = :"+port).Output()
		if strings.Contains(string(out), ":"+port) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("nothing listens on 127.0.0.1:%s", port)
}
