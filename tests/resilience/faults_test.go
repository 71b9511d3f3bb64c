package resilience

import (
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

// idleTimeout is the supervisor's idle timeout in the fault tests: short,
// so a stalled upstream is cut within the test's time.
const idleTimeout = 2 * time.Second

// curlResult is what the agent's curl saw.
type curlResult struct {
	exit    int           // curl's exit status (18: partial transfer, 56: receive failure/reset, 28: timeout)
	size    int           // body bytes received
	stderr  string        // curl's message
	elapsed time.Duration // wall time of the whole transfer
}

// agentCurl fetches path from the load server as the agent (UID 1000,
// redirected through the supervisor), by IP with the allowed name in Host.
func agentCurl(t *testing.T, w *world.World, path string, maxTime time.Duration) curlResult {
	t.Helper()
	cmd := w.AsAgent("curl", "-sS", "--max-time", strconv.Itoa(int(maxTime/time.Second)), "-o", "/dev/null",
		"-w", "%{size_download}", "-H", "Host: allowed.test", "http://198.51.100.1:"+strconv.Itoa(loadPort)+path)
	var errb strings.Builder
	cmd.Stderr = &errb
	start := time.Now()
	out, err := cmd.Output()
	r := curlResult{elapsed: time.Since(start), stderr: strings.TrimSpace(errb.String())}
	r.size, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.exit = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("curl: %v", err)
	}
	return r
}

// TestUpstreamFaultsMidStream: an upstream that resets halfway through a
// response, and one that stalls forever after its headers. The agent's
// connection must end (the reset propagated, the stall cut by the idle
// timeout), each with exactly one audit event, and the supervisor's
// goroutines must return to their baseline.
func TestUpstreamFaultsMidStream(t *testing.T) {
	w, ls, s := startWorld(t, world.Launch{Env: []string{"FORGE_SUPERVISOR_IDLE_TIMEOUT=" + idleTimeout.String()}})

	// Warm up (first lookup of the name), then the baseline.
	if r := agentCurl(t, w, "/nothing", 10*time.Second); r.exit != 0 {
		t.Fatalf("warm-up curl: %+v", r)
	}
	waitEgress(t, s, loadPort, 1, 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	base := metric(t, w, "go_goroutines")

	t.Run("reset", func(t *testing.T) {
		before := len(egressEvents(s, loadPort))
		r := agentCurl(t, w, "/reset", 15*time.Second)
		t.Logf("reset mid-body: curl exit %d after %v, %d of %d body bytes, %q",
			r.exit, r.elapsed.Round(time.Millisecond), r.size, world.ResetLength, r.stderr)
		if r.exit == 0 || r.size >= world.ResetLength {
			t.Fatalf("a reset upstream looked like a complete response to the agent: %+v", r)
		}
		if r.exit == 28 || r.elapsed > 5*time.Second {
			t.Errorf("the agent waited %v for an upstream that had reset (curl exit %d): the reset was not propagated", r.elapsed, r.exit)
		}
		// A reset is propagated as a reset: a close (FIN) would let a
		// close-delimited response look complete to the agent.
		if r.exit != 56 {
			t.Errorf("curl exit %d (%q), want 56 (connection reset): the upstream's reset reached the agent as an orderly close",
				r.exit, r.stderr)
		}
		oneEvent(t, s, before)
		if n := ls.Path("/reset"); n != 1 {
			t.Errorf("the world saw %d /reset requests, want 1", n)
		}
	})

	t.Run("stall", func(t *testing.T) {
		before := len(egressEvents(s, loadPort))
		r := agentCurl(t, w, "/stall", 15*time.Second)
		t.Logf("stall after headers: curl exit %d after %v, %d of %d body bytes, %q",
			r.exit, r.elapsed.Round(time.Millisecond), r.size, world.StallLength, r.stderr)
		if r.exit == 0 {
			t.Fatalf("a stalled upstream looked like a complete response: %+v", r)
		}
		if r.exit == 28 {
			t.Fatalf("curl timed out after %v: the idle timeout (%v) did not cut the stalled connection", r.elapsed, idleTimeout)
		}
		if r.elapsed < idleTimeout-200*time.Millisecond || r.elapsed > idleTimeout+3*time.Second {
			t.Errorf("the stalled connection ended after %v, want about the idle timeout %v", r.elapsed, idleTimeout)
		}
		e := oneEvent(t, s, before)
		if d, _ := e["duration_ms"].(float64); d < float64((idleTimeout - 200*time.Millisecond).Milliseconds()) {
			t.Errorf("audit duration %vms, want at least the idle timeout", d)
		}
		if ls.Path("/stall") != 1 {
			t.Errorf("the world saw %d /stall requests, want 1", ls.Path("/stall"))
		}
	})

	healthy(t, w, s)
	after := settleGoroutines(t, w, base, 15*time.Second)
	t.Logf("goroutines before %v, after %v", base, after)
	// The world's side of both connections is gone too.
	deadline := time.Now().Add(5 * time.Second)
	for ls.Active() != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := ls.Active(); n != 0 {
		t.Errorf("the world still holds %d connections: the supervisor did not close its upstream side", n)
	}
}

// oneEvent waits for the audit event of the one connection made since
// before events existed, and checks no second one follows.
func oneEvent(t *testing.T, s *world.Supervisor, before int) world.Event {
	t.Helper()
	ev := waitEgress(t, s, loadPort, before+1, 10*time.Second)
	if len(ev) < before+1 {
		t.Fatalf("no audit event for the connection")
	}
	time.Sleep(500 * time.Millisecond)
	ev = egressEvents(s, loadPort)
	if len(ev) != before+1 {
		t.Fatalf("%d audit events for one connection: %v", len(ev)-before, ev[before:])
	}
	e := ev[before]
	if e.Msg() != "egress_allowed" || e.Str("reason") != "allowed_tcp" {
		t.Errorf("audit event %v, want egress_allowed/allowed_tcp", e)
	}
	return e
}
