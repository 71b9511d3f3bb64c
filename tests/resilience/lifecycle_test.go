package resilience

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

// agentExitCode is what the crash-loop agent's script exits with once its
// final request succeeded: distinct from every status a crash or a
// supervisor failure produces.
const agentExitCode = 42

// TestAgentCrashLoop: the agent's own script restarts a crashing child
// (SIGSEGV) three times; the supervisor keeps serving (it reaps the
// crashed children and is not disturbed by them), the script's final
// request through the proxy works, and the supervisor exits with the
// script's status.
func TestAgentCrashLoop(t *testing.T) {
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", policyJSON)
	script := `for i in 1 2 3; do sh -c 'kill -SEGV $$'; echo "crash $i: $?" >&2; sleep 0.2; done
out=$(curl -sS --max-time 5 -H 'Host: allowed.test' http://198.51.100.1/) || exit 3
case "$out" in *"world says hello to allowed.test"*) exit 42;; esac
exit 4`
	s := w.StartLaunch(t, world.Launch{Policy: pol}, "sh", "-c", script)
	code := s.MustExit(30 * time.Second)
	if code != agentExitCode {
		t.Fatalf("supervisor exit status %d, want the script's %d\nstdout:\n%s\nstderr:\n%s", code, agentExitCode, s.Out.String(), s.Err.String())
	}
	if n := strings.Count(s.AgentStderr(), ": 139"); n != 3 {
		t.Errorf("the script saw %d crashes with status 139 (SIGSEGV), want 3; agent stderr:\n%s", n, s.AgentStderr())
	}
	e := s.WaitEvent(func(e world.Event) bool {
		return e.Msg() == "egress_allowed" && e["dst_port"] == float64(80)
	}, 5*time.Second)
	if e.Str("host") != "allowed.test" {
		t.Errorf("audit of the final request: %v", e)
	}
	exit := s.WaitEvent(func(e world.Event) bool { return e.Msg() == "agent_exited" }, 5*time.Second)
	if c, _ := exit["exit_code"].(float64); int(c) != agentExitCode {
		t.Errorf("agent_exited %v, want exit_code %d", exit, agentExitCode)
	}
	onceEach(t, s, "agent_started", "agent_exited", "supervisor_stopped")
	if w.CountTables(t, "forge_supervisor") != 0 {
		t.Errorf("nft table left behind: %v", w.Tables(t))
	}
}

const (
	// streamConns is the number of live streaming connections when SIGTERM
	// arrives (~160 KiB/s each through the proxy).
	streamConns = 500
	// grace is the supervisor's FORGE_SUPERVISOR_GRACE in world.Launch.
	grace = 2 * time.Second
	// shutdownSlack is what the shutdown may take beyond the grace period:
	// draining the pipeline, cutting relays, auditing, removing nft.
	shutdownSlack = 5 * time.Second
	// sigtermStatus is the documented status: the agent's, 128+SIGTERM.
	sigtermStatus = 128 + int(syscall.SIGTERM)
)

// TestSIGTERMUnderLoad: SIGTERM while 500 connections stream through the
// proxy. The supervisor shuts down within the grace period plus a bound,
// exits with the agent's status (sleep killed by SIGTERM: 143), removes
// its nft table, and audits every connection it accepted exactly once.
func TestSIGTERMUnderLoad(t *testing.T) {
	w, ls, s := startWorld(t, world.Launch{})
	lg := startLoadgen(t, w, "/stream", streamConns, "-dial-timeout", "30s", "-ready-timeout", "30s", "-end-timeout", "30s")
	peak := lg.next("peak", 90*time.Second)
	if peak.Ready != streamConns {
		t.Fatalf("only %d of %d streams running before SIGTERM: %+v", peak.Ready, streamConns, peak)
	}
	time.Sleep(time.Second) // traffic in full flow
	active := metricOr(w, "forge_supervisor_active_connections")

	start := time.Now()
	s.Signal(syscall.SIGTERM)
	code, ok := s.Wait(grace + shutdownSlack)
	took := time.Since(start)
	if !ok {
		t.Fatalf("supervisor still running %v after SIGTERM with %d live streams", took, streamConns)
	}
	t.Logf("SIGTERM with %d streams (%v active in the engine): exit %d after %v", streamConns, active, code, took.Round(time.Millisecond))
	if code != sigtermStatus {
		t.Errorf("exit status %d, want the agent's %d (sleep killed by SIGTERM)", code, sigtermStatus)
	}
	if n := w.CountTables(t, "forge_supervisor"); n != 0 {
		t.Errorf("nft table left after shutdown: %v", w.Tables(t))
	}

	done := lg.next("done", time.Minute)
	t.Logf("streams after shutdown: %+v", done)
	var ended int64
	for _, v := range done.Ends {
		ended += v
	}
	if ended != streamConns {
		t.Errorf("%d of %d streams ended (%v): the rest were left hanging", ended, streamConns, done.Ends)
	}

	// Every connection the world saw was dialed by the supervisor after an
	// allow decision: each must have exactly one audit event, and no
	// connection (client port) may have two.
	ev := egressEvents(s, loadPort)
	seen := map[float64]int{}
	for _, e := range ev {
		p, _ := e["src_port"].(float64)
		seen[p]++
	}
	for p, n := range seen {
		if n != 1 {
			t.Errorf("client port %v audited %d times", p, n)
		}
	}
	counts := countBy(ev)
	t.Logf("audit: %d events %v; world accepted %d", len(ev), counts, ls.Accepted())
	if got := counts["egress_allowed/allowed_tcp"]; int64(got) != ls.Accepted() {
		t.Errorf("%d allowed audit events, the world accepted %d connections from the supervisor", got, ls.Accepted())
	}
	if int64(len(ev)) < peak.Established || int64(len(ev)) > done.Established {
		t.Errorf("%d audit events for %d established connections", len(ev), done.Established)
	}
	onceEach(t, s, "agent_started", "agent_exited", "supervisor_stopped")
}

// onceEach checks each lifecycle event was logged exactly once: the
// agent's crashing children are not the agent, and one exit is one event.
func onceEach(t *testing.T, s *world.Supervisor, msgs ...string) {
	t.Helper()
	for _, msg := range msgs {
		if n := s.CountEvents(msg); n != 1 {
			var lines []string
			for _, e := range s.Events() {
				if e.Msg() == msg {
					lines = append(lines, fmt.Sprint(e))
				}
			}
			t.Errorf("%d %s events, want 1: %s", n, msg, strings.Join(lines, "; "))
		}
	}
}
