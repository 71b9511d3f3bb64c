package world

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/netenv"
)

// Supervisor is forge-supervisor running as PID 1 of a new PID namespace
// inside the agent network namespace.
type Supervisor struct {
	t    *testing.T
	cmd  *exec.Cmd
	Out  *netenv.SyncBuffer // stdout: the NDJSON log
	Err  *netenv.SyncBuffer
	done chan struct{}
	code int
}

// StartSupervisor runs the binary as PID 1 of a new PID namespace in the
// agent network namespace with the policy at policyPath, env (KEY=VALUE)
// added to the defaults (the world's DNS upstream, a 2 s grace), and argv
// as the agent. See StartLaunch for more options.
func (w *World) StartSupervisor(t *testing.T, policyPath string, env []string, argv ...string) *Supervisor {
	t.Helper()
	return w.StartLaunch(t, Launch{Policy: policyPath, Env: env}, argv...)
}

func exitCode(err error, cmd *exec.Cmd) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

// WaitReady waits for the supervisor_started event.
func (s *Supervisor) WaitReady() {
	s.t.Helper()
	s.WaitEvent(func(e Event) bool { return e.Msg() == "agent_started" }, 15*time.Second)
}

// PID1 returns the host PID of the supervisor (PID 1 of its namespace):
// the child of unshare.
func (s *Supervisor) PID1() int {
	s.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", s.cmd.Process.Pid, s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	pid, _ := strconv.Atoi(f[0])
	return pid
}

// Signal sends sig to the supervisor itself.
func (s *Supervisor) Signal(sig syscall.Signal) {
	if pid := s.PID1(); pid > 0 {
		_ = syscall.Kill(pid, sig)
	}
}

// Wait waits for the supervisor to exit and returns its status.
func (s *Supervisor) Wait(timeout time.Duration) (int, bool) {
	select {
	case <-s.done:
		return s.code, true
	case <-time.After(timeout):
		return 0, false
	}
}

// Event is one decoded log line.
type Event map[string]any

// Msg is the event's msg field.
func (e Event) Msg() string { s, _ := e["msg"].(string); return s }

// Str returns a string field.
func (e Event) Str(k string) string { s, _ := e[k].(string); return s }

// Events decodes every log line so far.
func (s *Supervisor) Events() []Event {
	var out []Event
	sc := bufio.NewScanner(strings.NewReader(s.Out.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e Event
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// WaitEvent waits until an event matches.
func (s *Supervisor) WaitEvent(match func(Event) bool, timeout time.Duration) Event {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, e := range s.Events() {
			if match(e) {
				return e
			}
		}
		select {
		case <-s.done:
			for _, e := range s.Events() {
				if match(e) {
					return e
				}
			}
			s.t.Fatalf("supervisor exited (%d) before the expected event\nstdout:\n%s\nstderr:\n%s", s.code, s.Out.String(), s.Err.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.t.Fatalf("timed out waiting for an event\nstdout:\n%s\nstderr:\n%s", s.Out.String(), s.Err.String())
	return nil
}

// AsAgent returns a command run in the agent namespace as UID/GID 1000 —
// outside the supervisor's jail, but subject to its nft rules.
func (w *World) AsAgent(name string, args ...string) *exec.Cmd {
	full := append([]string{"--reuid", "1000", "--regid", "1000", "--clear-groups", "--", name}, args...)
	return w.Agent.Cmd("setpriv", full...)
}

// Curl runs curl as the agent and returns its HTTP status code (000 when
// no response), its body/stderr, and the error.
func (w *World) Curl(args ...string) (string, string, error) {
	full := append([]string{"-sS", "--max-time", "8", "-o", "-", "-w", "\n%{http_code}", "--cacert", w.CAFile}, args...)
	out, err := w.AsAgent("curl", full...).CombinedOutput()
	s := strings.TrimRight(string(out), "\n")
	i := strings.LastIndex(s, "\n")
	if i < 0 {
		return s, "", err
	}
	return s[i+1:], s[:i], err
}
