package obs

import "sync"

// Label values come partly from the data path (reason strings, protocol
// names, DNS qtypes). Each distinct value is a new time series that lives
// until the process exits, so a bug or a hostile agent that produced
// unbounded values would grow memory without end. A labelGuard admits the
// first maxValues distinct values and maps the rest to labelOther.
const (
	// maxReasonLabels: the policy, classify and dial stages have a few dozen
	// reasons; 128 leaves room without letting error text explode.
	maxReasonLabels = 128
	// maxProtoLabels: tls, http, opaque, unknown, dns and the fallback
	// proxy's kinds.
	maxProtoLabels = 16
	labelOther     = "other"
)

type labelGuard struct {
	mu   sync.RWMutex
	seen map[string]struct{}
	max  int
}

func newLabelGuard(max int) *labelGuard {
	return &labelGuard{seen: make(map[string]struct{}), max: max}
}

// value returns v if it is (or can still become) an admitted label value,
// labelOther otherwise.
func (g *labelGuard) value(v string) string {
	g.mu.RLock()
	_, ok := g.seen[v]
	g.mu.RUnlock()
	if ok {
		return v
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.seen[v]; ok {
		return v
	}
	if len(g.seen) >= g.max {
		return labelOther
	}
	g.seen[v] = struct{}{}
	return v
}

type labelGuards struct {
	reason, proto *labelGuard
}

func newLabelGuards() *labelGuards {
	return &labelGuards{
		reason: newLabelGuard(maxReasonLabels),
		proto:  newLabelGuard(maxProtoLabels),
	}
}
