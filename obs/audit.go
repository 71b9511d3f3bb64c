package obs

import (
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Decision event names: the msg field of audit lines (interface contract).
const (
	MsgEgressAllowed  = "egress_allowed"
	MsgEgressDenied   = "egress_denied"
	MsgDNSAllowed     = "dns_allowed"
	MsgDNSDenied      = "dns_denied"
	MsgDNSRateLimited = "dns_rate_limited"
)

// ReasonRateLimited is the reason of dns_rate_limited events.
const ReasonRateLimited = "rate_limited"

// maxAuditNameLen caps every agent-controlled string (SNI, Host, ALPN,
// qname) in audit events and the denial ring. A DNS name in presentation
// form with every octet escaped (\DDD) is at most 4×253 bytes; anything
// longer is an attack on the log pipeline, not a name.
const maxAuditNameLen = 1024

// truncatedMark ends a string cut to maxAuditNameLen, so a truncated value
// is never mistaken for the real one.
const truncatedMark = "...(truncated)"

// Flow is the audit record of one TCP connection: exactly one per
// connection, written when it ends.
type Flow struct {
	Allowed   bool
	WouldDeny bool // dry run: policy denied, traffic passed
	Proto     string
	SNI       string
	Host      string
	ALPN      []string // protocols the client offered, in its order
	SrcPort   uint16
	DstIP     string
	DstPort   uint16
	Reason    string
	Rule      string
	BytesUp   int64
	BytesDown int64
	Duration  time.Duration
	Source    string   // "transparent" or "explicit" (fallback proxy)
	Process   *Process // the connecting process; nil when identity is off
}

// DNSQuery is the audit record of one DNS question the agent asked.
type DNSQuery struct {
	Allowed   bool
	WouldDeny bool
	QName     string
	QType     string
	Rcode     string // the rcode returned to the agent
	Reason    string
	Rule      string
	Answers   int // A/AAAA records learned from the answer
	Duration  time.Duration
	Cached    bool   // answered from the proxy's answer cache
	SrcIP     string // the querying client's address ("" for the supervisor's own lookups)
	SrcPort   uint16
	Process   *Process // the asking process; nil when identity is off
}

// Auditor writes decision events to the log, counts them in Metrics and
// keeps denials in the Denials ring. It is safe for concurrent use.
//
// Allowed events may be sampled (WithSampling, WithSamplingPolicy); denials, dry-run would-deny
// events and every lifecycle event are never sampled: they go to a logger
// without a sampler.
type Auditor struct {
	log     *zap.Logger // never sampled: denials, would-deny, lifecycle
	allowed *zap.Logger // allowed decisions; sampled when configured
	m       *Metrics    // nil: no metrics
	d       *Denials    // nil: no ring
	labels  *labelGuards
	fields  *sync.Pool // field slices for writeEntry
	observe func(Flow) // WithEgressObserver; nil for none
}

// Sampling says how allowed events are thinned under load: in each Tick,
// the first First events with the same msg are logged, then every
// Thereafter-th. Thereafter 0 drops all after the first First.
type Sampling struct {
	Tick       time.Duration
	First      int
	Thereafter int
}

// Default sampling of allowed events: 100 per second per msg, then one in
// 100. A chatty agent at 10k connections/s then costs ~200 lines/s instead
// of 10k, while the metrics still count every flow exactly.
const (
	DefaultSampleTick       = time.Second
	DefaultSampleFirst      = 100
	DefaultSampleThereafter = 100
)

// DefaultSampling returns the default sampling of allowed events.
func DefaultSampling() Sampling {
	return Sampling{Tick: DefaultSampleTick, First: DefaultSampleFirst, Thereafter: DefaultSampleThereafter}
}

// AuditorOption configures NewAuditor.
type AuditorOption func(*auditorOptions)

type auditorOptions struct {
	sampling *Sampling
	observe  func(Flow)
}

// WithSampling turns DefaultSampling of allowed events on or off (the
// FORGE_SUPERVISOR_LOG_SAMPLE setting). Denials are never sampled.
func WithSampling(on bool) AuditorOption {
	if !on {
		return func(o *auditorOptions) { o.sampling = nil }
	}
	return WithSamplingPolicy(DefaultSampling())
}

// WithSamplingPolicy samples allowed events as s says. Denials are never
// sampled. A Tick ≤ 0, First ≤ 0 or Thereafter < 0 turns sampling off.
func WithSamplingPolicy(s Sampling) AuditorOption {
	return func(o *auditorOptions) {
		if s.Tick <= 0 || s.First <= 0 || s.Thereafter < 0 {
			o.sampling = nil
			return
		}
		o.sampling = &s
	}
}

// NewAuditor returns an Auditor that writes to log. m and d may be nil.
func NewAuditor(log *zap.Logger, m *Metrics, d *Denials, opts ...AuditorOption) *Auditor {
	var o auditorOptions
	for _, opt := range opts {
		opt(&o)
	}
	if log == nil {
		log = zap.NewNop()
	}
	a := &Auditor{log: log, allowed: log, m: m, d: d, labels: newLabelGuards(), fields: newFieldPool(), observe: o.observe}
	if s := o.sampling; s != nil {
		hook := func(zapcore.Entry, zapcore.SamplingDecision) {}
		if m != nil {
			hook = func(_ zapcore.Entry, dec zapcore.SamplingDecision) {
				if dec&zapcore.LogDropped != 0 {
					m.AuditSampledOut.Inc()
				}
			}
		}
		a.allowed = log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
			return zapcore.NewSamplerWithOptions(c, s.Tick, s.First, s.Thereafter, zapcore.SamplerHook(hook))
		}))
	}
	return a
}

