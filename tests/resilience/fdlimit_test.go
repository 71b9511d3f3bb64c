package resilience

import (
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

const (
	// lowNoFile is the supervisor's descriptor limit in the fd test: enough
	// to start (listeners, netlink, the agent's pipes) and a few dozen
	// relays, far below the connections the test opens.
	lowNoFile = "256"
	// overLimitConns is well past what lowNoFile descriptors can carry
	// (~6 per relay): without admission control accept would hit EMFILE
	// and upstream dials would fail.
	overLimitConns = 400
	// recoveryConns is the batch that must go through after the flood.
	recoveryConns = 20
)

// TestFDLimitBackoffAndRecovery runs the supervisor with RLIMIT_NOFILE
// 256 and opens 400 connections at once. The engine admits only as many
// connections as its descriptors can carry; the rest wait in the kernel's
// accept queue. So: no connection fails for lack of descriptors (no
// dial_failed, no EMFILE), the supervisor stays under its limit and
// healthy, and once the clients are gone new connections work again.
func TestFDLimitBackoffAndRecovery(t *testing.T) {
	w, ls, s := startWorld(t, world.Launch{Wrap: []string{"prlimit", "--nofile=" + lowNoFile + ":" + lowNoFile}})
	if r := agentCurl(t, w, "/nothing", 10*time.Second); r.exit != 0 {
		t.Fatalf("warm-up curl: %+v", r)
	}
	waitEgress(t, s, loadPort, 1, 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	base := metric(t, w, "go_goroutines")
	idleFDs, _ := s.OpenFDs()

	lg := startLoadgen(t, w, "/hold", overLimitConns, "-dial-timeout", "10s", "-ready-timeout", "10s")
	peak := lg.next("peak", time.Minute)
	fds, _ := s.OpenFDs()
	t.Logf("flood of %d: loadgen %+v; supervisor fds %d (idle %d, limit %s); world holds %d",
		overLimitConns, peak, fds, idleFDs, lowNoFile, ls.Active())
	if exited(s) {
		t.Fatalf("the supervisor died at its fd limit: %s", s.Err.String())
	}
	if peak.Ready == 0 {
		t.Errorf("no connection got through at all under the fd limit: %+v", peak)
	}
	backoffs := s.CountEvents("accept_backoff")
	if n := peak.Failures["head_denied"]; n != 0 {
		t.Errorf("%d connections were denied under the fd limit (want backpressure, not failure): %v", n, msgCounts(s))
	}
	healthy(t, w, s) // the reserve keeps /healthz answering at the peak

	lg.release()
	done := lg.next("done", time.Minute)
	t.Logf("flood done: %+v; accept_backoff events %d; log %v", done, backoffs, msgCounts(s))
	if done.Completed != peak.Ready {
		t.Errorf("%d of the %d ready connections completed: %v", done.Completed, peak.Ready, done.Failures)
	}

	// Recovery: the descriptors come back and a fresh batch goes through
	// (the accept loop's backoff is at most a second).
	deadline := time.Now().Add(30 * time.Second)
	for round := 1; ; round++ {
		rec := startLoadgen(t, w, "/hold", recoveryConns, "-dial-timeout", "10s", "-ready-timeout", "10s")
		p := rec.next("peak", time.Minute)
		rec.release()
		r := rec.next("done", time.Minute)
		if r.Completed == recoveryConns {
			t.Logf("recovered in round %d: %+v", round, r)
			break
		}
		t.Logf("recovery round %d not yet: %+v", round, r)
		if time.Now().After(deadline) {
			fds, _ := s.OpenFDs()
			t.Fatalf("no recovery after the flood: last batch %+v / %+v, supervisor fds %d", p, r, fds)
		}
		time.Sleep(time.Second)
	}
	healthy(t, w, s)
	after := settleGoroutines(t, w, base, 30*time.Second)
	fds, _ = s.OpenFDs()
	t.Logf("after: goroutines %v (baseline %v), fds %d (idle %d)", after, base, fds, idleFDs)
}
