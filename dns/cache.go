package dns

import (
	"container/heap"
	"container/list"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// DefaultCacheSize bounds the learned (name, address) pairs when Config
// leaves CacheSize at zero. An entry costs roughly 200 bytes with its
// indexes, so the default stays under ~4 MiB even when an agent walks a CDN
// that hands out a fresh address on every answer.
const DefaultCacheSize = 16384

type cacheKey struct {
	name string
	ip   netip.Addr
}

type cacheEntry struct {
	key     cacheKey
	expires time.Time
	el      *list.Element // position in the LRU list
	heapIdx int           // position in the expiry heap
}

// expiryHeap orders entries by expiry, soonest first, so expired entries
// are dropped before any live one is evicted.
type expiryHeap []*cacheEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*cacheEntry)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

// Cache is the learned name→address table the DNS proxy fills from allowed
// answers: a bounded LRU of (name, address) pairs, each with an expiry, and
// an index from address to names. Expired pairs are dropped when touched
// and before any live pair is evicted. Names are stored as given (callers pass
// normalized names); addresses are unmapped so 4in6 forms match. It is safe
// for concurrent use.
type Cache struct {
	mu     sync.Mutex
	size   int
	minTTL time.Duration
	now    func() time.Time

	lru     *list.List // of *cacheEntry, front = most recently used
	expiry  expiryHeap
	entries map[cacheKey]*cacheEntry
	byIP    map[netip.Addr]map[string]struct{}
}

// NewCache returns a cache holding at most size pairs (DefaultCacheSize when
// size <= 0). Every learned TTL is raised to at least minTTL. now is the
// clock (time.Now when nil); tests pass a fake one.
func NewCache(size int, minTTL time.Duration, now func() time.Time) *Cache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	if now == nil {
		now = time.Now
	}
	return &Cache{
		size:    size,
		minTTL:  minTTL,
		now:     now,
		lru:     list.New(),
		entries: make(map[cacheKey]*cacheEntry),
		byIP:    make(map[netip.Addr]map[string]struct{}),
	}
}

// Learn records that name resolved to ip for ttl (raised to the cache's
// minimum). Learning a pair again extends its life, never shortens it. When
// the cache is full, expired pairs go first, then the least recently used.
func (c *Cache) Learn(name string, ip netip.Addr, ttl time.Duration) {
	if name == "" || !ip.IsValid() {
		return
	}
	ttl = max(ttl, c.minTTL)
	key := cacheKey{name: name, ip: ip.Unmap()}

	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	expires := now.Add(ttl)
	if e, ok := c.entries[key]; ok {
		if expires.After(e.expires) {
			e.expires = expires
			heap.Fix(&c.expiry, e.heapIdx)
		}
		c.lru.MoveToFront(e.el)
		return
	}
	for len(c.expiry) > 0 && !c.liveLocked(c.expiry[0], now) {
		c.removeLocked(c.expiry[0])
	}
	for c.lru.Len() >= c.size {
		c.removeLocked(c.lru.Back().Value.(*cacheEntry))
	}
	e := &cacheEntry{key: key, expires: expires}
	e.el = c.lru.PushFront(e)
	heap.Push(&c.expiry, e)
	c.entries[key] = e
	names := c.byIP[key.ip]
	if names == nil {
		names = make(map[string]struct{}, 1)
		c.byIP[key.ip] = names
	}
	names[name] = struct{}{}
}

// Knows reports whether name is known to resolve to ip right now.
func (c *Cache) Knows(name string, ip netip.Addr) bool {
	key := cacheKey{name: name, ip: ip.Unmap()}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return false
	}
	if !c.liveLocked(e, c.now()) {
		c.removeLocked(e)
		return false
	}
	c.lru.MoveToFront(e.el)
	return true
}

// NamesFor returns the names that currently resolve to ip, sorted.
func (c *Cache) NamesFor(ip netip.Addr) []string {
	ip = ip.Unmap()
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	var out []string
	for name := range c.byIP[ip] {
		if c.liveLocked(c.entries[cacheKey{name: name, ip: ip}], now) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Len returns the number of pairs held, including expired pairs that have
// not been dropped yet.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

func (c *Cache) liveLocked(e *cacheEntry, now time.Time) bool {
	return now.Before(e.expires)
}

func (c *Cache) removeLocked(e *cacheEntry) {
	c.lru.Remove(e.el)
	heap.Remove(&c.expiry, e.heapIdx)
	delete(c.entries, e.key)
	if names := c.byIP[e.key.ip]; names != nil {
		delete(names, e.key.name)
		if len(names) == 0 {
			delete(c.byIP, e.key.ip)
		}
	}
}
