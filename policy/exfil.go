package policy

import (
	"strings"
	"sync"
	"time"
)

// ReasonExfilBudget: the name is allowed by a wildcard rule, but resolving
// it would exceed the rule's budget of new agent-chosen bytes for this
// minute (see ExfilGuard). Denied, and audited like any DNS denial.
const ReasonExfilBudget = "exfil_budget"

// Defaults of ExfilGuard.
const (
	// DefaultWildcardBudget is the bytes of new names an agent may have
	// resolved under one wildcard rule per minute (and at once). Real
	// clients resolve a handful of distinct names under a suffix — an S3
	// client its buckets, a CDN client its shards — each a few dozen bytes;
	// 4 KiB is a hundred such names a minute, while an agent encoding data
	// in names gets no more than 4 KiB a minute through the rule.
	DefaultWildcardBudget = 4096
	// totalBudgetFactor bounds all wildcard rules together to this many
	// rules' budgets, so a policy with many wildcards is not many times
	// the channel.
	totalBudgetFactor = 4
	// rememberFor and maxRemembered: a name once admitted is free for an
	// hour (clients re-resolve the same names as TTLs expire; repeating a
	// name carries no new bytes). 65536 names bound the memory (~5 MiB).
	rememberFor   = time.Hour
	maxRemembered = 1 << 16
	// refusalLogEvery: a refusal of the supervisor's own lookups (not an
	// agent's question, which always gets its line) is logged at most this
	// often per rule, so a flood of fresh SNIs does not double the log.
	refusalLogEvery = 10 * time.Second
)

// ExfilGuard bounds what an agent can carry out in the names it has
// resolved under wildcard rules, where it chooses the leading labels.
// Every path that resolves a name for the agent — its DNS queries, the
// explicit proxy's lookups, SNI verification lookups — asks one guard, so
// the bound holds whichever way the name is sent.
//
// Each wildcard rule has a token bucket of bytes (per minute, burst one
// minute's worth), and all rules share one of totalBudgetFactor times
// that. A name is charged the bytes before the rule's suffix, once: an
// admitted name is remembered (rememberFor) and free after that. Names
// allowed by exact rules, IP rules or dev-open are never charged — the
// agent chooses nothing in them. For a Rego policy, whose rules are
// opaque, every allowed name is charged in full against the rule its
// decision names.
//
// It is safe for concurrent use; its state outlives policy reloads.
type ExfilGuard struct {
	perRule float64 // bytes per minute per rule; burst the same
	total   float64 // bytes per minute for all rules together
	now     func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	all     bucket
	seen    map[string]time.Time // admitted names → when
	order   []string             // admitted names, oldest first (a FIFO bounding seen)
	logged  map[string]time.Time // rule → when a refusal of it was last logged (LogRefusal)
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewExfilGuard returns a guard allowing bytesPerMinute of new names per
// wildcard rule (DefaultWildcardBudget when 0). A nil now is time.Now.
// A negative budget returns nil, which admits everything.
func NewExfilGuard(bytesPerMinute int, now func() time.Time) *ExfilGuard {
	if bytesPerMinute < 0 {
		return nil
	}
	if bytesPerMinute == 0 {
		bytesPerMinute = DefaultWildcardBudget
	}
	if now == nil {
		now = time.Now
	}
	per := float64(bytesPerMinute)
	return &ExfilGuard{
		perRule: per, total: per * totalBudgetFactor, now: now,
		buckets: make(map[string]*bucket),
		all:     bucket{tokens: per * totalBudgetFactor, at: now()},
		seen:    make(map[string]time.Time),
		logged:  make(map[string]time.Time),
	}
}

// LogRefusal reports whether a budget refusal under rule should be logged
// now: once per refusalLogEvery per rule. It is for refusals that are not
// an agent's question (those are audited each); a nil guard says false.
func (g *ExfilGuard) LogRefusal(rule string) bool {
	if g == nil {
		return false
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if at, ok := g.logged[rule]; ok && now.Sub(at) < refusalLogEvery {
		return false
	}
	if len(g.logged) >= maxRemembered {
		clear(g.logged) // only rate-limits logging: forgetting says a line too many, never one too few
	}
	g.logged[rule] = now
	return true
}

// Admit reports whether the normalized name may be resolved now, charging
// cost bytes to the budget of key when it is a name not admitted within
// rememberFor (see ExfilCharge for key and cost). A nil guard admits
// everything.
func (g *ExfilGuard) Admit(name, key string, cost int) bool {
	if g == nil {
		return true
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if at, ok := g.seen[name]; ok && now.Sub(at) < rememberFor {
		return true
	}
	b := g.buckets[key]
	if b == nil {
		if len(g.buckets) >= maxRemembered {
			return false // more budget keys than names remembered: refuse rather than grow
		}
		b = &bucket{tokens: g.perRule, at: now}
		g.buckets[key] = b
	}
	b.refill(now, g.perRule)
	g.all.refill(now, g.total)
	c := float64(cost)
	if b.tokens < c || g.all.tokens < c {
		return false
	}
	b.tokens -= c
	g.all.tokens -= c
	g.remember(name, now)
	return true
}

func (b *bucket) refill(now time.Time, perMinute float64) {
	if elapsed := now.Sub(b.at); elapsed > 0 {
		b.tokens = min(perMinute, b.tokens+perMinute*elapsed.Minutes())
		b.at = now
	}
}

// remember records an admitted name, forgetting the oldest when full.
func (g *ExfilGuard) remember(name string, now time.Time) {
	if _, again := g.seen[name]; !again {
		if len(g.order) >= maxRemembered {
			delete(g.seen, g.order[0])
			g.order = g.order[1:]
		}
		g.order = append(g.order, name)
	}
	g.seen[name] = now
}

// ExfilCharge says whether the normalized name, allowed with v, is charged
// to an ExfilGuard, to which budget (key) and how many bytes: for a
// wildcard rule ("*.example.com", or an allowed_tcp "*.example.com:port")
// the rule's suffix and the bytes the agent chose before it; for a Rego
// policy (its rules are opaque) the decision's rule and the whole name.
// Denied names, dev-open and exact or IP rules are not charged. A nil
// policy reads v's rule as a JSON rule (WildcardCharge).
func (p *Policy) ExfilCharge(name string, v Verdict) (key string, cost int, charged bool) {
	switch {
	case p == nil:
		return WildcardCharge(name, v)
	case !v.Allow || p.mode != ModeAllowlist:
		return "", 0, false
	case p.rego != nil:
		return "rego:" + v.Rule, len(name) + 1, true
	}
	return WildcardCharge(name, v)
}

// WildcardCharge is ExfilCharge for a verdict whose rule is written as the
// JSON matcher writes rules.
func WildcardCharge(name string, v Verdict) (key string, cost int, charged bool) {
	suffix, ok := WildcardSuffix(v.Rule)
	if !v.Allow || !ok || !strings.HasSuffix(name, "."+suffix) {
		return "", 0, false
	}
	return suffix, len(name) - len(suffix), true
}

// WildcardSuffix returns the suffix of a wildcard rule as Verdict.Rule
// names it: "example.com" for "*.example.com" and for
// "allowed_tcp:*.example.com:443"; ok is false for every other rule.
func WildcardSuffix(rule string) (suffix string, ok bool) {
	if r, isTCP := strings.CutPrefix(rule, tcpRulePrefix); isTCP {
		i := strings.LastIndexByte(r, ':')
		if i < 0 {
			return "", false
		}
		rule = r[:i]
	}
	suffix, ok = strings.CutPrefix(rule, "*.")
	if !ok || suffix == "" {
		return "", false
	}
	return suffix, true
}
