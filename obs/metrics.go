package obs

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metricsNamespace prefixes every metric name so the supervisor's series are
// easy to find next to the agent's own.
const metricsNamespace = "forge_supervisor"

// stageLatencyBuckets spans 1µs (a channel hop) to 10s (a slow dial or a
// classification timeout), roughly three buckets per decade so p50/p99 of
// the sub-millisecond stages stay readable.
var stageLatencyBuckets = []float64{
	1e-6, 2.5e-6, 5e-6,
	1e-5, 2.5e-5, 5e-5,
	1e-4, 2.5e-4, 5e-4,
	1e-3, 2.5e-3, 5e-3,
	1e-2, 2.5e-2, 5e-2,
	0.1, 0.25, 0.5,
	1, 2.5, 5, 10,
}

// Metrics holds every Prometheus series the supervisor exports. All fields
// are registered in Registry, a registry of its own (not the global one), so
// tests can build as many as they like and nothing else leaks into a scrape.
type Metrics struct {
	Registry *prometheus.Registry

	// Connections counts finished TCP flows by decision ("allowed",
	// "denied", "would_deny"), proto and reason.
	Connections *prometheus.CounterVec
	// Active is the number of connections currently inside the engine.
	Active prometheus.Gauge
	// Bytes counts relayed payload bytes, direction "up" (agent → world)
	// or "down".
	Bytes *prometheus.CounterVec
	// StageLatency is the time a connection spends in each stage.
	StageLatency *prometheus.HistogramVec
	// QueueDepth is the length of each stage's inbound channel.
	QueueDepth *prometheus.GaugeVec

	// DNSQueries counts DNS questions by decision and qtype.
	DNSQueries *prometheus.CounterVec
	// DNSMalformed counts packets that did not parse as a DNS query.
	DNSMalformed prometheus.Counter
	// DNSRateLimited counts queries refused by the rate limiter.
	DNSRateLimited prometheus.Counter
	// LearnedNames is the size of the learned name→IP cache.
	LearnedNames prometheus.Gauge

	// PolicyReloads counts reload attempts by result ("ok", "error").
	PolicyReloads *prometheus.CounterVec
	// PolicyReloadOK is 1 when the last reload succeeded (or none was
	// tried), 0 while the file on disk is broken and the old policy serves.
	PolicyReloadOK prometheus.Gauge
	// AgentRestarts counts agent starts after the first.
	AgentRestarts prometheus.Counter
	// AgentExitCode is the agent's last exit status (128+N for signal N).
	AgentExitCode prometheus.Gauge
	// Interception is 1 for the active mode ("kernel" or "fallback") and 0
	// for the other; see SetInterception.
	Interception *prometheus.GaugeVec

	// AuditSampledOut counts allowed-decision log lines dropped by sampling
	// (the flows are still counted in Connections / DNSQueries).
	AuditSampledOut prometheus.Counter

	ops *opsMetrics // the dashboard's extra series (ops_metrics.go)
}

// Label values of the metrics above, shared with the auditor.
const (
	DecisionAllowed   = "allowed"
	DecisionDenied    = "denied"
	DecisionWouldDeny = "would_deny"
	DecisionRateLimit = "rate_limited"

	DirectionUp   = "up"
	DirectionDown = "down"

	ReloadOK    = "ok"
	ReloadError = "error"

	InterceptionKernel   = "kernel"
	InterceptionFallback = "fallback"
)

// NewMetrics builds and registers every metric, plus the Go runtime and
// process collectors, in a fresh registry.
func NewMetrics() *Metrics {
	name := func(n string) string { return metricsNamespace + "_" + n }
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("connections_total"),
			Help: "Finished TCP connections of the agent by decision, protocol and reason.",
		}, []string{"decision", "proto", "reason"}),
		Active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: name("active_connections"),
			Help: "Connections currently held by the connection engine.",
		}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("bytes_total"),
			Help: "Payload bytes relayed, by direction (up: agent to world, down: world to agent).",
		}, []string{"direction"}),
		StageLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    name("stage_duration_seconds"),
			Help:    "Time a connection spent in each engine stage.",
			Buckets: stageLatencyBuckets,
		}, []string{"stage"}),
		QueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: name("stage_queue_depth"),
			Help: "Connections waiting in each stage's inbound queue.",
		}, []string{"stage"}),
		DNSQueries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("dns_queries_total"),
			Help: "DNS questions of the agent by decision and query type.",
		}, []string{"decision", "qtype"}),
		DNSMalformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: name("dns_malformed_total"),
			Help: "DNS packets from the agent that did not parse as a query.",
		}),
		DNSRateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: name("dns_rate_limited_total"),
			Help: "DNS queries refused because the agent exceeded the query rate.",
		}),
		LearnedNames: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: name("dns_learned_names"),
			Help: "Entries in the learned name-to-address cache.",
		}),
		PolicyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("policy_reloads_total"),
			Help: "Policy reload attempts by result.",
		}, []string{"result"}),
		PolicyReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: name("policy_last_reload_successful"),
			Help: "1 when the last policy reload succeeded or none was tried; 0 when the file on disk is broken and the previous policy stays in force.",
		}),
		AgentRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: name("agent_restarts_total"),
			Help: "Times the agent was started again after exiting.",
		}),
		AgentExitCode: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: name("agent_exit_code"),
			Help: "Exit status of the agent's last run (128+N when killed by signal N).",
		}),
		Interception: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: name("interception_mode"),
			Help: "1 for the active interception mode (kernel: nftables redirect; fallback: explicit proxy).",
		}, []string{"mode"}),
		AuditSampledOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: name("audit_events_sampled_out_total"),
			Help: "Allowed-decision audit lines not written because of log sampling.",
		}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.Connections, m.Active, m.Bytes, m.StageLatency, m.QueueDepth,
		m.DNSQueries, m.DNSMalformed, m.DNSRateLimited, m.LearnedNames,
		m.PolicyReloads, m.PolicyReloadOK, m.AgentRestarts, m.AgentExitCode, m.Interception,
		m.AuditSampledOut,
	)
	m.ops = newOpsMetrics(name)
	m.Registry.MustRegister(m.ops.collectors()...)
	// Both result series exist from the start so rate() works before the
	// first reload.
	m.PolicyReloads.WithLabelValues(ReloadOK)
	m.PolicyReloads.WithLabelValues(ReloadError)
	m.PolicyReloadOK.Set(1)
	m.Bytes.WithLabelValues(DirectionUp)
	m.Bytes.WithLabelValues(DirectionDown)
	return m
}

// SetInterception marks mode ("kernel" or "fallback") as the active one.
func (m *Metrics) SetInterception(mode string) {
	for _, other := range []string{InterceptionKernel, InterceptionFallback} {
		v := 0.0
		if other == mode {
			v = 1
		}
		m.Interception.WithLabelValues(other).Set(v)
	}
}
