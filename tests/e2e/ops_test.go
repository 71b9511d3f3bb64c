package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

const health = "http://127.0.0.1:15000"

// readiness is the /readyz body.
type readiness struct {
	Ready        bool                       `json:"ready"`
	Parts        map[string]json.RawMessage `json:"parts"`
	Failing      []string                   `json:"failing"`
	Interception string                     `json:"interception"`
}

func getReadyz(t *testing.T, w *world.World) (int, readiness) {
	t.Helper()
	code, body, err := world.Get(w.AgentHTTP(), health+"/readyz")
	if err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	var r readiness
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	return code, r
}

func TestHealthEndpoints(t *testing.T) {
	w, _ := startAllowlist(t)
	c := w.AgentHTTP()
	code, body, err := world.Get(c, health+"/healthz")
	if err != nil || code != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("/healthz: %d %v %q", code, err, body)
	}
	code, r := getReadyz(t, w)
	if code != 200 || !r.Ready || len(r.Failing) != 0 || r.Interception != "kernel" || len(r.Parts) != 5 {
		t.Errorf("/readyz: %d %+v", code, r)
	}
	code, body, err = world.Get(c, health+"/denials")
	if err != nil || code != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("/denials before any denial: %d %v %q", code, err, body)
	}
	code, _, _ = world.Get(c, health+"/denials?limit=0")
	if code != 400 {
		t.Errorf("/denials?limit=0: %d, want 400", code)
	}
	code, body, err = world.Get(c, health+"/metrics")
	if err != nil || code != 200 || !bytes.Contains(body, []byte(`forge_supervisor_interception_mode{mode="kernel"} 1`)) {
		t.Errorf("/metrics: %d %v\n%s", code, err, body)
	}
	// The agent's own UID reaches the health server too (loopback is not
	// redirected), so an agent can watch its supervisor's readiness.
	out, err := w.AsAgent("curl", "-sS", "--max-time", "5", health+"/healthz").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("/healthz from the agent's uid: %v %q", err, out)
	}
}

// permissiveProfile is a valid seccomp profile that lets the agent's shell
// tools run; the readiness test needs a profile file, not a strict one.
const permissiveProfile = `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["kexec_load"],"action":"SCMP_ACT_ERRNO"}]}`

