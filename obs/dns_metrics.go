package obs

import "github.com/prometheus/client_golang/prometheus"

// DNSMetrics are the DNS proxy's counters beyond the per-query ones of
// Metrics: its answer cache and the queries it drops unanswered.
type DNSMetrics struct {
	// NonLocal counts queries (and TCP connections) dropped because their
	// source is not an address of the pod: spoofed or from outside.
	NonLocal prometheus.Counter
	// CacheLookups counts answer-cache lookups by result (hit, miss).
	CacheLookups *prometheus.CounterVec
	// CacheBytes is the memory the answer cache holds, in bytes.
	CacheBytes prometheus.Gauge
}

// Answer-cache lookup results (the result label of CacheLookups).
const (
	CacheHit  = "hit"
	CacheMiss = "miss"
)

// NewDNSMetrics creates the DNS proxy's metrics and registers them in m's
// registry.
func NewDNSMetrics(m *Metrics) *DNSMetrics {
	name := func(n string) string { return metricsNamespace + "_" + n }
	d := &DNSMetrics{
		NonLocal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: name("dns_nonlocal_dropped_total"),
			Help: "DNS queries dropped unanswered because their source is not an address of the pod.",
		}),
		CacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("dns_cache_lookups_total"),
			Help: "Answer-cache lookups of allowed DNS questions by result (hit, miss).",
		}, []string{"result"}),
		CacheBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: name("dns_cache_bytes"),
			Help: "Memory held by the DNS answer cache, in bytes.",
		}),
	}
	d.CacheLookups.WithLabelValues(CacheHit)
	d.CacheLookups.WithLabelValues(CacheMiss)
	m.Registry.MustRegister(d.NonLocal, d.CacheLookups, d.CacheBytes)
	return d
}
