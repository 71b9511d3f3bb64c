package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/netenv"
	"github.com/forge/forge-supervisor/tests/world"
)

// waitFile waits for path to exist and returns its trimmed content.
func waitFile(t *testing.T, s *world.Supervisor, path string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s after %v\nstdout:\n%s\nstderr:\n%s", path, timeout, s.Out.String(), s.Err.String())
	return ""
}

// TestExitCodeIsTheAgents: the supervisor exits with the agent's status,
// 128+N when the agent was killed by signal N.
func TestExitCodeIsTheAgents(t *testing.T) {
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	for _, c := range []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 3", 3},
		{"kill -KILL $$", 137},
		{"kill -TERM $$", 143},
	} {
		t.Run(c.script, func(t *testing.T) {
			s := w.StartSupervisor(t, pol, nil, "sh", "-c", c.script)
			if code := s.MustExit(10 * time.Second); code != c.want {
				t.Fatalf("exit %d, want %d", code, c.want)
			}
			e := s.WaitEvent(func(e world.Event) bool { return e.Msg() == "agent_exited" && e["duration_s"] != nil }, time.Second)
			if got, _ := e["exit_code"].(float64); int(got) != c.want {
				t.Errorf("agent_exited: %v", e)
			}
		})
	}
}

// TestSIGTERMReachesAgentAndChildren: SIGTERM to the supervisor is
// forwarded to the agent's whole process group; an agent that exits 0 on
// it makes the supervisor exit 0.
func TestSIGTERMReachesAgentAndChildren(t *testing.T) {
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	dir := w.SharedDir(t)
	// The child writes its pid once its trap is set, then its marker on
	// TERM; the agent waits for the child's marker before leaving.
	script := fmt.Sprintf(`
sh -c 'trap "echo term >%[1]s/child; exit 0" TERM; echo $$ >%[1]s/child.pid; sleep 600 & wait' &
trap 'wait; echo term >%[1]s/agent; exit 0' TERM
echo ready >%[1]s/ready
sleep 600 & wait`, dir)
	s := w.StartSupervisor(t, pol, nil, "sh", "-c", script)
	s.WaitReady()
	waitFile(t, s, filepath.Join(dir, "ready"), 5*time.Second)
	waitFile(t, s, filepath.Join(dir, "child.pid"), 5*time.Second)
	start := time.Now()
	s.Signal(syscall.SIGTERM)
	code := s.MustExit(10 * time.Second)
	if code != 0 {
		t.Errorf("exit %d, want 0 (the agent's)", code)
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("stop took %v: the agent should have ended on TERM, not the grace's SIGKILL", took)
	}
	for _, who := range []string{"agent", "child"} {
		if b, err := os.ReadFile(filepath.Join(dir, who)); err != nil || strings.TrimSpace(string(b)) != "term" {
			t.Errorf("the %s did not get SIGTERM: %v %q", who, err, b)
		}
	}
	// Nothing of the namespace survives its PID 1.
	if pid := s.PID1(); pid != 0 {
		t.Errorf("supervisor pid %d still there", pid)
	}
}

// TestAgentIgnoringTERMIsKilled: after the grace period the agent's group
// gets SIGKILL.
func TestAgentIgnoringTERMIsKilled(t *testing.T) {
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	dir := w.SharedDir(t)
	s := w.StartSupervisor(t, pol, []string{"FORGE_SUPERVISOR_GRACE=1s"},
		"sh", "-c", "trap '' TERM; echo ready >"+dir+"/ready; sleep 60")
	s.WaitReady()
	waitFile(t, s, filepath.Join(dir, "ready"), 5*time.Second)
	start := time.Now()
	s.Signal(syscall.SIGTERM)
	code := s.MustExit(5 * time.Second)
	took := time.Since(start)
	if code != 137 {
		t.Errorf("exit %d, want 137 (SIGKILL after the grace)", code)
	}
	if took < 900*time.Millisecond || took > 3*time.Second {
		t.Errorf("stopped after %v, want about the 1s grace", took)
	}
	s.WaitEvent(func(e world.Event) bool { return e.Msg() == "agent_killed" }, time.Second)
	t.Logf("SIGTERM to exit with a TERM-ignoring agent: %v", took)
}

