package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

// TestAgentOutputModes: by default the agent's stdout and stderr arrive
// as agent_output records on the supervisor's stdout, and nothing of the
// agent's reaches the supervisor's stderr; with
// FORGE_SUPERVISOR_AGENT_OUTPUT=raw its lines are copied verbatim, stdout
// to stdout and stderr to stderr.
func TestAgentOutputModes(t *testing.T) {
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	script := `echo out_''line; echo err_''line >&2; printf 'no newline'`

	s := w.StartSupervisor(t, pol, nil, "sh", "-c", script)
	if code := s.MustExit(10 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got := s.AgentStdout(); len(got) != 2 || got[0] != "out_line" || got[1] != "no newline" {
		t.Errorf("agent stdout records %q, want out_line and the unfinished last line", got)
	}
	if got := s.AgentStderr(); got != "err_line" {
		t.Errorf("agent stderr records %q", got)
	}
	if strings.Contains(s.Err.String(), "err_line") {
		t.Errorf("the agent's stderr reached the supervisor's: %q", s.Err.String())
	}
	for _, l := range strings.Split(s.Out.String(), "\n") {
		if l == "out_line" {
			t.Errorf("a raw agent line in the log")
		}
	}

	raw := w.StartSupervisor(t, pol, []string{"FORGE_SUPERVISOR_AGENT_OUTPUT=raw"}, "sh", "-c", script)
	if code := raw.MustExit(10 * time.Second); code != 0 {
		t.Fatalf("raw: exit %d", code)
	}
	out := raw.Out.String()
	if !strings.Contains(out, "\nout_line\n") || !strings.Contains(out, "\nno newline\n") || len(raw.AgentStdout()) != 0 {
		t.Errorf("raw: stdout does not carry the agent's lines verbatim, each whole:\n%s", out)
	}
	if !strings.Contains(raw.Err.String(), "err_line\n") {
		t.Errorf("raw: stderr %q lacks the agent's line", raw.Err.String())
	}
	// The supervisor's own lines stay whole JSON around the agent's.
	if n := len(raw.Events()); n < 3 {
		t.Errorf("raw: %d parseable events", n)
	}
}
