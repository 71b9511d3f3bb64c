package dns

import (
	"sync"
	"time"
)

// rateLogWindow is how often at most one dns_rate_limited event is logged:
// a flood must not turn into a flood of log lines. Every refusal is still
// counted (Hooks.RateLimited).
const rateLogWindow = 10 * time.Second

// rateLimiter is one token bucket for the agent. It is per agent, not per
// source address: the agent can send from any loopback address
// (127.0.0.0/8), from every address of the pod and, with IPV6_FREEBIND,
// from addresses that are not its own, so a bucket per source would give a
// spray of sources a bucket each. The lookups the supervisor makes on the
// agent's behalf (Resolve) draw from the same bucket.
type rateLimiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	now     func() time.Time
	tokens  float64
	last    time.Time // last refill
	dropped int       // refusals since the last logged event
	logged  time.Time // when the last event was logged
}

func newRateLimiter(rate float64, burst int, now func() time.Time) *rateLimiter {
	b := float64(max(burst, 1))
	return &rateLimiter{rate: rate, burst: b, now: now, tokens: b, last: now()}
}

// allow takes n tokens, all or none. When it refuses and a log event is
// due, report is the number of refusals the event covers (otherwise 0).
func (r *rateLimiter) allow(n int) (ok bool, report int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if elapsed := now.Sub(r.last).Seconds(); elapsed > 0 {
		r.tokens = min(r.burst, r.tokens+elapsed*r.rate)
		r.last = now
	}
	if r.tokens >= float64(n) {
		r.tokens -= float64(n)
		return true, 0
	}
	r.dropped++
	if r.logged.IsZero() || now.Sub(r.logged) >= rateLogWindow {
		report, r.dropped, r.logged = r.dropped, 0, now
	}
	return false, report
}
