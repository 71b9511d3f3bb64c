package obs

import "github.com/prometheus/client_golang/prometheus"

// WatchSink exports the sink's counters: lines dropped (an output error or
// an output still stalled at exit: the only ways a line is lost), writes
// that waited for room, and the bytes waiting. Call it once per Metrics.
func (m *Metrics) WatchSink(s *Sink) {
	name := func(n string) string { return metricsNamespace + "_" + n }
	m.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: name("audit_lines_dropped_total"),
			Help: "Log lines (audit events or relayed agent output) lost because the log output failed or was still stalled at exit.",
		}, func() float64 { return float64(s.Stats().Dropped) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: name("audit_write_waits_total"),
			Help: "Log writes that waited for room because the log output was slower than the supervisor (back-pressure, nothing lost).",
		}, func() float64 { return float64(s.Stats().Waits) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: name("audit_queue_bytes"),
			Help: "Bytes of log lines waiting to be written to the log output.",
		}, func() float64 { return float64(s.Stats().Queued) }),
	)
}
