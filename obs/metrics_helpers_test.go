package obs

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value returns the value of a collector holding exactly one counter or
// gauge series (testutil.ToFloat64 without its extra dependencies).
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ms := collect(c)
	if len(ms) != 1 {
		t.Fatalf("collector has %d series, want 1", len(ms))
	}
	var pb dto.Metric
	if err := ms[0].Write(&pb); err != nil {
		t.Fatal(err)
	}
	switch {
	case pb.Counter != nil:
		return pb.Counter.GetValue()
	case pb.Gauge != nil:
		return pb.Gauge.GetValue()
	}
	t.Fatalf("series is neither counter nor gauge: %v", &pb)
	return 0
}

// seriesCount returns how many series c exports.
func seriesCount(c prometheus.Collector) int { return len(collect(c)) }

func collect(c prometheus.Collector) []prometheus.Metric {
	ch := make(chan prometheus.Metric, 1024)
	go func() { c.Collect(ch); close(ch) }()
	var out []prometheus.Metric
	for m := range ch {
		out = append(out, m)
	}
	return out
}
