package actors_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/netenv"
)

// supervisor is a running tiny supervisor: PID 1 of its own PID namespace.
type supervisor struct {
	cmd  *exec.Cmd
	out  *netenv.SyncBuffer // agent output and supervisor markers/logs
	done chan struct{}
	code int
	// cancelW is the test's end of the cancel pipe (CancelOnClose); nil
	// otherwise.
	cancelW *os.File
	// stdin is the write end of the supervisor's stdin, which the agent
	// inherits: a script can wait on `read` for the test's go-ahead.
	stdin *os.File
}

// Scripts below write markers split by '' (echo agent_''ready) so that the
// marker never appears verbatim in argv, which the supervisor logs.

// startSupervisor re-executes the test binary as PID 1 of a new PID and
// mount namespace, running the agent command argv.
func startSupervisor(t *testing.T, c supervisorConfig) *supervisor {
	t.Helper()
	netenv.RequireRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	s := &supervisor{out: &netenv.SyncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(self)
	s.cmd.Env = append(os.Environ(), supervisorModeEnv+"="+string(raw))
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdin, s.stdin = stdinR, stdinW
	t.Cleanup(func() { stdinW.Close() })
	if c.CancelOnClose {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		s.cmd.ExtraFiles = []*os.File{r} // fd 3: cancelFD
		s.cancelW = w
		t.Cleanup(func() { w.Close() })
	}
	err = s.cmd.Start()
	stdinR.Close() // the supervisor holds its own copy
	if c.CancelOnClose {
		s.cmd.ExtraFiles[0].Close() // the supervisor holds its own copy
	}
	if err != nil {
		t.Fatalf("start supervisor: %v", err)
	}
	go func() {
		defer close(s.done)
		err := s.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			s.code = ee.ExitCode()
		default:
			s.code = -1
		}
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill() // PID 1 dying takes the whole namespace with it
		<-s.done
	})
	return s
}

// waitOutput waits until the output contains want.
func (s *supervisor) waitOutput(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(s.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %v; output:\n%s", want, timeout, s.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wait waits for the supervisor to exit and returns its exit code.
func (s *supervisor) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
		return s.code
	case <-time.After(timeout):
		t.Fatalf("supervisor still running after %v; output:\n%s", timeout, s.out.String())
		return 0
	}
}

// tellAgent writes a line to the agent's stdin.
func (s *supervisor) tellAgent(t *testing.T, line string) {
	t.Helper()
	if _, err := s.stdin.WriteString(line + "\n"); err != nil {
		t.Fatalf("write to the agent's stdin: %v", err)
	}
}

// cancel cancels the supervisor's RunAgent context (CancelOnClose).
func (s *supervisor) cancel(t *testing.T) {
	t.Helper()
	if err := s.cancelW.Close(); err != nil {
		t.Fatalf("close the cancel pipe: %v", err)
	}
}

func (s *supervisor) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal supervisor: %v", err)
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name   string
		script string
		want   int
	}{
		{"exit 0", "exit 0", 0},
		{"exit 3", "exit 3", 3},
		{"killed by SIGKILL", "kill -KILL $$", 137},
		{"killed by SIGSEGV", "kill -SEGV $$", 139},
		{"command not found", "exec /no/such/agent", 127},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startSupervisor(t, supervisorConfig{Argv: []string{"/bin/sh", "-c", tc.script}})
			if got := s.wait(t, 10*time.Second); got != tc.want {
				t.Fatalf("exit code %d, want %d; output:\n%s", got, tc.want, s.out.String())
			}
			if strings.Contains(s.out.String(), "MARK started pid=1\n") {
				t.Errorf("agent is PID 1: the supervisor did not get a PID namespace; output:\n%s", s.out.String())
			}
		})
	}
}

// TestSIGTERMReachesAgentAndChildren: the whole process group gets it.
func TestSIGTERMReachesAgentAndChildren(t *testing.T) {
	script := `
(trap 'echo child_g''ot_term; exit 0' TERM; echo child''_ready; while :; do sleep 0.05; done) &
child=$!
trap 'echo agent_g''ot_term; wait $child; exit 0' TERM
echo agent''_ready
while :; do sleep 0.05; done`
	s := startSupervisor(t, supervisorConfig{Argv: []string{"/bin/sh", "-c", script}, GraceMS: 5000})
	s.waitOutput(t, "agent_ready", 10*time.Second)
	s.waitOutput(t, "child_ready", 10*time.Second)
	s.signal(t, syscall.SIGTERM)
	if code := s.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0 (agent handled TERM); output:\n%s", code, s.out.String())
	}
	for _, want := range []string{"agent_got_term", "child_got_term"} {
		if !strings.Contains(s.out.String(), want) {
			t.Errorf("missing %q; output:\n%s", want, s.out.String())
		}
	}
}

// TestGraceThenKill: an agent that ignores SIGTERM is killed after Grace.
func TestGraceThenKill(t *testing.T) {
	const grace = 300 * time.Millisecond
	script := `trap '' TERM; echo agent''_ready; while :; do sleep 0.05 || true; done`
	s := startSupervisor(t, supervisorConfig{Argv: []string{"/bin/sh", "-c", script}, GraceMS: int(grace / time.Millisecond)})
	s.waitOutput(t, "agent_ready", 10*time.Second)
	start := time.Now()
	s.signal(t, syscall.SIGTERM)
	code := s.wait(t, 10*time.Second)
	elapsed := time.Since(start)
	if code != 137 {
		t.Fatalf("exit code %d, want 137 (SIGKILL); output:\n%s", code, s.out.String())
	}
	if elapsed < grace || elapsed > grace+3*time.Second {
		t.Fatalf("killed after %v, want about %v", elapsed, grace)
	}
}

