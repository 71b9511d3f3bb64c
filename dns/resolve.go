package dns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/miekg/dns"

	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
)

var _ policy.Resolver = (*Proxy)(nil)

// Resolve looks name up afresh (A and AAAA, through the upstreams), learns
// the answers like an agent's query would, and returns the addresses.
// Concurrent lookups of one name share one exchange. It does not consult
// the policy: callers ask only about names the policy already allowed.
func (p *Proxy) Resolve(ctx context.Context, name string) ([]netip.Addr, error) {
	// The supervisor's own lookups obey the same decision as the agent's
	// queries: a name the DNS proxy would refuse (not allowed, or over the
	// wildcard exfiltration budget) is never sent upstream — otherwise an
	// SNI or a CONNECT target under an allowed wildcard would make the
	// supervisor itself carry the agent's data out in a query. A budget
	// refusal is audited here, once per rule per 10 s (the connection it
	// was for has its own line).
	norm, v := decide(p.current(), name, p.limits, policy.ProcessFrom(ctx), p.guard)
	if !v.Allow {
		if v.Reason == policy.ReasonExfilBudget && p.guard.LogRefusal(v.Rule) {
			p.audit.DNS(obs.DNSQuery{QName: norm, QType: "A", Rcode: "REFUSED", Reason: v.Reason, Rule: v.Rule})
		}
		return nil, fmt.Errorf("dns: resolve %q: %s", name, v.Reason)
	}
	// The shared lookup runs under the proxy's lifetime, not the first
	// caller's context, so one caller giving up does not fail the others.
	ch := p.lookups.DoChan(norm, func() (any, error) { return p.lookup(norm) })
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("dns: resolve %s: %w", norm, ctx.Err())
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return slices.Clone(r.Val.([]netip.Addr)), nil
	}
}

// lookupTypes are the query types Resolve asks for a name.
var lookupTypes = [...]uint16{dns.TypeA, dns.TypeAAAA}

// errRateLimited: the agent's DNS rate is spent, so the supervisor makes
// no lookup on its behalf either.
var errRateLimited = errors.New("dns: rate limited")

// allowLookups takes n tokens from the agent's bucket for lookups made on
// its behalf: an agent that sends ClientHellos (or CONNECT requests) with
// fresh names under a wildcard makes the supervisor query upstream for
// each, and those queries must cost it like its own. Refusals are logged
// and counted like the agent's own (dns_rate_limited, no client address).
func (p *Proxy) allowLookups(name string, n int) error {
	if p.limiter == nil {
		return nil
	}
	ok, report := p.limiter.allow(n)
	if ok {
		return nil
	}
	p.rateLimited(report, name, typeString(lookupTypes[0]), "", netip.AddrPort{})
	return fmt.Errorf("dns: resolve %s: %w", name, errRateLimited)
}

// lookup returns name's addresses: from the answer cache where it holds
// an answer, else asked upstream (charged to the agent's rate).
func (p *Proxy) lookup(name string) ([]netip.Addr, error) {
	types := lookupTypes
	var (
		wg     sync.WaitGroup
		addrs  [len(types)][]netip.Addr
		errs   [len(types)]error
		cached [len(types)]bool
	)
	misses := 0
	for i, t := range types {
		if addrs[i], cached[i] = p.cachedAddrs(name, t); !cached[i] {
			misses++
		}
	}
	if misses > 0 {
		if err := p.allowLookups(name, misses); err != nil {
			return nil, err
		}
	}
	for i, t := range types {
		if cached[i] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			addrs[i], errs[i] = p.lookupType(name, t)
		}()
	}
	wg.Wait()
	out := append(addrs[0], addrs[1]...)
	if len(out) == 0 {
		if err := errors.Join(errs[:]...); err != nil {
			return nil, fmt.Errorf("dns: resolve %s: %w", name, err)
		}
		return nil, fmt.Errorf("dns: resolve %s: no addresses", name)
	}
	return out, nil
}

// cachedAddrs returns name's addresses of qtype from a cached answer (the
// supervisor's own lookups' form first, then the agent's without EDNS),
// learning them again with their remaining TTLs; false when none is
// cached. A cached NXDOMAIN or NODATA gives no addresses, and true.
func (p *Proxy) cachedAddrs(name string, qtype uint16) ([]netip.Addr, bool) {
	for _, k := range [...]answerKey{{name: name, qtype: qtype, edns: true}, {name: name, qtype: qtype}} {
		e, age, ok := p.answers.get(k)
		if !ok {
			continue
		}
		p.cacheLookup(true)
		learned := e.addrsAged(age)
		p.learn(name, learned)
		out := make([]netip.Addr, len(learned))
		for i, a := range learned {
			out[i] = a.ip
		}
		return out, true
	}
	if p.answers != nil {
		p.cacheLookup(false)
	}
	return nil, false
}

func (p *Proxy) lookupType(name string, qtype uint16) ([]netip.Addr, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.SetEdns0(ednsSize, false)
	query, err := q.Pack()
	if err != nil {
		return nil, fmt.Errorf("dns: pack query %s: %w", name, err)
	}
	abufp := p.abufs.Get()
	defer p.abufs.Put(abufp)
	var rrs [stackRRs]rrRef
	msg, a, err := p.fwd.exchange(p.life, query, false, *abufp, rrs[:])
	if err != nil {
		return nil, err
	}
	var learned []learnedAddr
	switch a.rcode {
	case dns.RcodeSuccess:
		learned = wireChainAddrs(msg, a)
	case dns.RcodeNameError:
	default:
		return nil, fmt.Errorf("%s %s: %s", name, typeString(qtype), rcodeString(a.rcode))
	}
	if p.answers != nil {
		key := answerKey{name: name, qtype: qtype, edns: true}
		if e, ok := newCachedAnswer(key, append([]byte(nil), msg...), a, learned, p.cfg.Now()); ok {
			p.answers.put(e)
		}
	}
	p.learn(name, learned)
	out := make([]netip.Addr, 0, len(learned))
	for _, a := range learned {
		out = append(out, a.ip)
	}
	return out, nil
}

// Resolves reports whether name resolves to ip: from the learned cache, or
// else by a fresh lookup. Any failure is false (fail closed).
func (p *Proxy) Resolves(ctx context.Context, name string, ip netip.Addr) bool {
	norm, err := policy.NormalizeName(name)
	if err != nil || !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	if p.cache.Knows(norm, ip) {
		return true
	}
	addrs, err := p.Resolve(ctx, norm)
	if err != nil {
		return false
	}
	return slices.Contains(addrs, ip)
}

// NamesFor returns the names currently known to resolve to ip.
func (p *Proxy) NamesFor(ip netip.Addr) []string {
	return p.cache.NamesFor(ip)
}
