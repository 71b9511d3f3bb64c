package kverdict

import (
	"sync"
	"time"

	"github.com/forge/forge-supervisor/obs"
)

// maxRecords bounds the verdicts kept for allowed flows until conntrack
// reports their end. A lost end event (an overrun conntrack socket) would
// otherwise keep one forever; past the bound the oldest goes, and that
// flow's line then carries the address-only verdict.
const maxRecords = 1 << 16

// record is what the worker knows of a flow, for the conntrack auditor:
// still being judged (its end is the worker's to report), denied (the
// worker wrote the line), or allowed (waiting for the byte counts and
// duration of its end).
type record struct {
	state   recordState
	flow    obs.Flow
	started time.Time
}

type recordState uint8

const (
	recJudging recordState = iota
	recDenied
	recAllowed
)

// records hands verdicts from the worker to the conntrack auditor.
type records struct {
	mu    sync.Mutex
	m     map[flowKey]record
	order []flowKey // insertion order, for the bound
}

func newRecords() *records { return &records{m: make(map[flowKey]record)} }

func (r *records) put(k flowKey, rec record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.m) >= maxRecords {
		for len(r.order) > 0 && len(r.m) >= maxRecords {
			delete(r.m, r.order[0])
			r.order = r.order[1:]
		}
	}
	if _, ok := r.m[k]; !ok {
		r.order = append(r.order, k)
	}
	r.m[k] = rec
	if len(r.order) > 2*maxRecords {
		// Compact keys already taken.
		live := r.order[:0]
		for _, k := range r.order {
			if _, ok := r.m[k]; ok {
				live = append(live, k)
			}
		}
		r.order = live
	}
}

// take returns the record of k and forgets it, unless the flow is still
// being judged (the worker will report it).
func (r *records) take(k flowKey) (record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.m[k]
	if ok && rec.state != recJudging {
		delete(r.m, k)
	}
	return rec, ok
}
