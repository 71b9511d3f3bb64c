package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

// kubeletSwap replaces the data of a ConfigMap volume as kubelet's
// AtomicWriter does: a new timestamped directory, ..data_tmp pointing at
// it, renamed over ..data, the old directory removed. The key's own name
// (a symlink to ..data/KEY) never changes.
func kubeletSwap(t *testing.T, dir, key, body string, gen int) {
	t.Helper()
	ts := "..2026_12_01_09_00_0" + string(rune('0'+gen))
	if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ts, key), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Symlink(ts, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if old != "" {
		os.RemoveAll(filepath.Join(dir, old))
	} else if err := os.Symlink(filepath.Join("..data", key), filepath.Join(dir, key)); err != nil {
		t.Fatal(err)
	}
}

// TestConfigMapSwapReloadsPolicy: a ConfigMap update (nobody sends
// SIGHUP) reloads the policy; a broken update keeps the previous policy
// and says so in the log, /readyz and /metrics; SIGHUP with
// FORGE_SUPERVISOR_FORWARD_SIGHUP=false reloads without killing an agent
// that does not handle HUP.
func TestConfigMapSwapReloadsPolicy(t *testing.T) {
	w := world.New(t)
	dir := filepath.Join(w.Dir, "config")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const key = "egress_allowlist.json"
	kubeletSwap(t, dir, key, allowlist, 1)
	pol := filepath.Join(dir, key)
	// sleep does not handle HUP: forwarded, it would end the agent.
	s := w.StartSupervisor(t, pol, []string{"FORGE_SUPERVISOR_FORWARD_SIGHUP=false"}, "sleep", "600")
	s.WaitReady()
	curl := func() string {
		code, _, _ := w.Curl("--resolve", "allowed.test:443:198.51.100.1", "https://allowed.test/")
		return code
	}
	if code, _, err := w.Curl("https://allowed.test/"); code != "200" {
		t.Fatalf("allowed before any update: %s %v", code, err)
	}

	kubeletSwap(t, dir, key, `{"profile":"strict","mode":"deny-all","allowed_domains":[],"tool_domains":[],"all_domains":[]}`, 2)
	e := s.WaitEvent(func(e world.Event) bool { return e.Msg() == "policy_reloaded" && e.Str("mode") == "deny-all" }, 10*time.Second)
	t.Logf("reloaded on the ..data swap: %v", e)
	if code := curl(); code == "200" {
		t.Fatalf("after the swap to deny-all: still 200")
	}

	kubeletSwap(t, dir, key, `{"profile":"x","mode":`, 3)
	s.WaitEvent(func(e world.Event) bool { return e.Msg() == "policy_reload_failed" }, 10*time.Second)
	if code := curl(); code == "200" {
		t.Fatalf("after a broken update: 200, want the previous deny-all policy")
	}
	h := w.AgentHTTP()
	_, body, err := world.Get(h, "http://127.0.0.1:15000/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready struct {
		Parts map[string]struct {
			OK     bool   `json:"ok"`
			Detail string `json:"detail"`
		} `json:"parts"`
	}
	if err := json.Unmarshal(body, &ready); err != nil {
		t.Fatalf("/readyz: %v: %s", err, body)
	}
	if p := ready.Parts["policy"]; !p.OK || !strings.Contains(p.Detail, "last reload failed") || !strings.HasPrefix(p.Detail, "deny-all") {
		t.Errorf("/readyz policy part %+v: want ready on deny-all, saying the reload failed", p)
	}
	_, metrics, err := world.Get(h, "http://127.0.0.1:15000/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(metrics), "forge_supervisor_policy_last_reload_successful 0") ||
		!strings.Contains(string(metrics), `forge_supervisor_policy_reloads_total{result="error"} 1`) {
		t.Errorf("/metrics does not show the failed reload:\n%s", grepLines(string(metrics), "reload"))
	}

	// Back to the allowlist, by SIGHUP this time: the agent survives it.
	kubeletSwap(t, dir, key, allowlist, 4)
	s.Signal(syscall.SIGHUP)
	s.WaitEvent(func(e world.Event) bool { return e.Msg() == "policy_reloaded" && e.Str("mode") == "allowlist" }, 10*time.Second)
	if code := curl(); code != "200" {
		t.Errorf("after the swap back: %s, want 200", code)
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case <-s.Done():
		t.Fatalf("the agent died of a SIGHUP that was not to be forwarded\n%s", s.Out.String())
	default:
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