// TestContextCancelTerminates: when the supervisor stops (ctx cancelled),
// the agent gets SIGTERM and its own exit code is returned.
func TestContextCancelTerminates(t *testing.T) {
	script := `trap 'echo agent_g''ot_term; exit 7' TERM; echo agent''_ready; while :; do sleep 0.05; done`
	s := startSupervisor(t, supervisorConfig{Argv: []string{"/bin/sh", "-c", script}, GraceMS: 5000, CancelOnClose: true})
	// Cancel only once the trap is set: earlier, SIGTERM kills the shell
	// outright (143), which says nothing about the supervisor.
	s.waitOutput(t, "agent_ready", 10*time.Second)
	s.cancel(t)
	if code := s.wait(t, 10*time.Second); code != 7 {
		t.Fatalf("exit code %d, want 7; output:\n%s", code, s.out.String())
	}
	if !strings.Contains(s.out.String(), "agent_got_term") {
		t.Fatalf("agent never saw SIGTERM; output:\n%s", s.out.String())
	}
}

// TestNoZombies: orphaned grandchildren (double fork) are reparented to the
// supervisor, PID 1, which reaps them; the agent counts zombies in /proc.
// No step waits a fixed time: the orphans sleep until the agent kills them
// (so they are surely alive when counted), and the agent polls for the
// zombies to go, up to a bound that only a supervisor that never reaps
// reaches.
func TestNoZombies(t *testing.T) {
	script := `
pids=
for i in $(seq 30); do pids="$pids $(sh -c 'sleep 600 >/dev/null & echo $!')"; done
orphans=0
for p in $pids; do
  [ "$(cut -d')' -f2 < /proc/$p/stat | cut -d' ' -f3)" = 1 ] && orphans=$((orphans+1))
done
echo "orphans""_of_pid1=$orphans"
kill -KILL $pids
zombies() {
  z=0
  for f in /proc/[0-9]*/stat; do
    s=$(cut -d')' -f2 < $f 2>/dev/null | cut -d' ' -f2)
    [ "$s" = Z ] && z=$((z+1))
  done
  echo $z
}
i=0
while z=$(zombies); [ "$z" != 0 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
echo "zom""bies=$z"
exit 4`
	s := startSupervisor(t, supervisorConfig{Argv: []string{"/bin/sh", "-c", script}})
	if code := s.wait(t, 60*time.Second); code != 4 {
		t.Fatalf("exit code %d, want the agent's 4; output:\n%s", code, s.out.String())
	}
	out := s.out.String()
	if !strings.Contains(out, "zombies=0") {
		t.Fatalf("zombies left; output:\n%s", out)
	}
	if !strings.Contains(out, "orphans_of_pid1=30") {
		t.Fatalf("the 30 double-forked orphans were not all children of PID 1, so reaping them tests nothing; output:\n%s", out)
	}
}

// TestSIGHUPReloads: SIGHUP calls Reload and reaches the agent; a failing
// Reload changes nothing else.
func TestSIGHUPReloads(t *testing.T) {
	for _, fails := range []bool{false, true} {
		name := map[bool]string{false: "reload ok", true: "reload fails"}[fails]
		t.Run(name, func(t *testing.T) {
			script := `trap 'echo agent_''got_hup; exit 5' HUP; echo agent''_ready; while :; do sleep 0.05; done`
			s := startSupervisor(t, supervisorConfig{Argv: []string{"/bin/sh", "-c", script}, ReloadFails: fails})
			s.waitOutput(t, "agent_ready", 10*time.Second)
			s.signal(t, syscall.SIGHUP)
			if code := s.wait(t, 10*time.Second); code != 5 {
				t.Fatalf("exit code %d, want 5; output:\n%s", code, s.out.String())
			}
			out := s.out.String()
			for _, want := range []string{"MARK reload_called", "agent_got_hup"} {
				if !strings.Contains(out, want) {
					t.Errorf("missing %q; output:\n%s", want, out)
				}
			}
			// The reload's own audit line is Reload's business (main);
			// a failing Reload must not stop the loop: the agent still
			// got the signal and its status is the supervisor's.
		})
	}
}

// TestOtherSignalsForwarded: USR1, USR2, QUIT and WINCH reach the agent.
func TestOtherSignalsForwarded(t *testing.T) {
	script := `
trap 'echo got_''USR1' USR1; trap 'echo got_''USR2' USR2; trap 'echo got_''QUIT' QUIT; trap 'echo got_''WINCH; exit 0' WINCH
echo agent''_ready
while :; do sleep 0.05; done`
	s := startSupervisor(t, supervisorConfig{Argv: []string{"/bin/sh", "-c", script}})
	s.waitOutput(t, "agent_ready", 10*time.Second)
	for _, sig := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGQUIT} {
		s.signal(t, sig)
		s.waitOutput(t, "got_"+strings.TrimPrefix(sigName(sig), "SIG"), 5*time.Second)
	}
	s.signal(t, syscall.SIGWINCH)
	if code := s.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d; output:\n%s", code, s.out.String())
	}
}

func sigName(s syscall.Signal) string {
	return map[syscall.Signal]string{syscall.SIGUSR1: "SIGUSR1", syscall.SIGUSR2: "SIGUSR2", syscall.SIGQUIT: "SIGQUIT"}[s]
}
