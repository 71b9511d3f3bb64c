package resilience

import (
	"testing"
	"time"

	"github.com/forge/forge-supervisor/stages"
	"github.com/forge/forge-supervisor/tests/world"
)

const (
	// manyConns is the number of simultaneous agent connections: well
	// past the classify pool (1024) and the inter-stage queues (256), and
	// past the listen backlog (somaxconn, 4096 by default), under the
	// splice slots (16384).
	manyConns = 10000
	// fdsPerRelay is what one relayed connection costs the supervisor: the
	// agent's socket, the upstream socket and a splice pipe (two fds) per
	// direction. fdReserve covers listeners, netlink, the agent, logs.
	fdsPerRelay = 6
	fdReserve   = 1024
	// maxPeakRSS bounds the supervisor's memory with manyConns live relays.
	maxPeakRSS = 1 << 30
)

// TestTenThousandConnections holds manyConns agent connections open
// through the supervisor at once, then completes them all.
func TestTenThousandConnections(t *testing.T) { holdMany(t, manyConns) }

// TestConnectionsAtFDBudget is the same with as many connections as the
// supervisor's descriptor limit can carry (capped at manyConns): on a
// machine whose hard RLIMIT_NOFILE cannot be raised, it still shows the
// figures of a full pool with no connection waiting.
func TestConnectionsAtFDBudget(t *testing.T) {
	// The engine admits (limit-reserve)/6 connections; stay a little under
	// it, so a warm-up connection still being torn down cannot make one
	// of these wait.
	n := min(manyConns, int(noFile()-fdReserve)/fdsPerRelay-32)
	if n < 100 {
		t.Skipf("RLIMIT_NOFILE %d leaves room for only %d relays", noFile(), n)
	}
	holdMany(t, n)
}

// holdMany opens n connections as the agent, holds them all open at once
// through the supervisor, then completes them, checking the supervisor's
// health, memory, goroutines and audit on the way.
func holdMany(t *testing.T, n int) {
	w, ls, s := startWorld(t, world.Launch{})

	// Warm up (the name's first lookup, lazily started goroutines), then
	// take the baseline.
	warm := startLoadgen(t, w, "/hold", 20)
	warm.next("peak", 30*time.Second)
	warm.release()
	if r := warm.next("done", 30*time.Second); r.Completed != 20 {
		t.Fatalf("warm-up: %+v", r)
	}
	waitEgress(t, s, loadPort, 20, 10*time.Second)
	time.Sleep(time.Second)
	base := metric(t, w, "go_goroutines")
	baseRSS, _ := s.ProcStatus("VmRSS")

	start := time.Now()
	lg := startLoadgen(t, w, "/hold", n, "-dial-timeout", "45s", "-ready-timeout", "45s")
	peak := lg.next("peak", 2*time.Minute)
	peakTime := time.Since(start)
	rss, err := s.ProcStatus("VmRSS")
	if err != nil {
		t.Fatalf("supervisor gone at the peak: %v", err)
	}
	fds, _ := s.OpenFDs()
	active := metricOr(w, "forge_supervisor_active_connections")
	peakG := metricOr(w, "go_goroutines")
	worldActive := ls.Active()
	t.Logf("RLIMIT_NOFILE of every process: %d", noFile())
	t.Logf("peak after %v: loadgen %+v; supervisor VmRSS %d MiB (idle %d MiB), fds %d, goroutines %v (baseline %v), active %v; world holds %d; log: %v",
		peakTime.Round(time.Millisecond), peak, rss>>10, baseRSS>>10, fds, peakG, base, active, worldActive, msgCounts(s))
	healthy(t, w, s)
	if fds >= int(noFile())-16 {
		t.Errorf("the supervisor is at its RLIMIT_NOFILE (%d of %d fds) with %d connections held: the engine's concurrency (MaxConns %d splice slots,"+
			" ~%d fds each) is not bounded by its descriptor budget, so accept, dial and the health server fail with EMFILE",
			fds, noFile(), worldActive, stages.DefaultMaxConns, fdsPerRelay)
	}
	// Connections the supervisor cannot carry must wait (backpressure),
	// never be refused, reset or denied. When the descriptor limit cannot
	// hold n relays at all, waiting connections time out on the
	// client's side: those are the only failures allowed then.
	canHold := noFile() >= uint64(fdsPerRelay*n+fdReserve)
	for k, n := range peak.Failures {
		waited := k == "head_timeout" || k == "connect_timeout"
		if !waited || canHold {
			t.Errorf("%d connections failed with %s (RLIMIT_NOFILE %d): connections beyond the engine's capacity must wait, not fail", n, k, noFile())
		}
	}
	if canHold && peak.Ready != int64(n) {
		t.Errorf("at the peak %d of %d connections were ready through the proxy", peak.Ready, n)
	}
	if !canHold {
		t.Logf("RLIMIT_NOFILE %d cannot hold %d relays (~%d fds each; raising it needs CAP_SYS_RESOURCE): %d waited past the client's timeout",
			noFile(), n, fdsPerRelay, peak.Failures["head_timeout"]+peak.Failures["connect_timeout"])
	}
	if worldActive < peak.Ready {
		t.Errorf("the world holds %d connections, the agent %d ready: not simultaneous", worldActive, peak.Ready)
	}
	if rss<<10 > maxPeakRSS {
		t.Errorf("supervisor VmRSS %d MiB at %d connections, want < %d MiB", rss>>10, peak.Ready, maxPeakRSS>>20)
	}

	lg.release()
	done := lg.next("done", 2*time.Minute)
	t.Logf("done after %v: %+v", time.Since(start).Round(time.Millisecond), done)
	if done.Completed != peak.Ready {
		t.Errorf("%d connections completed, %d were ready; failures %v", done.Completed, peak.Ready, done.Failures)
	}
	healthy(t, w, s)

	// One audit event per connection (warm-up included): at least one for
	// each connection the agent established, and never more than one per
	// connect attempt. (A connect the client gave up on may still have
	// reached the supervisor's accept queue; it is audited then too.)
	lo, hi := int(done.Established)+20, n+20
	ev := waitEgress(t, s, loadPort, lo, 30*time.Second)
	if len(ev) < lo || len(ev) > hi {
		t.Errorf("%d audit events for %d established connections (%d attempts): %v", len(ev), lo, hi, countBy(ev))
	}
	t.Logf("audit events: %v", countBy(ev))
	shown := 0
	for _, e := range ev {
		if r := e.Str("reason"); r != "allowed_tcp" && r != "dial_failed" && shown < 5 {
			shown++
			t.Logf("audit event of another kind (a client whose first bytes came after the classify timeout is opaque → learned_ip): %v", e)
		}
	}
	hwm, _ := s.ProcStatus("VmHWM")
	after := settleGoroutines(t, w, base, 30*time.Second)
	t.Logf("figures: peak VmRSS %d MiB (VmHWM %d MiB), goroutines before %v / peak %v / after %v",
		rss>>10, hwm>>10, base, peakG, after)
	if hwm<<10 > maxPeakRSS {
		t.Errorf("supervisor VmHWM %d MiB, want < %d MiB", hwm>>10, maxPeakRSS>>20)
	}
}
