package stages

import (
	"context"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/conn"
)

// dial stage: connect to the original destination from a socket carrying
// the supervisor's mark, which the nft ruleset exempts from interception —
// so the supervisor never proxies itself.
func (e *Engine) dial(c *conn.Conn, out, deny chan<- *conn.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.DialTimeout)
	up, err := e.cfg.DialUpstream(ctx, c.Dst)
	cancel()
	c.Stamps.Dial = e.observe("dial", c.Stamps.Policy)
	if err != nil {
		c.Allowed = false
		c.WouldDeny = false
		c.Reason = ReasonDialFailed
		deny <- c
		return
	}
	c.Upstream = up
	_ = c.Upstream.SetNoDelay(true)
	out <- c
}

// markSocket sets SO_MARK on the socket before connect.
func (e *Engine) markSocket(_, _ string, rc syscall.RawConn) error {
	if e.cfg.Mark == 0 {
		return nil
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(e.cfg.Mark))
	}); err != nil {
		return err
	}
	return serr
}

// dialMarked connects from a socket carrying the supervisor's mark.
func (e *Engine) dialMarked(ctx context.Context, dst netip.AddrPort) (*net.TCPConn, error) {
	d := net.Dialer{Control: e.markSocket}
	c, err := d.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}
