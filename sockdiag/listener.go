package sockdiag

import "net/netip"

// Listener returns the TCP socket that would accept a connection from this
// host to dst, with its owner: an exact inet_diag lookup whose peer no
// established socket has, so the kernel answers with the listener its own
// SYN lookup picks (exact address before the wildcard, dual-stack IPv6
// listeners for IPv4, SO_REUSEPORT groups). ErrNotFound when nothing
// listens. A listener bound to a device (SO_BINDTODEVICE) is not found,
// which a caller deciding on access treats as a denial.
func (c *Client) Listener(dst netip.AddrPort) (Socket, error) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	peer := netip.IPv4Unspecified()
	if dst.Addr().Is6() {
		peer = netip.IPv6Unspecified()
	}
	return c.findExact(TCP, dst, netip.AddrPortFrom(peer, 0))
}
