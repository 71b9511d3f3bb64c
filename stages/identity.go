package stages

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/forge/forge-supervisor/conn"
	"github.com/forge/forge-supervisor/policy"
)

// reasonIdentifyFailed is the unknown-owner reason when Identify returns
// no answer at all.
const reasonIdentifyFailed = "lookup_failed"

// identifyTimeout bounds one lookup. The worst case, a scan of every
// process, costs ~15 µs a process: 250 ms covers ~16,000 of them, and a
// lookup that takes longer leaves the owner unknown (which fails closed
// for a policy that needs it) rather than holding a worker.
const identifyTimeout = 250 * time.Millisecond

// identify returns the process behind c when p needs it or the audit asks
// for it (nil otherwise), and records it on c for the audit event. The
// decide stage asks once, before an explicit-proxy target is checked and
// resolved: the client is still waiting for the proxy's answer then.
//
// The 4-tuple is the client socket's own view: its address and, for a
// redirected connection, the original destination; for the explicit
// front, the proxy's address it connected to.
func (e *Engine) identify(ctx context.Context, p *policy.Policy, c *conn.Conn) *policy.Process {
	if e.cfg.Identify == nil || !(e.cfg.IdentifyAlways || p.NeedsProcess()) {
		return nil
	}
	dst := c.Dst
	if c.Front != conn.FrontTransparent {
		if la, ok := c.Client.LocalAddr().(*net.TCPAddr); ok {
			dst = la.AddrPort()
		}
	}
	ctx, cancel := context.WithTimeout(ctx, identifyTimeout)
	defer cancel()
	proc := e.cfg.Identify(ctx, c.Src, netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()))
	if proc == nil {
		proc = &policy.Process{Unknown: reasonIdentifyFailed}
	}
	c.Owner = &conn.Owner{PID: proc.PID, Exe: proc.Exe, Unknown: proc.Unknown}
	return proc
}
