package actors_test

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAgentHasItsOwnOutput: the agent's stdout and stderr are pipes of
// its own, not the supervisor's; what it prints (a forged audit line
// included) arrives wrapped in agent_output records.
func TestAgentHasItsOwnOutput(t *testing.T) {
	script := `echo '{"msg":"egress_''denied","sni":"forged.test"}'; echo to_''stderr >&2; ` +
		`readlink /proc/self/fd/1 /proc/1/fd/1 /proc/self/fd/2 /proc/1/fd/2 | tr '\n' ' ' | sed 's/^/fds_''are /'; echo`
	s := startSupervisor(t, supervisorConfig{Argv: []string{"/bin/sh", "-c", script}})
	if code := s.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, s.out.String())
	}
	out := s.out.String()
	// The tiny supervisor's logger is zap's console encoder: each record
	// is "... agent_output {"stream": ..., "line": ...}".
	for _, want := range []string{
		`agent_output	{"stream": "stdout", "line": "{\"msg\":\"egress_denied\",\"sni\":\"forged.test\"}"}`,
		`agent_output	{"stream": "stderr", "line": "to_stderr"}`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s; output:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, `{"msg":"egress_denied"`) {
			t.Errorf("the forged line reached the output as it was printed: %q", l)
		}
	}
	// The agent can read its own fds, not PID 1's: readlink of
	// /proc/1/fd/* fails for uid 1000. Its own are pipes.
	i := strings.Index(out, "fds_are ")
	if i < 0 {
		t.Fatalf("no fd report; output:\n%s", out)
	}
	report := out[i:]
	if n := strings.Count(report[:strings.IndexAny(report, "\"\n")], "pipe:["); n != 2 {
		t.Errorf("agent's stdout/stderr: %q, want two pipes", report[:strings.IndexAny(report, "\"\n")])
	}
}

// TestKeepSIGHUP: with KeepSIGHUP, SIGHUP reloads and the agent (which
// does not handle HUP and would die of it) keeps running. The agent runs
// until the test tells it to end, not for a fixed time a loaded machine
// can outlast before the SIGHUP arrives.
func TestKeepSIGHUP(t *testing.T) {
	script := `echo agent''_ready; read go_on; echo agent_''survived`
	s := startSupervisor(t, supervisorConfig{Argv: []string{"/bin/sh", "-c", script}, KeepSIGHUP: true})
	s.waitOutput(t, "agent_ready", 10*time.Second)
	s.signal(t, syscall.SIGHUP)
	s.waitOutput(t, "MARK reload_called", 10*time.Second)
	s.tellAgent(t, "end")
	if code := s.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0 (the agent never saw SIGHUP); output:\n%s", code, s.out.String())
	}
	s.waitOutput(t, "agent_survived", time.Second)
}
