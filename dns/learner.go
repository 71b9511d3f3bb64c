package dns

import (
	"net/netip"
	"time"
)

// Learner is told every address the proxy learns for an allowed name (the
// kernel verdict path fills its fast sets from it). It is called on the
// query path and must not block; the ttl is already raised to the
// minimum.
type Learner interface {
	Learned(name string, ip netip.Addr, ttl time.Duration)
}

// tellLearner passes learned addresses on to cfg.Learner, if any.
func (p *Proxy) tellLearner(name string, addrs []learnedAddr) {
	if p.cfg.Learner == nil {
		return
	}
	for _, a := range addrs {
		p.cfg.Learner.Learned(name, a.ip, max(a.ttl, p.cache.minTTL))
	}
}

// Knows reports whether the normalized name is known to resolve to ip from
// the learned cache alone, without a lookup.
func (p *Proxy) Knows(name string, ip netip.Addr) bool {
	return p.cache.Knows(name, ip)
}
