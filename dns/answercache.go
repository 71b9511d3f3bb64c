package dns

import (
	"container/list"
	"sync"
	"time"
)

// DefaultAnswerCacheBytes bounds the answer cache when Config leaves
// AnswerCacheBytes at zero: at a few hundred bytes an answer, 8 MiB holds
// tens of thousands of them, far more than the names one agent uses.
const DefaultAnswerCacheBytes = 8 << 20

// Answer-cache limits.
const (
	// maxPositiveTTL caps how long an answer is kept whatever its TTL
	// says (unbound's cache-max-ttl default): a day-long TTL should not pin
	// a stale address for longer.
	maxPositiveTTL = 24 * time.Hour
	// maxNegativeTTL caps negative answers (RFC 2308 §5 suggests one to
	// three hours): a name created meanwhile should not stay "missing".
	maxNegativeTTL = time.Hour
	// entryOverhead approximates the bookkeeping of an entry beyond its
	// bytes (key, list element, map slot), so the byte bound holds for
	// many tiny answers too.
	entryOverhead = 160
	// maxEntryShare: one answer may take at most this share of the cache,
	// so a few 64 KiB answers cannot flush everything else.
	maxEntryShare = 16
)

// answerKey identifies a cached answer: the normalized question name and
// type (the class is always IN: other classes are never forwarded), and
// the query bits that change what the upstream answers or what the agent
// may be sent: an OPT record (no OPT may answer a query without one), DO
// (DNSSEC records) and CD (validation disabled).
type answerKey struct {
	name  string
	qtype uint16
	edns  bool
	do    bool
	cd    bool
}

// cachedAnswer is one whole upstream answer, as the agent gets it. It is
// immutable once stored: readers copy msg and patch the copy.
type cachedAnswer struct {
	key     answerKey
	msg     []byte   // wire answer; OPT options stripped
	ttlOffs []uint16 // offsets of the TTL fields to decrement (every record but OPT)
	rcode   int
	addrs   []learnedAddr // what the answer teaches the learned-IP cache
	stored  time.Time
	expires time.Time
	size    int
	el      *list.Element
}

// answerCache is a bounded LRU of whole answers, by bytes. Expired
// entries are dropped when touched; when full, the least recently used
// go first. Safe for concurrent use.
type answerCache struct {
	max int
	now func() time.Time

	mu      sync.Mutex
	bytes   int
	lru     *list.List // of *cachedAnswer, front = most recently used
	entries map[answerKey]*cachedAnswer
}

func newAnswerCache(maxBytes int, now func() time.Time) *answerCache {
	return &answerCache{max: maxBytes, now: now, lru: list.New(), entries: make(map[answerKey]*cachedAnswer)}
}

// get returns the live answer for k and how long ago it was stored.
func (c *answerCache) get(k answerKey) (*cachedAnswer, time.Duration, bool) {
	if c == nil {
		return nil, 0, false
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return nil, 0, false
	}
	if !now.Before(e.expires) {
		c.removeLocked(e)
		return nil, 0, false
	}
	c.lru.MoveToFront(e.el)
	return e, now.Sub(e.stored), true
}

// put stores e (replacing an answer for the same key), evicting the least
// recently used answers until the cache is within its bound. Answers too
// big for their share are not stored.
func (c *answerCache) put(e *cachedAnswer) {
	if c == nil {
		return
	}
	e.size = len(e.msg) + 2*len(e.ttlOffs) + len(e.addrs)*40 + len(e.key.name) + entryOverhead
	if e.size > c.max/maxEntryShare {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[e.key]; ok {
		c.removeLocked(old)
	}
	for c.bytes+e.size > c.max && c.lru.Len() > 0 {
		c.removeLocked(c.lru.Back().Value.(*cachedAnswer))
	}
	e.el = c.lru.PushFront(e)
	c.entries[e.key] = e
	c.bytes += e.size
}

// stats returns the bytes and answers held.
func (c *answerCache) stats() (bytes, answers int) {
	if c == nil {
		return 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes, c.lru.Len()
}

func (c *answerCache) removeLocked(e *cachedAnswer) {
	c.lru.Remove(e.el)
	delete(c.entries, e.key)
	c.bytes -= e.size
}