// TestOrphansAreReaped: grandchildren orphaned by a double fork are
// reparented to the supervisor (PID 1) and reaped; none stays a zombie.
func TestOrphansAreReaped(t *testing.T) {
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	dir := w.SharedDir(t)
	// 50 orphans that exit after 0.2s, then a look at the PID namespace
	// once they are all gone: zombies whose parent is PID 1 would be the
	// supervisor's fault.
	script := fmt.Sprintf(`i=0; while [ $i -lt 50 ]; do (sleep 0.2 &); i=$((i+1)); done
sleep 1.5
ps -eo pid=,ppid=,stat=,comm= >%[1]s/ps
echo done >%[1]s/done`, dir)
	s := w.StartSupervisor(t, pol, nil, "sh", "-c", script)
	if code := s.MustExit(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	ps, err := os.ReadFile(filepath.Join(dir, "ps"))
	if err != nil {
		t.Fatal(err)
	}
	// ps shows the command name, cut to the kernel's 15 bytes (TASK_COMM_LEN).
	comm := filepath.Base(netenv.Binary(t))
	comm = comm[:min(len(comm), 15)]
	var zombies []string
	sawPID1 := false
	for _, line := range strings.Split(strings.TrimSpace(string(ps)), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == "1" && f[3] == comm {
			sawPID1 = true
		}
		if len(f) >= 3 && strings.HasPrefix(f[2], "Z") {
			zombies = append(zombies, line)
		}
	}
	if len(zombies) > 0 {
		t.Errorf("zombies in the supervisor's PID namespace:\n%s\nfull ps:\n%s", strings.Join(zombies, "\n"), ps)
	}
	if !sawPID1 {
		t.Errorf("ps did not see the supervisor as PID 1 of its namespace:\n%s", ps)
	}
}

// TestBadPolicyStopsStartup: an unreadable policy is one clear error naming
// the file; the agent never runs.
func TestBadPolicyStopsStartup(t *testing.T) {
	w := world.New(t)
	marker := filepath.Join(w.SharedDir(t), "agent-ran")
	for name, body := range map[string]string{
		"syntax.json": `{"profile":"x","mode":"allowlist",`,
		"mode.json":   `{"profile":"x","mode":"allow-everything","allowed_domains":[],"tool_domains":[],"all_domains":[]}`,
	} {
		t.Run(name, func(t *testing.T) {
			pol := w.WritePolicy(t, name, body)
			s := w.StartSupervisor(t, pol, nil, "touch", marker)
			code := s.MustExit(10 * time.Second)
			if code == 0 {
				t.Fatalf("exit 0 with a bad policy")
			}
			var lines []string
			for _, l := range strings.Split(strings.TrimSpace(s.Err.String()), "\n") {
				if strings.HasPrefix(l, "forge-supervisor:") {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 || !strings.Contains(lines[0], pol) {
				t.Errorf("want one error line naming %s, stderr:\n%s", pol, s.Err.String())
			}
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("the agent ran")
			}
			if n := w.CountTables(t, "forge_supervisor"); n != 0 {
				t.Errorf("table left after a failed start")
			}
			t.Logf("exit %d: %s", code, strings.Join(lines, " | "))
		})
	}
}

// TestPortInUseStopsStartup: a taken proxy port is a startup error, the
// agent never runs and no table is left.
func TestPortInUseStopsStartup(t *testing.T) {
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	marker := filepath.Join(w.SharedDir(t), "agent-ran")
	var ln net.Listener
	if err := w.Agent.Do(func() (err error) {
		ln, err = net.Listen("tcp", ":15001")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := w.StartSupervisor(t, pol, nil, "touch", marker)
	code := s.MustExit(10 * time.Second)
	stderr := s.Err.String()
	if code == 0 || !strings.Contains(stderr, "15001") || !strings.Contains(stderr, "address already in use") {
		t.Errorf("exit %d, stderr %q: want a failure naming port 15001 and the cause", code, stderr)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the agent ran")
	}
	if n := w.CountTables(t, "forge_supervisor"); n != 0 {
		t.Errorf("table left after a failed start: %v", w.Tables(t))
	}
}

// TestSIGHUPReloadsPolicy: SIGHUP loads the policy file again; a broken
// file keeps the old policy, a valid one replaces it.
func TestSIGHUPReloadsPolicy(t *testing.T) {
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	// SIGHUP is forwarded to the agent too: it must survive it, so the
	// test waits until the agent ignores it.
	ready := filepath.Join(w.SharedDir(t), "ready")
	s := w.StartSupervisor(t, pol, nil, "sh", "-c", "trap '' HUP; echo ready >"+ready+"; sleep 600")
	s.WaitReady()
	waitFile(t, s, ready, 5*time.Second)
	curl := func() string {
		code, _, _ := w.Curl("--resolve", "allowed.test:443:198.51.100.1", "https://allowed.test/")
		return code
	}
	// Teach the DNS cache the name's address, so the SNI check passes.
	if code, _, err := w.Curl("https://allowed.test/"); code != "200" {
		t.Fatalf("allowed before any reload: %s %v", code, err)
	}

	// A broken file: the old policy stays.
	w.WritePolicy(t, "egress_allowlist.json", `{"profile":"x","mode":`)
	s.Signal(syscall.SIGHUP)
	e := s.WaitEvent(func(e world.Event) bool { return e.Msg() == "policy_reload_failed" && e.Str("policy_path") == pol }, 5*time.Second)
	if !strings.Contains(e.Str("error"), pol) {
		t.Errorf("policy_reload_failed does not name the file: %v", e)
	}
	if code := curl(); code != "200" {
		t.Fatalf("after a failed reload: %s, want the old policy (200)", code)
	}

	// A valid deny-all file: the same request is now denied.
	w.WritePolicy(t, "egress_allowlist.json", `{"profile":"strict","mode":"deny-all","allowed_domains":[],"tool_domains":[],"all_domains":[]}`)
	s.Signal(syscall.SIGHUP)
	e = s.WaitEvent(func(e world.Event) bool { return e.Msg() == "policy_reloaded" && e.Str("policy_path") == pol }, 5*time.Second)
	if e.Str("mode") != "deny-all" {
		t.Errorf("policy_reloaded: %v", e)
	}
	if code := curl(); code == "200" {
		t.Fatalf("after reloading deny-all: still 200")
	}
	d := lastEgress(t, s, func(e world.Event) bool { return e.Msg() == "egress_denied" && e.Str("sni") == "allowed.test" })
	t.Logf("denied after reload: reason %s", d.Str("reason"))
	select {
	case <-s.Done():
		t.Fatalf("supervisor exited on SIGHUP")
	default:
	}
}
