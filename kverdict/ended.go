package kverdict

import "time"

// endedFlows remembers the conntrack entries whose line was written, so a
// second end event of the same entry (TIME_WAIT, then CLOSE on a late
// reset; or a destroy the event filter kept) writes no second line.
// Entries are told apart by their conntrack id, not their tuple: a tuple
// reused by a new connection is a new entry with a new id, and its own
// line.
type endedFlows struct {
	ids   map[uint32]struct{}
	order []endedAt // oldest first
}

type endedAt struct {
	id uint32
	at time.Time
}

const (
	// endedMemory outlasts TIME_WAIT (120 s), the longest an entry lives
	// on after its end.
	endedMemory = 3 * time.Minute
	// maxEnded bounds the memory (about 40 bytes an entry); past it the
	// oldest is forgotten, at worst costing one duplicate line.
	maxEnded = 1 << 16
)

func newEndedFlows() *endedFlows { return &endedFlows{ids: make(map[uint32]struct{})} }

func (e *endedFlows) seen(id uint32) bool {
	_, ok := e.ids[id]
	return ok
}

func (e *endedFlows) add(id uint32, now time.Time) {
	i := 0
	for ; i < len(e.order) && (now.Sub(e.order[i].at) > endedMemory || len(e.order)-i >= maxEnded); i++ {
		delete(e.ids, e.order[i].id)
	}
	e.order = e.order[i:]
	if len(e.order) == 0 {
		e.order = e.order[:0:0] // let the drained backing array go
	}
	if _, ok := e.ids[id]; !ok {
		e.ids[id] = struct{}{}
		e.order = append(e.order, endedAt{id: id, at: now})
	}
}
