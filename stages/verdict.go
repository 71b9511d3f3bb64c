package stages

import (
	"github.com/forge/forge-supervisor/conn"
	"github.com/forge/forge-supervisor/policy"
)

// The verdict of a connection — Allowed, WouldDeny, Reason, Rule on the
// Conn — is written here and nowhere else: every stage that decides calls
// allow or refuse, and a dry run is applied once, in refuse.

// allow applies the policy's verdict v and routes on: to dial when the
// connection may go through (allowed, or a dry run), else to deny. A soft
// denial recorded earlier in a dry run keeps its reason.
func (e *Engine) allow(c *conn.Conn, v policy.Verdict) route {
	switch {
	case c.WouldDeny:
		c.Allowed = true
	case v.Allow:
		c.Allowed, c.Reason, c.Rule = true, v.Reason, v.Rule
	case e.refuse(c, v.Reason, v.Rule, false):
		return routeDeny
	}
	return routeDial
}

// refuse records a denial and reports whether the connection stops. Out
// of a dry run it always does. In a dry run a soft denial is recorded as
// would_deny — the first one wins — and the connection goes on; a hard
// one (a loop, a closed client, no destination, no upstream) stops it
// even then: there is nothing to let through.
func (e *Engine) refuse(c *conn.Conn, reason, rule string, hard bool) (stop bool) {
	if hard || !e.cfg.DryRun {
		c.Allowed, c.WouldDeny, c.Reason, c.Rule = false, false, reason, rule
		return true
	}
	if !c.WouldDeny {
		c.WouldDeny, c.Reason, c.Rule = true, reason, rule
	}
	c.Allowed = true
	return false
}
