package obs

import (
	"time"

	"go.uber.org/zap"
)

// Decision event names: the msg field of audit lines (interface contract).
const (
	MsgEgressAllowed = "egress_allowed"
	MsgEgressDenied  = "egress_denied"
	MsgDNSAllowed    = "dns_allowed"
	MsgDNSDenied     = "dns_denied"
)

// Flow is the audit record of one TCP connection: exactly one per
// connection, written when it ends.
type Flow struct {
	Allowed   bool
	WouldDeny bool // dry run: policy denied, traffic passed
	Proto     string
	SNI       string
	Host      string
	ALPN      string
	SrcPort   uint16
	DstIP     string
	DstPort   uint16
	Reason    string
	Rule      string
	BytesUp   int64
	BytesDown int64
	Duration  time.Duration
	Source    string // "transparent" or "explicit" (fallback proxy)
}

// Auditor writes decision events. It is safe for concurrent use.
type Auditor struct {
	log *zap.Logger
}

// NewAuditor returns an Auditor that writes to log.
func NewAuditor(log *zap.Logger) *Auditor {
	return &Auditor{log: log}
}

// Egress writes the one audit line of a finished TCP flow. zap's JSON encoder
// escapes control bytes, so hostile SNI/Host strings cannot break the line.
func (a *Auditor) Egress(f Flow) {
	msg := MsgEgressDenied
	if f.Allowed {
		msg = MsgEgressAllowed
	}
	a.log.Info(msg,
		zap.String("proto", f.Proto),
		zap.String("sni", f.SNI),
		zap.String("host", f.Host),
		zap.String("alpn", f.ALPN),
		zap.String("dst_ip", f.DstIP),
		zap.Uint16("dst_port", f.DstPort),
		zap.Uint16("src_port", f.SrcPort),
		zap.String("reason", f.Reason),
		zap.String("rule", f.Rule),
		zap.Int64("bytes_up", f.BytesUp),
		zap.Int64("bytes_down", f.BytesDown),
		zap.Float64("duration_ms", float64(f.Duration.Microseconds())/1000),
		zap.Bool("would_deny", f.WouldDeny),
		zap.String("source", f.Source),
	)
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
}

// DNS writes the audit line of one DNS query.
func (a *Auditor) DNS(q DNSQuery) {
	msg := MsgDNSDenied
	if q.Allowed {
		msg = MsgDNSAllowed
	}
	a.log.Info(msg,
		zap.String("proto", "dns"),
		zap.String("qname", q.QName),
		zap.String("qtype", q.QType),
		zap.String("rcode", q.Rcode),
		zap.String("reason", q.Reason),
		zap.String("rule", q.Rule),
		zap.Int("answers", q.Answers),
		zap.Float64("duration_ms", float64(q.Duration.Microseconds())/1000),
		zap.Bool("would_deny", q.WouldDeny),
	)
}
