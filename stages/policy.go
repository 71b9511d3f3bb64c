package stages

import (
	"context"

	"github.com/forge/forge-supervisor/conn"
	"github.com/forge/forge-supervisor/policy"
)

// decide stage: the policy's verdict on the claimed name and the original
// destination. The policy pointer is loaded once per connection, so a
// reload (SIGHUP) never mixes two policies in one decision.
func (e *Engine) decide(ctx context.Context, c *conn.Conn, out, deny chan<- *conn.Conn) {
	if c.Local { // decided in origdst (local.go)
		out <- c
		return
	}
	p := e.cfg.Policy.Load()
	v := p.DecideFor(ctx, policy.Request{Name: c.Name(), IP: c.Dst.Addr(), Port: c.Dst.Port()}, e.identify(ctx, p, c), e.cfg.Resolver)
	c.Stamps.Policy = e.observe("policy", c.Stamps.Classify)
	if c.WouldDeny {
		// Dry run and classification already failed: keep that reason; the
		// connection passes.
		c.Allowed = true
		out <- c
		return
	}
	c.Reason, c.Rule = v.Reason, v.Rule
	if v.Allow {
		c.Allowed = true
		out <- c
		return
	}
	e.warnFix(c, v)
	if e.cfg.DryRun {
		// Nothing is blocked in a dry run: the connection goes through and
		// its audit line is egress_allowed with would_deny and the reason.
		c.WouldDeny, c.Allowed = true, true
		out <- c
		return
	}
	deny <- c
}
