// Package sockdiag asks the kernel about TCP and UDP sockets of the current
// network namespace over NETLINK_SOCK_DIAG (inet_diag): who owns a socket
// (its uid and inode) given its addresses, or which sockets listen on a
// port. It is the netlink half of process identity (see procid) and of
// questions like "which uid owns this loopback listener".
//
// sockdiag imports no other package of this project.
package sockdiag

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Proto is the transport protocol of a socket.
type Proto uint8

const (
	TCP Proto = unix.IPPROTO_TCP
	UDP Proto = unix.IPPROTO_UDP
)

// String returns "tcp" or "udp".
func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// TCP states as the kernel numbers them (include/net/tcp_states.h). UDP
// sockets report StateClose when unconnected and StateEstablished when
// connected.
const (
	StateEstablished uint8 = 1
	StateTimeWait    uint8 = 6
	StateClose       uint8 = 7
	StateListen      uint8 = 10
)

// AllStates selects every state in Query.States.
const AllStates uint32 = ^uint32(0)

// StateMask is the Query.States bit of one state.
func StateMask(states ...uint8) uint32 {
	var m uint32
	for _, s := range states {
		m |= 1 << s
	}
	return m
}

// Socket is one socket as inet_diag reports it. Src is the socket's local
// address, Dst its peer (unspecified for an unconnected or listening
// socket). Addresses are unmapped: an IPv6 socket talking IPv4 reports
// IPv4 addresses.
type Socket struct {
	Proto Proto
	// Family is the socket's own family (AF_INET or AF_INET6), which for a
	// dual-stack socket differs from its addresses'.
	Family uint8
	State  uint8
	Src    netip.AddrPort
	Dst    netip.AddrPort
	UID    uint32
	// Inode is the socket's inode number, as /proc/PID/fd/N shows it
	// ("socket:[Inode]"). 0 means no process holds the socket any more: a
	// TIME_WAIT socket, or one orphaned by an exited process.
	Inode uint32
}

// ErrNotFound is returned when no socket matches.
var ErrNotFound = errors.New("sockdiag: no such socket")

// Query selects sockets for List. The zero Query lists every socket of the
// protocol in both families.
type Query struct {
	// States is a mask of StateMask bits; 0 means AllStates.
	States uint32
	// SrcPort, when non-zero, keeps only sockets bound to this local port
	// (filtered in the kernel).
	SrcPort uint16
	// Family is AF_INET or AF_INET6; 0 asks both.
	Family uint8
}