// Egress writes the one audit line of a finished TCP flow, counts it and,
// when it was denied (or would have been), keeps it in the denial ring.
// zap's JSON encoder escapes control bytes, so hostile SNI/Host strings
// cannot break the line.
func (a *Auditor) Egress(f Flow) {
	if a.observe != nil {
		a.observe(f)
	}
	f.SNI, f.Host, f.ALPN = truncateName(f.SNI), truncateName(f.Host), truncateALPN(f.ALPN)
	msg, decision := MsgEgressDenied, DecisionDenied
	if f.Allowed {
		msg, decision = MsgEgressAllowed, DecisionAllowed
		if f.WouldDeny {
			decision = DecisionWouldDeny
		}
	}
	if m := a.m; m != nil {
		m.Connections.WithLabelValues(decision, a.labels.proto.value(f.Proto), a.labels.reason.value(f.Reason)).Inc()
		if f.BytesUp > 0 {
			m.Bytes.WithLabelValues(DirectionUp).Add(float64(f.BytesUp))
		}
		if f.BytesDown > 0 {
			m.Bytes.WithLabelValues(DirectionDown).Add(float64(f.BytesDown))
		}
		m.ops.flow(f)
	}
	keep := !f.Allowed || f.WouldDeny
	lg := a.allowed
	if keep {
		lg = a.log
	}
	ts := writeEntry(a.fields, lg, zapcore.InfoLevel, msg, func(buf []zap.Field) []zap.Field { return appendEgressFields(buf, f) })
	if keep && a.d != nil {
		a.d.Add(DenialEvent{
			TS: ts, Msg: msg, Proto: f.Proto,
			SNI: f.SNI, Host: f.Host, ALPN: f.ALPN,
			DstIP: f.DstIP, DstPort: f.DstPort, SrcPort: f.SrcPort,
			Reason: f.Reason, Rule: f.Rule,
			BytesUp: f.BytesUp, BytesDown: f.BytesDown,
			Duration: f.Duration, WouldDeny: f.WouldDeny, Source: f.Source,
			Process: f.Process,
		})
	}
}

// appendEgressFields appends the fields of egress_allowed / egress_denied lines, in
// the order of egressEventJSON.
func appendEgressFields(buf []zap.Field, f Flow) []zap.Field {
	buf = append(buf,
		zap.String("proto", f.Proto),
		zap.String("sni", f.SNI),
		zap.String("host", f.Host),
		zap.Strings("alpn", f.ALPN),
		zap.String("dst_ip", f.DstIP),
		zap.Uint16("dst_port", f.DstPort),
		zap.Uint16("src_port", f.SrcPort),
		zap.String("reason", f.Reason),
		zap.String("rule", f.Rule),
		zap.Int64("bytes_up", f.BytesUp),
		zap.Int64("bytes_down", f.BytesDown),
		zap.Float64("duration_ms", durationMS(f.Duration)),
		zap.Bool("would_deny", f.WouldDeny),
		zap.String("source", f.Source),
	)
	return appendProcessFields(buf, f.Process)
}

// DNS writes the audit line of one DNS query, counts it and keeps denials
// (and would-deny queries) in the ring.
func (a *Auditor) DNS(q DNSQuery) {
	msg, decision := MsgDNSDenied, DecisionDenied
	if q.Allowed {
		msg, decision = MsgDNSAllowed, DecisionAllowed
		if q.WouldDeny {
			decision = DecisionWouldDeny
		}
	}
	a.dnsEvent(msg, decision, q, !q.Allowed || q.WouldDeny)
}

