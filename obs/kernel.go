package obs

import (
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// MsgKernelLogUnavailable is the warning that the kernel's denials (NFLOG)
// cannot be read: rejected UDP/ICMP/other flows are still rejected, but
// leave no audit line.
const MsgKernelLogUnavailable = "kernel_log_unavailable"

// Causes of a kernel denial without an audit line (KernelLogDropped).
const (
	KernelLogRateLimited = "rate_limited" // over the line rate of the flow gate
	KernelLogLost        = "lost"         // the kernel dropped messages before the supervisor read them
)

// KernelMetrics are the series of the kernel's own verdicts: denials the
// nft rules logged (NFLOG) that got no audit line, and inbound connections
// to undeclared ports.
type KernelMetrics struct {
	// LogDropped counts logged packets of new flows without an audit line,
	// by cause (KernelLogRateLimited, KernelLogLost: one per overrun, at
	// least one message each).
	LogDropped *prometheus.CounterVec
}

// RegisterKernel registers the kernel series in m's registry. inbound
// reads the inbound_dropped nft counter at scrape time (nil: not exported).
func (m *Metrics) RegisterKernel(inbound func() float64) *KernelMetrics {
	name := func(n string) string { return metricsNamespace + "_" + n }
	k := &KernelMetrics{
		LogDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("kernel_denials_unlogged_total"),
			Help: "Packets the nft rules dropped or rejected and logged, of flows that got no audit line, by cause.",
		}, []string{"cause"}),
	}
	m.Registry.MustRegister(k.LogDropped)
	for _, c := range []string{KernelLogRateLimited, KernelLogLost} {
		k.LogDropped.WithLabelValues(c)
	}
	if inbound != nil {
		m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: name("inbound_dropped_packets_total"),
			Help: "Packets of the agent answering connections to inbound ports not declared (the connection never completes).",
		}, inbound))
	}
	return k
}

// KernelLogUnavailable writes kernel_log_unavailable (level warn).
func (a *Auditor) KernelLogUnavailable(err error) {
	a.log.Warn(MsgKernelLogUnavailable, zap.String("reason", errString(err)),
		zap.String("effect", "rejected UDP/ICMP/other flows are still rejected but leave no audit line"))
}
