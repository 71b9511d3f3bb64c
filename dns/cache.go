package dns

import (
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

// expiredSweep is how many least-recently-used entries Learn inspects for
// expiry on each call. A small constant keeps Learn O(1) while still
// draining dead entries faster than a steady learner adds them.
const expiredSweep = 4

type cacheKey struct {
	name string
	ip   netip.Addr
}

type cacheEntry struct {
	key     cacheKey
	expires time.Time
}

// Cache is the learned name→address table the DNS proxy fills from allowed
// answers: a bounded LRU of (name, address) pairs, each with an expiry, and
// an index from address to names. Names are stored as given (callers pass
// normalized names); addresses are unmapped so 4in6 forms match. It is safe
// for concurrent use.
type Cache struct {
	mu     sync.Mutex
	size   int
	minTTL time.Duration
	now    func() time.Time

	lru     *list.List // of *cacheEntry, front = most recently used
	entries map[cacheKey]*list.Element
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
		entries: make(map[cacheKey]*list.Element),
		byIP:    make(map[netip.Addr]map[string]struct{}),
	}
}

// Learn records that name resolved to ip for ttl (raised to the cache's
// minimum). Learning a pair again extends its life, never shortens it. When
// the cache is full the least recently used pair is evicted.
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
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*cacheEntry)
		if expires.After(e.expires) {
			e.expires = expires
		}
		c.lru.MoveToFront(el)
		return
	}
	c.dropExpiredLocked(now)
	for c.lru.Len() >= c.size {
		c.removeLocked(c.lru.Back())
	}
	c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, expires: expires})
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
	el, ok := c.entries[key]
	if !ok {
		return false
	}
	if !c.liveLocked(el, c.now()) {
		c.removeLocked(el)
		return false
	}
	c.lru.MoveToFront(el)
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
		el := c.entries[cacheKey{name: name, ip: ip}]
		if c.liveLocked(el, now) {
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

func (c *Cache) liveLocked(el *list.Element, now time.Time) bool {
	return now.Before(el.Value.(*cacheEntry).expires)
}

// dropExpiredLocked removes up to expiredSweep expired pairs from the cold
// end of the LRU.
func (c *Cache) dropExpiredLocked(now time.Time) {
	for range expiredSweep {
		el := c.lru.Back()
		if el == nil || c.liveLocked(el, now) {
			return
		}
		c.removeLocked(el)
	}
}

func (c *Cache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.entries, e.key)
	if names := c.byIP[e.key.ip]; names != nil {
		delete(names, e.key.name)
		if len(names) == 0 {
			delete(c.byIP, e.key.ip)
		}
	}
}
