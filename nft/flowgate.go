package nft

import (
	"net/netip"
	"time"
)

// FlowGate turns logged packets into at most one audit line per flow: a
// UDP client retrying, a ping every second, a SYN retransmitted, all
// within flowWindow, are one flow. Above lineRate lines per second
// (burst lineBurst) it refuses, so an agent flooding rejected packets can
// neither flood the log nor starve the supervisor; the caller counts the
// refusals in a metric. A FlowGate is used by one goroutine (the reader's).
type FlowGate struct {
	seen   map[flowKey]time.Time
	tokens float64
	last   time.Time
}

const (
	// flowWindow: packets of one flow this close together are one line.
	flowWindow = 10 * time.Second
	// maxFlows bounds the memory of seen flows (~100 bytes each).
	maxFlows = 8192
	// lineRate and lineBurst bound the kernel denial lines per second.
	lineRate  = 100
	lineBurst = 200
)

// Verdict of the gate for one packet.
type GateVerdict int

const (
	// GateLog: a new flow; write its line.
	GateLog GateVerdict = iota
	// GateDuplicate: a flow already logged within the window.
	GateDuplicate
	// GateRateLimited: a new flow over the line rate; count it.
	GateRateLimited
)

type flowKey struct {
	reason, proto    string
	src, dst         netip.Addr
	srcPort, dstPort uint16
	icmpType         uint8
}

// NewFlowGate returns an empty gate with a full bucket.
func NewFlowGate() *FlowGate {
	return &FlowGate{seen: make(map[flowKey]time.Time), tokens: lineBurst}
}

// Admit decides what to do with one logged packet seen at now.
func (g *FlowGate) Admit(p LoggedPacket, now time.Time) GateVerdict {
	k := flowKey{p.Reason, p.Proto, p.Src, p.Dst, p.SrcPort, p.DstPort, p.ICMPType}
	if t, ok := g.seen[k]; ok && now.Sub(t) < flowWindow {
		return GateDuplicate
	}
	if !g.last.IsZero() {
		g.tokens = min(lineBurst, g.tokens+now.Sub(g.last).Seconds()*lineRate)
	}
	g.last = now
	if g.tokens < 1 {
		return GateRateLimited
	}
	g.tokens--
	if len(g.seen) >= maxFlows {
		g.sweep(now)
	}
	g.seen[k] = now
	return GateLog
}

// sweep forgets flows outside the window, and everything if that is not
// enough (a flood of distinct flows: duplicates may then log again, which
// the rate limit still bounds).
func (g *FlowGate) sweep(now time.Time) {
	for k, t := range g.seen {
		if now.Sub(t) >= flowWindow {
			delete(g.seen, k)
		}
	}
	if len(g.seen) >= maxFlows {
		clear(g.seen)
	}
}
