package dns

import (
	"net/netip"
	"sync"
	"time"
)

// maxRateClients bounds the per-client buckets. The agent is one container
// (a handful of source addresses: v4, v6, loopback); the bound only matters
// if something sprays source addresses, and then new clients are limited
// rather than the map growing.
const maxRateClients = 1024

// rateLogWindow is how often at most one dns_rate_limited event is logged
// per client: a flood must not turn into a flood of log lines.
const rateLogWindow = 10 * time.Second

// rateLimiter is a token bucket per client address.
type rateLimiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	now     func() time.Time
	clients map[netip.Addr]*bucket
}

type bucket struct {
	tokens  float64
	last    time.Time // last refill
	dropped int       // queries refused since the last logged event
	logged  time.Time // when the last event was logged
}

func newRateLimiter(rate float64, burst int, now func() time.Time) *rateLimiter {
	return &rateLimiter{
		rate:    rate,
		burst:   float64(max(burst, 1)),
		now:     now,
		clients: make(map[netip.Addr]*bucket),
	}
}

// allow takes a token for client. When it refuses and a log event is due
// for the client, report is the number of refusals the event covers
// (otherwise 0).
func (r *rateLimiter) allow(client netip.Addr) (ok bool, report int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	b := r.clients[client]
	if b == nil {
		if len(r.clients) >= maxRateClients {
			r.dropIdleLocked(now)
		}
		b = &bucket{tokens: r.burst, last: now}
		if len(r.clients) < maxRateClients {
			r.clients[client] = b
		} else {
			// Full of active clients: new ones start empty, so a spray
			// of source addresses gains nothing.
			b.tokens = 0
		}
	}
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = min(r.burst, b.tokens+elapsed*r.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	b.dropped++
	if b.logged.IsZero() || now.Sub(b.logged) >= rateLogWindow {
		report, b.dropped, b.logged = b.dropped, 0, now
	}
	return false, report
}

// dropIdleLocked forgets clients whose bucket has refilled completely:
// they would start full again anyway.
func (r *rateLimiter) dropIdleLocked(now time.Time) {
	refill := time.Duration(r.burst / r.rate * float64(time.Second))
	for ip, b := range r.clients {
		if now.Sub(b.last) >= refill {
			delete(r.clients, ip)
		}
	}
}
