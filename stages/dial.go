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
// so the supervisor never proxies itself — and start the relay.
func (e *Engine) dial(_ context.Context, c *conn.Conn) route {
	if c.Upstream == nil {
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.DialTimeout)
		up, err := e.cfg.DialUpstream(ctx, c.Dst)
		cancel()
		if err != nil {
			c.Stamps.Dial = e.observe("dial", c.Stamps.Policy)
			e.refuse(c, ReasonDialFailed, c.Rule, true)
			return routeDeny
		}
		_ = up.SetNoDelay(true)
		c.Upstream = up
	} // else dialled early: the decision needed no name (early.go)
	c.Stamps.Dial = e.observe("dial", c.Stamps.Policy)
	e.live.start(c, e.relay, e.finish)
	return routeDone
}

// dialMarked connects with the engine's mark.
func (e *Engine) dialMarked(ctx context.Context, dst netip.AddrPort) (*net.TCPConn, error) {
	return DialTCP(ctx, dst, e.cfg.Mark)
}

// DialTCP connects to dst from a socket carrying mark (none when 0),
// giving up when ctx ends.
//
// The connect is started in the dialer's Control hook, before the net
// package's own. To a destination on this host the handshake completes
// within that first call, and the net package's connect then finds the
// socket connected and returns at once — instead of starting a goroutine
// to watch ctx and parking until the poller reports the socket writable,
// two scheduler round trips that were a fifth of the engine's added
// latency on loopback. To a remote destination its connect reports
// EALREADY and waits as it always does.
func DialTCP(ctx context.Context, dst netip.AddrPort, mark uint32) (*net.TCPConn, error) {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return controlConnect(rc, dst, mark)
	}}
	c, err := d.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// controlConnect sets SO_MARK and starts a non-blocking connect to dst on
// the raw socket. A scoped IPv6 address is left to the net package, which
// resolves its zone.
func controlConnect(rc syscall.RawConn, dst netip.AddrPort, mark uint32) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if mark != 0 {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)); serr != nil {
				return
			}
		}
		var sa unix.Sockaddr
		switch ip := dst.Addr().Unmap(); {
		case ip.Is4():
			sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: ip.As4()}
		case ip.Zone() == "":
			sa = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: ip.As16()}
		default:
			return
		}
		if serr = unix.Connect(int(fd), sa); serr == unix.EINPROGRESS {
			serr = nil
		}
	})
	if err != nil {
		return err
	}
	return serr
}
