package obs

import (
	"net"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Series for the operator's dashboard (deploy.Dashboard) that the decision
// counters do not carry: which names are denied most, DNS denials by
// reason, and which path (transparent proxy, explicit fallback, the
// kernel verdict path) flows took.
type opsMetrics struct {
	// deniedNames counts denied connections and DNS queries by the
	// domain they named, cut to its last two labels (api.evil.test →
	// evil.test) so one site is one series.
	deniedNames *prometheus.CounterVec
	// dnsDenials counts denied DNS queries by reason.
	dnsDenials *prometheus.CounterVec
	// flowsBySource counts finished flows by the path that decided them.
	flowsBySource *prometheus.CounterVec

	names, reasons, sources *labelGuard
}

// Bounds of the ops series' label values. The names are the agent's
// choice: past maxDeniedNameLabels distinct sites every new one counts as
// "other" (a large "other" is itself a sign of an agent spraying names).
const (
	maxDeniedNameLabels = 256
	maxSourceLabels     = 8
)

func newOpsMetrics(name func(string) string) *opsMetrics {
	return &opsMetrics{
		deniedNames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("denied_names_total"),
			Help: "Denied connections and DNS queries by the site they named (last two labels of the name; \"other\" past 256 sites).",
		}, []string{"name"}),
		dnsDenials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("dns_denials_total"),
			Help: "Denied DNS queries of the agent by reason.",
		}, []string{"reason"}),
		flowsBySource: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("connections_by_source_total"),
			Help: "Finished TCP connections by the path that decided them (transparent proxy, explicit fallback, kernel verdict path).",
		}, []string{"source"}),
		names:   newLabelGuard(maxDeniedNameLabels),
		reasons: newLabelGuard(maxReasonLabels),
		sources: newLabelGuard(maxSourceLabels),
	}
}

func (o *opsMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{o.deniedNames, o.dnsDenials, o.flowsBySource}
}

// flow counts one finished flow.
func (o *opsMetrics) flow(f Flow) {
	src := f.Source
	if src == "" {
		src = "transparent"
	}
	o.flowsBySource.WithLabelValues(o.sources.value(src)).Inc()
	if !f.Allowed || f.WouldDeny {
		name := f.SNI
		if name == "" {
			name = f.Host
		}
		o.deniedName(name)
	}
}

// dnsDenied counts one denied (or would-be denied) query.
func (o *opsMetrics) dnsDenied(q DNSQuery) {
	o.dnsDenials.WithLabelValues(o.reasons.value(q.Reason)).Inc()
	o.deniedName(q.QName)
}

func (o *opsMetrics) deniedName(name string) {
	if site := siteOf(name); site != "" {
		o.deniedNames.WithLabelValues(o.names.value(site)).Inc()
	}
}

// siteOf returns the last two labels of a DNS name, lower-cased ("" for
// no name or an address literal, which the dst_ip of the audit line
// already tells).
func siteOf(name string) string {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" {
		return ""
	}
	if h, _, err := net.SplitHostPort(name); err == nil {
		name = h // a Host header's host:port
	}
	if _, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		return ""
	}
	labels := strings.Split(name, ".")
	if len(labels) > 2 {
		labels = labels[len(labels)-2:]
	}
	return strings.Join(labels, ".")
}
