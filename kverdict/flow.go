package kverdict

import (
	"time"

	"github.com/forge/forge-supervisor/conn"
)

// maxHeld bounds the payload held for one flow while its first bytes are
// judged: twice the largest ClientHello real clients send with
// post-quantum key shares (~8 KiB), and within any server's initial
// receive window, since the worker acknowledges held bytes on the
// server's behalf (worker.go) and the server must then take them all.
const maxHeld = 16 << 10

// maxHeldPackets bounds the packets held for one flow (the kernel's queue
// holds queueMaxLen for all flows; a ClientHello in 1-byte segments is
// ~1,500 of them): a head trickled in tiny segments past
// it is denied rather than allowed to fill the queue.
const maxHeldPackets = 2048

// flow is one pending connection whose first payload is being judged, or
// was judged a moment ago (kept for stragglers).
type flow struct {
	key      flowKey
	gen      uint64 // tells an async decision for this flow from one for a flow that reused the tuple
	base     uint32 // sequence number of the first payload byte: the server's rcv_nxt
	peerSeq  uint32 // the server's next sequence number (the client's latest ack)
	end      uint32 // one past the highest client byte seen
	data     []byte // contiguous payload from base
	ooo      map[uint32][]byte
	held     []uint32 // queued packet ids awaiting the verdict, in arrival order
	sniffer  conn.Sniffer
	started  time.Time
	deadline time.Time

	waiting bool      // an async decision is in flight
	decided bool      // the verdict was given; held is empty
	expires time.Time // for a decided flow: when stragglers stop being expected
}

// add merges a segment's payload and returns how many new contiguous bytes
// it brought. Overlaps (retransmits) add nothing new; a segment ahead of a
// gap is kept until the gap fills, within maxHeld.
func (f *flow) add(seq uint32, payload []byte) int {
	if len(payload) == 0 {
		return 0
	}
	before := len(f.data)
	f.merge(seq-f.base, payload)
	for len(f.ooo) > 0 {
		next, ok := f.ooo[uint32(len(f.data))]
		if !ok {
			break
		}
		delete(f.ooo, uint32(len(f.data)))
		f.merge(uint32(len(f.data)), next)
	}
	return len(f.data) - before
}

func (f *flow) merge(off uint32, payload []byte) {
	have := uint32(len(f.data))
	end := off + uint32(len(payload))
	switch {
	case off > maxHeld:
		// Outside the window, or before base (the offset wrapped).
		return
	case off > have:
		if f.ooo == nil {
			f.ooo = make(map[uint32][]byte)
		}
		f.ooo[off] = append([]byte(nil), payload...)
	case end > have:
		f.data = append(f.data, payload[have-off:]...)
	}
}
