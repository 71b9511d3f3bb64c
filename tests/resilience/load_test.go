package resilience

import (
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

const (
	// manyConns is the number of simultaneous agent connections: well
	// past the classify pool (1024) and the inter-stage queues (256), and
	// past the listen backlog (somaxconn, 4096 by default), under the
	// splice slots (16384).
	manyConns = 10000
	// maxPeakRSS bounds the supervisor's memory with manyConns live relays.
	maxPeakRSS = 1 << 30
)

// TestTenThousandConnections holds manyConns agent connections open
// through the supervisor at once, then completes them all.
func TestTenThousandConnections(t *testing.T) {
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
	lg := startLoadgen(t, w, "/hold", manyConns, "-dial-timeout", "45s", "-ready-timeout", "45s")
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
		t.Errorf("the supervisor is at its RLIMIT_NOFILE (%d of %d fds) with %v relays: the engine's concurrency (MaxConns %d splice slots,"+
			" ~6 fds each: two sockets, two pipes) is not bounded by its descriptor budget, so accept, dial and the health server fail with EMFILE",
			fds, noFile(), active, 16384)
	}
	if peak.Ready != manyConns || peak.failed() != 0 {
		t.Errorf("at the peak %d of %d connections were ready through the proxy, failures %v: connections beyond the pools must wait, not fail",
			peak.Ready, manyConns, peak.Failures)
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

	// Exactly one audit event per connection (warm-up included).
	want := int(done.Established) + 20
	ev := waitEgress(t, s, loadPort, want, 30*time.Second)
	if len(ev) != want {
		t.Errorf("%d audit events for %d connections: %v", len(ev), want, countBy(ev))
	} else if c := countBy(ev); c["egress_allowed/allowed_tcp"] != want {
		t.Errorf("audit events: %v, want %d egress_allowed/allowed_tcp", c, want)
	}
	hwm, _ := s.ProcStatus("VmHWM")
	after := settleGoroutines(t, w, base, 30*time.Second)
	t.Logf("figures: peak VmRSS %d MiB (VmHWM %d MiB), goroutines before %v / peak %v / after %v",
		rss>>10, hwm>>10, base, peakG, after)
	if hwm<<10 > maxPeakRSS {
		t.Errorf("supervisor VmHWM %d MiB, want < %d MiB", hwm>>10, maxPeakRSS>>20)
	}
}
