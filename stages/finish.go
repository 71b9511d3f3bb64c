package stages

import (
	"context"
	"time"

	"github.com/forge/forge-supervisor/conn"
	"github.com/forge/forge-supervisor/obs"
)

// finish writes the connection's one audit event. It is called exactly
// once per connection: by the deny stage or when the relay has ended.
func (e *Engine) finish(c *conn.Conn) {
	c.Stamps.Done = time.Now()
	if e.cfg.Metrics != nil {
		e.cfg.Metrics.Active.Dec()
	}
	f := obs.Flow{
		Allowed:   c.Allowed,
		WouldDeny: c.WouldDeny,
		Proto:     c.Proto.String(),
		SNI:       c.SNI,
		Host:      c.Host,
		ALPN:      c.ALPN,
		SrcPort:   c.Src.Port(),
		DstPort:   c.Dst.Port(),
		Reason:    c.Reason,
		Rule:      c.Rule,
		BytesUp:   c.BytesUp,
		BytesDown: c.BytesDown,
		Duration:  c.Stamps.Done.Sub(c.Accepted),
		Source:    "transparent",
	}
	if c.Front != conn.FrontTransparent {
		f.Source = "explicit"
	}
	if c.Dst.IsValid() {
		f.DstIP = c.Dst.Addr().String()
	}
	if c.Owner == nil && c.Src.IsValid() {
		// Denied before the decide stage (classification failed): the
		// audit still names the process when identity is on.
		e.identify(context.Background(), e.cfg.Policy.Load(), c)
	}
	if o := c.Owner; o != nil {
		f.Process = &obs.Process{PID: o.PID, Exe: o.Exe, Unknown: o.Unknown}
	}
	e.cfg.Audit.Egress(f)
	<-e.admitted
}
