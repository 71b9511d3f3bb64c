package bench

import (
	"encoding/json"
	"os"
	"sync"
	"testing"
)

// resultsEnv names the file (JSON lines) the benchmarks append their
// figures to, for bench/plot to draw docs/bench.png; `make bench` sets
// it. Unset, nothing is written.
const resultsEnv = "FORGE_BENCH_RESULTS"

// Kinds of points.
const (
	pointAddedP50   = "added_p50_us" // latency a path adds over direct, µs
	pointAddedP99   = "added_p99_us"
	pointThroughput = "throughput_ratio" // path / direct, same run
)

// point is one figure of one path.
type point struct {
	Bench       string  `json:"bench"`
	Kind        string  `json:"kind"`
	Path        string  `json:"path"`
	Concurrency int     `json:"concurrency"`
	Value       float64 `json:"value"`
}

var resultsMu sync.Mutex

// recordPoint appends p (with b's name) to the results file, if any.
func recordPoint(b *testing.B, p point) {
	path := os.Getenv(resultsEnv)
	if path == "" {
		return
	}
	p.Bench = b.Name()
	line, err := json.Marshal(p)
	if err != nil {
		b.Fatal(err)
	}
	resultsMu.Lock()
	defer resultsMu.Unlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		b.Fatalf("%s: %v", resultsEnv, err)
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		b.Fatalf("%s: %v", resultsEnv, err)
	}
}
