package obs

import (
	"encoding/json"
	"sync"
	"time"
)

// MaxDenialsSize bounds the denial ring. Each event holds a few hundred bytes
// (names are truncated to maxAuditNameLen), so 65536 entries stay in the tens
// of megabytes even when every name is hostile and long.
const MaxDenialsSize = 65536

// DenialEvent is one denied (or, in dry run, would-be-denied) decision as
// served by /denials. Its JSON field names and values are exactly those of
// the audit log line it was written with (minus "level"), so an operator can
// grep the log for what /denials shows. Egress events carry the egress
// fields, DNS events the DNS fields; see docs/audit-events.md.
type DenialEvent struct {
	TS  time.Time
	Msg string

	Proto     string
	Reason    string
	Rule      string
	Duration  time.Duration
	WouldDeny bool

	// Egress (TCP) fields.
	SNI       string
	Host      string
	ALPN      []string
	DstIP     string
	DstPort   uint16
	SrcPort   uint16
	BytesUp   int64
	BytesDown int64
	Source    string

	// Process is the connecting process when identity is on (both kinds).
	Process *Process

	// DNS fields.
	QName   string
	QType   string
	Rcode   string
	Answers int
	Cached  bool
	SrcIP   string
}

// egressEventJSON and dnsEventJSON fix the field sets and their order; they
// mirror appendEgressFields and appendDNSFields in audit.go (a test keeps them equal).
type egressEventJSON struct {
	TS         time.Time `json:"ts"`
	Msg        string    `json:"msg"`
	Proto      string    `json:"proto"`
	SNI        string    `json:"sni"`
	Host       string    `json:"host"`
	ALPN       []string  `json:"alpn"`
	DstIP      string    `json:"dst_ip"`
	DstPort    uint16    `json:"dst_port"`
	SrcPort    uint16    `json:"src_port"`
	Reason     string    `json:"reason"`
	Rule       string    `json:"rule"`
	BytesUp    int64     `json:"bytes_up"`
	BytesDown  int64     `json:"bytes_down"`
	DurationMS float64   `json:"duration_ms"`
	WouldDeny  bool      `json:"would_deny"`
	Source     string    `json:"source"`
	processJSON
}

type dnsEventJSON struct {
	TS         time.Time `json:"ts"`
	Msg        string    `json:"msg"`
	Proto      string    `json:"proto"`
	QName      string    `json:"qname"`
	QType      string    `json:"qtype"`
	Rcode      string    `json:"rcode"`
	Reason     string    `json:"reason"`
	Rule       string    `json:"rule"`
	Answers    int       `json:"answers"`
	DurationMS float64   `json:"duration_ms"`
	WouldDeny  bool      `json:"would_deny"`
	Cached     bool      `json:"cached"`
	SrcIP      string    `json:"src_ip"`
	SrcPort    uint16    `json:"src_port"`
	processJSON
}

// IsDNS reports whether the event is a DNS decision (its msg is one of the
// dns_* events).
func (e DenialEvent) IsDNS() bool {
	switch e.Msg {
	case MsgDNSAllowed, MsgDNSDenied, MsgDNSRateLimited:
		return true
	}
	return false
}

// MarshalJSON writes the event with the field set of its log line.
func (e DenialEvent) MarshalJSON() ([]byte, error) {
	if e.IsDNS() {
		return json.Marshal(dnsEventJSON{
			TS: e.TS, Msg: e.Msg, Proto: e.Proto,
			QName: e.QName, QType: e.QType, Rcode: e.Rcode,
			Reason: e.Reason, Rule: e.Rule, Answers: e.Answers,
			DurationMS: durationMS(e.Duration), WouldDeny: e.WouldDeny,
			Cached: e.Cached, SrcIP: e.SrcIP, SrcPort: e.SrcPort,
			processJSON: e.Process.json(),
		})
	}
	return json.Marshal(egressEventJSON{
		TS: e.TS, Msg: e.Msg, Proto: e.Proto,
		SNI: e.SNI, Host: e.Host, ALPN: nonNil(e.ALPN),
		DstIP: e.DstIP, DstPort: e.DstPort, SrcPort: e.SrcPort,
		Reason: e.Reason, Rule: e.Rule,
		BytesUp: e.BytesUp, BytesDown: e.BytesDown,
		DurationMS: durationMS(e.Duration), WouldDeny: e.WouldDeny,
		Source: e.Source, processJSON: e.Process.json(),
	})
}

// durationMS is the duration_ms value of audit events: milliseconds with
// microsecond precision.
func durationMS(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// Denials is a fixed-size ring of the most recent denial events. It is safe
// for concurrent use; Add never allocates beyond the ring and never blocks
// for longer than a copy.
type Denials struct {
	mu    sync.Mutex
	ring  []DenialEvent
	next  int // index the next Add writes
	count int // events held, ≤ len(ring)
}

// NewDenials returns a ring holding the last size events. size is clamped
// to 1..MaxDenialsSize; configuration validates it before it gets here.
func NewDenials(size int) *Denials {
	size = min(max(size, 1), MaxDenialsSize)
	return &Denials{ring: make([]DenialEvent, size)}
}

// Size is the ring's capacity.
func (d *Denials) Size() int { return len(d.ring) }

// Add records e, evicting the oldest event when the ring is full.
func (d *Denials) Add(e DenialEvent) {
	d.mu.Lock()
	d.ring[d.next] = e
	d.next = (d.next + 1) % len(d.ring)
	d.count = min(d.count+1, len(d.ring))
	d.mu.Unlock()
}

// Recent returns up to limit events, newest first. limit ≤ 0 means all.
func (d *Denials) Recent(limit int) []DenialEvent {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.count
	if limit > 0 && limit < n {
		n = limit
	}
	out := make([]DenialEvent, n)
	for i := range n {
		out[i] = d.ring[(d.next-1-i+len(d.ring))%len(d.ring)]
	}
	return out
}

// nonNil makes a missing list an empty JSON array, as in the log line.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
