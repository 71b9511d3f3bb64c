package procid

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// benchProcesses is the agent's population during the benchmarks: the
// issue's budget (p99 ≤ 50 µs) is for 500 agent processes alive.
const benchProcesses = 500

// startSleepers starts n idle processes (each holding stdin, stdout and
// stderr) so the /proc scan has a realistic population to walk.
func startSleepers(b *testing.B, n int) {
	b.Helper()
	cmds := make([]*exec.Cmd, 0, n)
	b.Cleanup(func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	})
	for range n {
		c := exec.Command("sleep", "600")
		if err := c.Start(); err != nil {
			b.Fatalf("start sleeper: %v", err)
		}
		cmds = append(cmds, c)
	}
}

// reportPercentiles reports the median and 99th percentile of ds.
func reportPercentiles(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		return float64(ds[min(len(ds)-1, int(q*float64(len(ds))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
	b.ReportMetric(0, "ns/op") // the loop also makes the connections; ns/op is not the lookup's
}

// BenchmarkLookup: one lookup per new connection with benchProcesses idle
// processes alive. Each iteration makes a fresh socket (a new inode, so no
// inode hint helps) and times only Lookup.
//
//   - LongLivedClient: the connection comes from a client that connected
//     before (found among the recent owners).
//   - NewProcess: each connection comes from a process started for it,
//     like a curl per request (found first in the newest-first scan).
//   - OldestProcess: the owner is older than every other process and
//     never recent: the whole population is scanned (the worst case).
func BenchmarkLookup(b *testing.B) {
	b.Run("LongLivedClient", func(b *testing.B) {
		r := newResolver(b)
		// Under a shell, as an agent's tools are: the parent chain has a
		// step to walk (and cache).
		self, _ := os.Executable()
		h := startHelper(b, "ondemand", "sh", "-c", `"$0" -helper-ondemand; true`, self)
		r.SetRoot(h.cmd.Process.Pid)
		startSleepers(b, benchProcesses)
		ds := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			fmt.Fprintln(h.stdin)
			src, dst, c := h.accept(b)
			t := time.Now()
			info, err := r.Lookup(context.Background(), tcp, src, dst)
			ds = append(ds, time.Since(t))
			c.Close()
			if err != nil || len(info.Ancestors) != 1 {
				b.Fatalf("lookup: %+v %v", info, err)
			}
		}
		reportPercentiles(b, ds)
	})
	b.Run("NewProcess", func(b *testing.B) {
		r := newResolver(b)
		startSleepers(b, benchProcesses)
		ds := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			h := startHelper(b, "hold")
			src, dst, c := h.accept(b)
			t := time.Now()
			info, err := r.Lookup(context.Background(), tcp, src, dst)
			ds = append(ds, time.Since(t))
			c.Close()
			h.stdin.Close()
			h.cmd.Wait()
			if err != nil || info.PID != h.cmd.Process.Pid {
				b.Fatalf("lookup: %+v %v", info, err)
			}
		}
		reportPercentiles(b, ds)
	})
	b.Run("OldestProcess", func(b *testing.B) {
		r := newResolver(b)
		h := startHelper(b, "ondemand")
		startSleepers(b, benchProcesses)
		ds := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			fmt.Fprintln(h.stdin)
			src, dst, c := h.accept(b)
			r.mu.Lock()
			r.recent = r.recent[:0]
			r.mu.Unlock()
			t := time.Now()
			info, err := r.Lookup(context.Background(), tcp, src, dst)
			ds = append(ds, time.Since(t))
			c.Close()
			if err != nil || info.PID != h.cmd.Process.Pid {
				b.Fatalf("lookup: %+v %v", info, err)
			}
		}
		reportPercentiles(b, ds)
	})
}
