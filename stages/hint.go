package stages

import (
	"go.uber.org/zap"

	"github.com/forge/forge-supervisor/conn"
	"github.com/forge/forge-supervisor/policy"
)

// warnFix writes, next to the audit line of a denial whose fix is in the
// policy (port_not_allowed: a name allowed on 80/443 reached on another
// port), one warning naming the fix — the entry to add to allowed_tcp, or
// the forge.yaml endpoint — so the operator need not work it out. Its msg
// does not start with "egress_": it is not an audit event, and tools
// counting one egress_* line per connection must not see it.
func (e *Engine) warnFix(c *conn.Conn, v policy.Verdict) {
	hint := policy.Hint(v, c.Name(), c.Dst.Port())
	if hint == "" {
		return
	}
	e.cfg.Log.Warn("denial_fix", zap.String("reason", v.Reason), zap.String("rule", v.Rule),
		zap.String("dst_ip", c.Dst.Addr().String()), zap.Uint16("dst_port", c.Dst.Port()), zap.String("hint", hint))
}
