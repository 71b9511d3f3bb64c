package stages

import (
	"context"
	"net/netip"

	"github.com/forge/forge-supervisor/conn"
	"github.com/forge/forge-supervisor/policy"
)

// decide stage: the policy's verdict on the claimed name and the
// destination. It alone decides, with the policy pointer loaded once per
// connection, so a reload (SIGHUP) never mixes two policies in one
// connection. An explicit-proxy request that named a host is resolved
// here first (resolve).
func (e *Engine) decide(ctx context.Context, c *conn.Conn) route {
	p := e.cfg.Policy.Load()
	// The process behind the connection, when the policy or the audit
	// needs it (identity.go): asked once, before an explicit name is
	// checked and resolved, while the client still waits for an answer.
	proc := e.identify(ctx, p, c)
	start := c.Stamps.Classify
	if c.Front != conn.FrontTransparent {
		if r := e.resolve(ctx, p, proc, c); r != routePolicy {
			return r
		}
		start = c.Stamps.Classify
	}
	v := p.DecideFor(ctx, policy.Request{Name: c.Name(), IP: c.Dst.Addr(), Port: c.Dst.Port()}, proc, e.cfg.Resolver)
	c.Stamps.Policy = e.observe("policy", start)
	if !v.Allow && !c.WouldDeny {
		e.warnFix(c, v) // a denial whose fix is in the policy (hint.go)
	}
	return e.allow(c, v)
}

// resolve finds the address of an explicit-proxy request that named a
// host (the handshake left c.Dst without an address). The name is checked
// by name first — the resolver must never become a way to send arbitrary
// names upstream — then resolved by the supervisor itself, so the address
// the policy judges is one the name really has; of its addresses the
// first the policy allows is taken (the A answers come first), else the
// first, which Decide then denies with its own reason. A request for one
// of the supervisor's own listeners is a loop. routePolicy means: go on
// deciding.
func (e *Engine) resolve(ctx context.Context, p *policy.Policy, proc *policy.Process, c *conn.Conn) route {
	if !c.Dst.Addr().IsValid() {
		name, port := c.Host, c.Dst.Port()
		if v := p.CheckNameFor(name, port, proc); !v.Allow && e.refuse(c, v.Reason, v.Rule, false) {
			return routeDeny
		}
		if e.cfg.Lookup == nil {
			e.refuse(c, ReasonDNSFailed, c.Rule, true)
			return routeDeny
		}
		lctx, cancel := context.WithTimeout(policy.WithProcess(ctx, proc), e.cfg.DialTimeout)
		defer cancel()
		addrs, err := e.cfg.Lookup(lctx, name)
		c.Stamps.Classify = e.observe("lookup", c.Stamps.Classify)
		switch {
		case ctx.Err() != nil:
			e.refuse(c, ReasonShutdown, c.Rule, true)
			return routeDeny
		case err != nil || len(addrs) == 0:
			e.refuse(c, ReasonDNSFailed, c.Rule, true)
			return routeDeny
		}
		pick := addrs[0]
		for _, a := range addrs {
			if p.DecideFor(lctx, policy.Request{Name: name, IP: a.Unmap(), Port: port}, proc, e.cfg.Resolver).Allow {
				pick = a
				break
			}
		}
		c.Dst = netip.AddrPortFrom(pick.Unmap(), port)
	}
	if e.isLoop(c) {
		// Never dialled, not even in a dry run.
		e.refuse(c, ReasonLoop, "", true)
		return routeDeny
	}
	return routePolicy
}
