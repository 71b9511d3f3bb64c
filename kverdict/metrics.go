package kverdict

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the kernel path's own series, registered next to obs's.
// Finished connections of both paths are in
// forge_supervisor_connections_total; these tell the paths apart.
type Metrics struct {
	// available is 1 while the fast path runs, 0 when the kernel refused
	// it (or it is turned off).
	available prometheus.Gauge
	// connections counts finished flows by path ("kernel", "proxy") and decision.
	connections *prometheus.CounterVec
	// decisions counts the worker's verdicts on first payloads.
	decisions *prometheus.CounterVec
	// packets counts queued packets by what the worker did with them;
	// the per-packet series are looked up once, not per packet.
	packets                                   *prometheus.CounterVec
	held, stragglers, overloaded, unparseable prometheus.Counter
	// bare counts payload-less segments the worker passed: the rules
	// accept the provably bare ones before the queue, so only those they
	// cannot prove bare (IP options, extension headers) arrive.
	bare prometheus.Counter
	// ctEvents counts conntrack messages the auditor read: with the
	// kernel's event mask and socket filter, one per fast-path flow.
	ctEvents prometheus.Counter
	// decideLatency is the time from a flow's first payload to its verdict.
	decideLatency prometheus.Histogram
	// learned counts fast-set elements written, by set kind.
	learned *prometheus.CounterVec
	// eventsLost counts conntrack event overruns (audit lines may be missing).
	eventsLost prometheus.Counter
}

// NewMetrics registers the series in reg (nil: unregistered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	name := func(n string) string { return "forge_supervisor_" + n }
	m := &Metrics{
		available: prometheus.NewGauge(prometheus.GaugeOpts{Name: name("fast_path_available"),
			Help: "1 while the kernel verdict path runs; 0 when the kernel refused it or it is off."}),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("path_connections_total"),
			Help: "Finished agent TCP connections by data path (kernel, proxy) and decision."}, []string{"path", "decision"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("fast_path_verdicts_total"),
			Help: "Verdicts of the kernel path on a flow's first payload, by decision."}, []string{"decision"}),
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("fast_path_packets_total"),
			Help: "Packets queued to the verdict worker, by what it did with them."}, []string{"action"}),
		decideLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: name("fast_path_verdict_seconds"),
			Help:    "Time from a flow's first queued payload to its verdict.",
			Buckets: prometheus.ExponentialBuckets(5e-6, 2.5, 12)}),
		learned: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("fast_path_set_elements_total"),
			Help: "Fast-set elements written, by set (tls: first payload checked; open: allowed at the SYN)."}, []string{"set"}),
		eventsLost: prometheus.NewCounter(prometheus.CounterOpts{Name: name("fast_path_conntrack_overruns_total"),
			Help: "Conntrack event socket overruns: kernel-path audit lines may be missing."}),
	}
	m.held, m.stragglers = m.packets.WithLabelValues("held"), m.packets.WithLabelValues("straggler")
	m.overloaded, m.unparseable = m.packets.WithLabelValues("overloaded"), m.packets.WithLabelValues("unparseable")
	m.bare = m.packets.WithLabelValues("bare")
	m.ctEvents = prometheus.NewCounter(prometheus.CounterOpts{Name: name("fast_path_conntrack_events_total"),
		Help: "Conntrack events the kernel path's auditor read (one per fast-path flow where the kernel filters them)."})
	if reg != nil {
		reg.MustRegister(m.available, m.connections, m.decisions, m.packets, m.decideLatency, m.learned, m.eventsLost, m.ctEvents)
	}
	return m
}

// Unavailable records that the fast path is not running.
func (m *Metrics) Unavailable() { m.available.Set(0) }

// ProxyConnection counts one finished connection of the proxy path.
func (m *Metrics) ProxyConnection(decision string) {
	m.connections.WithLabelValues("proxy", decision).Inc()
}
