package stages

import (
	"net"
	"net/netip"
	"slices"

	"github.com/forge/forge-supervisor/conn"
)

// origDst reads the original destination (SO_ORIGINAL_DST or
// IP6T_SO_ORIGINAL_DST), the first step of the classify stage. A
// destination that is the proxy's own address is an explicit-proxy
// request (the agent uses the advertised HTTPS_PROXY): it routes to the
// handshake stage. Any other of our own listeners is a loop, denied
// before a byte is read. routeClassify means: go on classifying.
func (e *Engine) origDst(c *conn.Conn) route {
	if ap, ok := c.Client.RemoteAddr().(*net.TCPAddr); ok {
		c.Src = ap.AddrPort()
	}
	if e.foreignSource(c) {
		e.refuse(c, ReasonNonLocalSource, "", true)
		return routeDeny
	}
	dst, err := e.cfg.OrigDst(c.Client)
	c.Stamps.OrigDst = e.observe("origdst", c.Accepted)
	if err != nil {
		e.refuse(c, ReasonOrigDstFailed, "", true)
		return routeDeny
	}
	c.Dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if c.Dst.Port() == e.proxyPort && e.isLocal(c) {
		c.Dst = netip.AddrPort{} // the request names the destination
		return routeHandshake
	}
	if e.isLoop(c) {
		e.refuse(c, ReasonLoop, "", true)
		return routeDeny
	}
	if e.isLocalDst(c) {
		return e.decideLocal(c)
	}
	return routeClassify
}

// isLoop: the destination port is one of ours and the address is this
// host's (loopback, unspecified, or the very address the client reached).
func (e *Engine) isLoop(c *conn.Conn) bool {
	return slices.Contains(e.cfg.SelfPorts, c.Dst.Port()) && e.isLocal(c)
}

// isLocal: the destination address is this host's (loopback, unspecified,
// or an address of this network namespace).
func (e *Engine) isLocal(c *conn.Conn) bool {
	ip := c.Dst.Addr()
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	if la, ok := c.Client.LocalAddr().(*net.TCPAddr); ok && la.AddrPort().Addr().Unmap() == ip {
		return true
	}
	return isLocalAddr(ip)
}

// isLocalAddr reports whether ip is assigned to an interface of this
// network namespace.
func isLocalAddr(ip netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // cannot tell: treat our own port as a loop (fail closed)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if la, ok := netip.AddrFromSlice(n.IP); ok && la.Unmap() == ip {
				return true
			}
		}
	}
	return false
}