// DNSRateLimited writes the audit line of a query refused because the agent
// exceeded the DNS query rate. It counts in DNSRateLimited and in
// DNSQueries{decision="rate_limited"}; callers must not count it again.
// Like every denial it is never sampled.
func (a *Auditor) DNSRateLimited(q DNSQuery) {
	q.Allowed, q.WouldDeny = false, false
	if q.Reason == "" {
		q.Reason = ReasonRateLimited
	}
	if a.m != nil {
		a.m.DNSRateLimited.Inc()
	}
	a.dnsEvent(MsgDNSRateLimited, DecisionRateLimit, q, true)
}

func (a *Auditor) dnsEvent(msg, decision string, q DNSQuery, keep bool) {
	q.QName = truncateName(q.QName)
	if a.m != nil {
		a.m.DNSQueries.WithLabelValues(decision, qtypeLabel(q.QType)).Inc()
		if keep {
			a.m.ops.dnsDenied(q)
		}
	}
	lg := a.allowed
	if keep {
		lg = a.log
	}
	ts := writeEntry(a.fields, lg, zapcore.InfoLevel, msg, func(buf []zap.Field) []zap.Field { return appendDNSFields(buf, q) })
	if keep && a.d != nil {
		a.d.Add(DenialEvent{
			TS: ts, Msg: msg, Proto: "dns",
			QName: q.QName, QType: q.QType, Rcode: q.Rcode,
			Reason: q.Reason, Rule: q.Rule, Answers: q.Answers,
			Duration: q.Duration, WouldDeny: q.WouldDeny,
			Cached: q.Cached, SrcIP: q.SrcIP, SrcPort: q.SrcPort,
			Process: q.Process,
		})
	}
}

// appendDNSFields appends the fields of dns_* lines, in the order of dnsEventJSON.
func appendDNSFields(buf []zap.Field, q DNSQuery) []zap.Field {
	buf = append(buf,
		zap.String("proto", "dns"),
		zap.String("qname", q.QName),
		zap.String("qtype", q.QType),
		zap.String("rcode", q.Rcode),
		zap.String("reason", q.Reason),
		zap.String("rule", q.Rule),
		zap.Int("answers", q.Answers),
		zap.Float64("duration_ms", durationMS(q.Duration)),
		zap.Bool("would_deny", q.WouldDeny),
		zap.Bool("cached", q.Cached),
		zap.String("src_ip", q.SrcIP),
		zap.Uint16("src_port", q.SrcPort),
	)
	return appendProcessFields(buf, q.Process)
}

// writeEntry logs msg with fields and returns the entry's timestamp, so the
// denial ring carries the very ts of the log line. When the level is off or
// the sampler drops the entry, it returns the current time.
// writeEntry writes one line. Its fields are built only when the line is
// written (a sampled-out line costs no field building), into a pooled
// slice: the fields escape through zap's core interface, and one audit
// line per connection and per DNS query should not cost an allocation.
func writeEntry(pool *sync.Pool, lg *zap.Logger, lvl zapcore.Level, msg string, build func([]zap.Field) []zap.Field) time.Time {
	ce := lg.Check(lvl, msg)
	if ce == nil {
		return time.Now()
	}
	ts := ce.Time
	bp := pool.Get().(*[]zap.Field)
	fields := build((*bp)[:0])
	ce.Write(fields...)
	clear(fields) // drop references to the event's strings
	*bp = fields[:0]
	pool.Put(bp)
	return ts
}

// newFieldPool holds field slices for writeEntry; the widest event has 17
// fields (an egress event with the process fields).
func newFieldPool() *sync.Pool {
	return &sync.Pool{New: func() any {
		s := make([]zap.Field, 0, 18)
		return &s
	}}
}

// maxAuditALPN caps the protocols an audit line lists: a ClientHello may
// offer hundreds (a 16 KiB hello of junk names), real clients two or
// three.
const maxAuditALPN = 16

// truncateALPN cuts the list to maxAuditALPN entries (the last then says
// it was cut) and each entry to maxAuditNameLen bytes. It never returns
// nil, so the field is always a JSON array.
func truncateALPN(list []string) []string {
	n := min(len(list), maxAuditALPN)
	out := make([]string, n, n+1)
	for i := range n {
		out[i] = truncateName(list[i])
	}
	if len(list) > maxAuditALPN {
		out = append(out, truncatedMark)
	}
	return out
}

// truncateName cuts an agent-controlled string to maxAuditNameLen bytes.
func truncateName(s string) string {
	if len(s) <= maxAuditNameLen {
		return s
	}
	return s[:maxAuditNameLen-len(truncatedMark)] + truncatedMark
}