// TestReadyzNotReadyUntilAgentRuns: /readyz is 503 while the supervisor
// serves but the agent has not started, then 200.
//
// The window is made deterministic with a FIFO as the seccomp profile: the
// supervisor reads the profile at startup (a check) and again when it
// builds the agent's jail, after the health server is up. The test feeds
// the first read at once and holds the second until it has seen 503.
func TestReadyzNotReadyUntilAgentRuns(t *testing.T) {
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	fifo := filepath.Join(w.Dir, "seccomp.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	feed := func() <-chan error {
		done := make(chan error, 1)
		go func() {
			f, err := os.OpenFile(fifo, os.O_WRONLY, 0) // blocks until the supervisor opens it
			if err != nil {
				done <- err
				return
			}
			_, err = f.WriteString(permissiveProfile)
			f.Close()
			done <- err
		}()
		return done
	}
	// A writer still blocked in open at the end is released by a reader.
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			time.Sleep(50 * time.Millisecond)
			f.Close()
		}
	})
	first := feed()

	// Poll /readyz from the start, recording each distinct answer.
	var mu sync.Mutex
	var seen []string
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		c := w.AgentHTTP()
		for {
			select {
			case <-stop:
				return
			default:
			}
			obs := "refused"
			if code, _, err := world.Get(c, health+"/readyz"); err == nil {
				obs = fmt.Sprint(code)
			}
			mu.Lock()
			if len(seen) == 0 || seen[len(seen)-1] != obs {
				seen = append(seen, obs)
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	defer func() { close(stop); <-polled }()

	s := w.StartSupervisor(t, pol, []string{"FORGE_SUPERVISOR_SECCOMP_PATH=" + fifo}, "sleep", "600")
	select {
	case err := <-first:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the supervisor never read the seccomp profile")
	}

	// Serving, agent not started: 503, only the agent failing.
	deadline := time.Now().Add(10 * time.Second)
	var code int
	var r readiness
	for time.Now().Before(deadline) {
		if c, _, err := world.Get(w.AgentHTTP(), health+"/readyz"); err == nil && c != 0 {
			code, r = getReadyz(t, w)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code != 503 || r.Ready || !reflect.DeepEqual(r.Failing, []string{"agent"}) || r.Interception != "kernel" {
		t.Fatalf("/readyz before the agent started: %d %+v, want 503 failing [agent]", code, r)
	}
	if c, body, err := world.Get(w.AgentHTTP(), health+"/healthz"); err != nil || c != 200 {
		t.Errorf("/healthz while not ready: %d %v %q, want 200 (alive)", c, err, body)
	}
	if s.CountEvents("agent_started") != 0 {
		t.Fatal("agent started before its profile was fed")
	}

	second := feed()
	s.WaitReady()
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if code, r := getReadyz(t, w); code != 200 || !r.Ready {
		t.Fatalf("/readyz after agent_started: %d %+v", code, r)
	}
	// The poller runs on its own: wait for it to have seen the 200 too (a
	// fixed pause is outrun by a loaded machine).
	var got string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		got = strings.Join(seen, " → ")
		seen200 := len(seen) > 0 && seen[len(seen)-1] == "200"
		mu.Unlock()
		if seen200 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("/readyz over startup: %s", got)
	if !strings.HasSuffix(got, "503 → 200") {
		t.Errorf("/readyz sequence %q, want … 503 → 200", got)
	}
	if strings.Contains(got, "200 → 503") {
		t.Errorf("/readyz went back to 503: %q", got)
	}
}

// traffic makes allowed and denied TCP and DNS decisions.
func traffic(t *testing.T, w *world.World) {
	t.Helper()
	if code, _, err := w.Curl("https://allowed.test/"); code != "200" {
		t.Fatalf("allowed curl: %s %v", code, err)
	}
	w.Curl("--resolve", "evil.test:443:198.51.100.1", "https://evil.test/")
	w.Curl("--resolve", "evil.test:80:198.51.100.1", "http://evil.test/")
	w.AsAgent("dig", "+short", "+time=2", "+tries=1", "allowed.test", "AAAA").Run()
	w.AsAgent("dig", "+short", "+time=2", "+tries=1", "evil.test").Run()
}

func TestMetricsPassPromtool(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skipf("needs promtool (Debian prometheus, installed by .ci/run): %v", err)
	}
	w, s := startAllowlist(t)
	traffic(t, w)
	s.WaitEvent(func(e world.Event) bool { return e.Msg() == "dns_denied" }, 5*time.Second)
	code, body, err := world.Get(w.AgentHTTP(), health+"/metrics")
	if err != nil || code != 200 {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, want := range []string{
		`forge_supervisor_connections_total{decision="allowed"`,
		`forge_supervisor_connections_total{decision="denied"`,
		`forge_supervisor_dns_queries_total{decision="allowed"`,
		`forge_supervisor_dns_queries_total{decision="denied"`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %s…", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

// TestDenialsMatchLog: every denial on stdout is in /denials with exactly
// the same fields and values, minus level.
func TestDenialsMatchLog(t *testing.T) {
	w, s := startAllowlist(t)
	traffic(t, w)
	s.WaitEvent(func(e world.Event) bool { return e.Msg() == "dns_denied" }, 5*time.Second)
	lastEgress(t, s, func(e world.Event) bool { return e.Msg() == "egress_denied" && e.Str("host") == "evil.test" })

	code, body, err := world.Get(w.AgentHTTP(), health+"/denials")
	if err != nil || code != 200 {
		t.Fatalf("/denials: %d %v", code, err)
	}
	var served []map[string]any
	if err := json.Unmarshal(body, &served); err != nil {
		t.Fatalf("/denials: %v\n%s", err, body)
	}
	var logged []world.Event
	for _, e := range s.Events() {
		if e.Msg() == "egress_denied" || e.Msg() == "dns_denied" {
			logged = append(logged, e)
		}
	}
	if len(logged) < 3 || len(served) != len(logged) {
		t.Fatalf("%d denials logged, %d served:\nserved: %s", len(logged), len(served), body)
	}
	// /denials is newest first.
	for i, e := range logged {
		d := served[len(served)-1-i]
		want := map[string]any{}
		for k, v := range e {
			if k != "level" {
				want[k] = v
			}
		}
		if !reflect.DeepEqual(want, d) {
			t.Errorf("denial %d differs:\nlog:      %v\n/denials: %v", i, want, d)
		}
	}
}

// TestDryRunLetsDeniedThrough: in dry run the policy's denials are logged
// as would_deny and the traffic flows.
func TestDryRunLetsDeniedThrough(t *testing.T) {
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	s := w.StartSupervisor(t, pol, []string{"FORGE_SUPERVISOR_DRY_RUN=1"}, "sleep", "600")
	s.WaitReady()
	code, body, err := w.Curl("https://evil.test/")
	if code != "200" || !strings.Contains(body, "world says hello to evil.test") {
		t.Fatalf("dry run, denied name: %s %v %q, want it to go through", code, err, body)
	}
	e := lastEgress(t, s, func(e world.Event) bool { return e.Str("sni") == "evil.test" })
	if e.Msg() != "egress_allowed" || e["would_deny"] != true {
		t.Errorf("dry-run egress audit: %v, want egress_allowed with would_deny", e)
	}
	d := s.WaitEvent(func(e world.Event) bool {
		return strings.HasPrefix(e.Msg(), "dns_") && strings.TrimSuffix(e.Str("qname"), ".") == "evil.test"
	}, 5*time.Second)
	if d.Msg() != "dns_allowed" || d["would_deny"] != true {
		t.Errorf("dry-run DNS audit: %v, want dns_allowed with would_deny", d)
	}
	if e := s.WaitEvent(func(e world.Event) bool { return e.Msg() == "supervisor_started" }, time.Second); e["dry_run"] != true {
		t.Errorf("supervisor_started: %v", e)
	}
	_, denials, err := world.Get(w.AgentHTTP(), health+"/denials")
	if err != nil || !bytes.Contains(denials, []byte(`"sni":"evil.test"`)) {
		t.Errorf("/denials in dry run lacks the would-be denial: %v %s", err, denials)
	}
	// Allowed traffic is not marked.
	w.Curl("https://allowed.test/")
	a := lastEgress(t, s, func(e world.Event) bool { return e.Str("sni") == "allowed.test" })
	if a["would_deny"] != false {
		t.Errorf("allowed flow marked would_deny: %v", a)
	}
}

// TestBadConfigRejected: bad values exit 2 naming the setting; nothing
// starts.
func TestBadConfigRejected(t *testing.T) {
	for _, c := range []struct {
		env   []string
		args  []string
		names []string
	}{
		{[]string{"FORGE_SUPERVISOR_PROXY_PORT=70000"}, []string{"--", "true"}, []string{"FORGE_SUPERVISOR_PROXY_PORT", "70000"}},
		{nil, []string{"--log-level=loud", "--", "true"}, []string{"-log-level", "loud"}},
		{[]string{"FORGE_SUPERVISOR_GRACE=soon"}, []string{"--", "true"}, []string{"FORGE_SUPERVISOR_GRACE"}},
		{[]string{"FORGE_SUPERVISOR_DNS_PORT=15001"}, []string{"--", "true"}, []string{"FORGE_SUPERVISOR_PROXY_PORT", "FORGE_SUPERVISOR_DNS_PORT"}},
		{nil, []string{"--no-such-flag", "--", "true"}, []string{"no-such-flag"}},
	} {
		code, stdout, stderr := world.RunBinary(t, c.env, c.args...)
		if code != 2 {
			t.Errorf("%v %v: exit %d, want 2", c.env, c.args, code)
		}
		for _, n := range c.names {
			if !strings.Contains(stderr, n) {
				t.Errorf("%v %v: stderr does not name %s: %q", c.env, c.args, n, stderr)
			}
		}
		if stdout != "" {
			t.Errorf("%v %v: stdout %q, want nothing", c.env, c.args, stdout)
		}
	}
}

func TestConfigAndVersionSubcommands(t *testing.T) {
	code, stdout, stderr := world.RunBinary(t, []string{"FORGE_SUPERVISOR_PROXY_PORT=16001"}, "--dns-port", "16002", "config")
	if code != 0 {
		t.Fatalf("config: exit %d %s", code, stderr)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(stdout), &cfg); err != nil {
		t.Fatalf("config output is not JSON: %v\n%s", err, stdout)
	}
	if cfg["proxy_port"] != 16001.0 || cfg["dns_port"] != 16002.0 || cfg["health_port"] != 15000.0 || cfg["policy_path"] != "/etc/forge/egress_allowlist.json" {
		t.Errorf("config: %v", cfg)
	}
	code, stdout, _ = world.RunBinary(t, nil, "version")
	f := strings.Fields(stdout)
	if code != 0 || len(f) != 2 || f[0] != "forge-supervisor" || f[1] == "" {
		t.Errorf("version: exit %d %q", code, stdout)
	}
	if v, _ := cfg["version"].(string); len(f) == 2 && v != f[1] {
		t.Errorf("config version %q, version subcommand %q", v, f[1])
	}
}
