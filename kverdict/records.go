package kverdict

import (
	"github.com/forge/forge-supervisor/obs"
)

// maxRecords bounds the verdicts kept for allowed flows until conntrack
// reports their end. A lost end event (an overrun conntrack socket) would
// otherwise keep one forever; past the bound one goes, and that flow's
// line then carries the address-only verdict.
const maxRecords = 1 << 16

// record is what the worker knows of a flow, for the conntrack auditor:
// still being judged (its end is the worker's to report), denied (the
// worker wrote the line), or allowed (waiting for the byte counts and
// duration of its end). An allowed record lives as long as its connection,
// so it holds only what the line needs beyond the flow's key: 104 bytes,
// where the whole obs.Flow was 192 and a formatted address more.
type record struct {
	state     recordState
	wouldDeny bool
	proto     string
	sni       string
	alpn      []string
	reason    string
	rule      string
	started   int64 // unix nanoseconds of the first payload
}

// line is the audit record of allowed flow k: the fields of its verdict
// and of its key (bytes and duration are the auditor's).
func (r record) line(k flowKey) obs.Flow {
	return obs.Flow{
		Allowed: true, WouldDeny: r.wouldDeny, Proto: r.proto, SNI: r.sni, ALPN: r.alpn,
		SrcPort: k.src.Port(), DstIP: k.dst.Addr().String(), DstPort: k.dst.Port(),
		Reason: r.reason, Rule: r.rule, Source: SourceKernel,
	}
}

type recordState uint8

const (
	recJudging recordState = iota
	recDenied
	recAllowed
)

// records hands verdicts from the worker to the conntrack auditor. Both
// run on the worker's goroutine (the auditor reads its events between
// packets), so it needs no lock.
type records struct {
	m map[recordKey]record
	// peak is the most records held since m was made.
	peak int
}

// recordKey is a flow's key as 36 bytes without pointers: the records of
// open connections are the worker's only lasting per-connection state,
// and a netip.AddrPort pair is 64 bytes the collector must scan.
type recordKey [36]byte

func keyOf(k flowKey) recordKey {
	var out recordKey
	s, d := k.src.Addr().As16(), k.dst.Addr().As16()
	copy(out[0:16], s[:])
	copy(out[16:32], d[:])
	out[32], out[33] = byte(k.src.Port()>>8), byte(k.src.Port())
	out[34], out[35] = byte(k.dst.Port()>>8), byte(k.dst.Port())
	return out
}

func newRecords() *records { return &records{m: make(map[recordKey]record)} }

func (r *records) put(k flowKey, rec record) {
	key := keyOf(k)
	if _, ok := r.m[key]; !ok && len(r.m) >= maxRecords {
		// Full: lost end events (an overrun) or that many open
		// connections. One record goes — the first the map's randomised
		// iteration yields — and that flow's line carries the
		// address-only verdict.
		for victim := range r.m {
			delete(r.m, victim)
			break
		}
	}
	r.m[key] = rec
	r.peak = max(r.peak, len(r.m))
}

// take returns the record of k and forgets it, unless the flow is still
// being judged (the worker will report it).
func (r *records) take(k flowKey) (record, bool) {
	key := keyOf(k)
	rec, ok := r.m[key]
	if ok && rec.state != recJudging {
		delete(r.m, key)
		if len(r.m) == 0 && r.peak > 64 {
			// Emptied after a burst: a new map, not the burst's buckets
			// for good (a Go map never shrinks).
			r.m, r.peak = make(map[recordKey]record), 0
		}
	}
	return rec, ok
}
