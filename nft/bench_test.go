package nft

import (
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/netenv"
)

// installBudget is the target for one Install: the supervisor installs
// the table on the container's start path, before the agent runs.
const installBudget = 5 * time.Millisecond

// BenchmarkInstall measures Install into a namespace without the table,
// the container-start case, and reports ms/install. Each iteration's
// Remove runs outside the timer.
func BenchmarkInstall(b *testing.B) {
	pair := netenv.NewPair(b)
	cfg := testConfig(b, pair.Agent)
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		if err := Install(cfg); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		if err := Remove(cfg); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	perOp := total / time.Duration(b.N)
	b.ReportMetric(float64(perOp.Microseconds())/1000, "ms/install")
	if perOp > installBudget {
		b.Logf("install took %s, over the %s budget", perOp, installBudget)
	}
}

// BenchmarkInstallReplace measures Install over a stale table (restart
// after a crash), which also pays for the kernel deleting the old one.
func BenchmarkInstallReplace(b *testing.B) {
	pair := netenv.NewPair(b)
	cfg := testConfig(b, pair.Agent)
	if err := Install(cfg); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for b.Loop() {
		if err := Install(cfg); err != nil {
			b.Fatal(err)
		}
	}
	perOp := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(perOp.Microseconds())/1000, "ms/install")
}
