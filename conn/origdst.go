package conn

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST from
// <linux/netfilter_ipv6/ip6_tables.h>; golang.org/x/sys/unix lacks it.
const ip6tSOOriginalDst = 80

// OriginalDst returns the destination the client dialled before an
// nftables redirect rewrote it, read from conntrack with SO_ORIGINAL_DST
// (IPv4, including v4-mapped peers on a dual-stack socket) or
// IP6T_SO_ORIGINAL_DST (IPv6). It works on the socket's own descriptor
// through SyscallConn.Control: no dup, no change to blocking mode.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	ra, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok || ra == nil {
		return netip.AddrPort{}, fmt.Errorf("origdst: connection has no TCP peer address")
	}
	v4 := ra.AddrPort().Addr().Unmap().Is4()
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("origdst: %w", err)
	}
	var (
		dst  netip.AddrPort
		serr error
	)
	cerr := rc.Control(func(fd uintptr) {
		if v4 {
			dst, serr = originalDstV4(int(fd))
		} else {
			dst, serr = originalDstV6(int(fd))
		}
	})
	if cerr != nil {
		return netip.AddrPort{}, fmt.Errorf("origdst: %w", cerr)
	}
	return dst, serr
}

func originalDstV4(fd int) (netip.AddrPort, error) {
	var sa unix.RawSockaddrInet4
	if err := getsockopt(fd, unix.SOL_IP, unix.SO_ORIGINAL_DST, unsafe.Pointer(&sa), unsafe.Sizeof(sa)); err != nil {
		return netip.AddrPort{}, fmt.Errorf("origdst: getsockopt(SOL_IP, SO_ORIGINAL_DST): %w", err)
	}
	if sa.Family != unix.AF_INET {
		return netip.AddrPort{}, fmt.Errorf("origdst: SO_ORIGINAL_DST returned family %d, want AF_INET", sa.Family)
	}
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), networkPort(&sa.Port)), nil
}

func originalDstV6(fd int) (netip.AddrPort, error) {
	var sa unix.RawSockaddrInet6
	if err := getsockopt(fd, unix.SOL_IPV6, ip6tSOOriginalDst, unsafe.Pointer(&sa), unsafe.Sizeof(sa)); err != nil {
		return netip.AddrPort{}, fmt.Errorf("origdst: getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST): %w", err)
	}
	if sa.Family != unix.AF_INET6 {
		return netip.AddrPort{}, fmt.Errorf("origdst: IP6T_SO_ORIGINAL_DST returned family %d, want AF_INET6", sa.Family)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), networkPort(&sa.Port)), nil
}

// networkPort reads a sockaddr port field, which holds network byte order
// whatever the host's endianness.
func networkPort(p *uint16) uint16 {
	return binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(p))[:])
}

// getsockopt is getsockopt(2) into a caller-owned struct of size bytes;
// x/sys/unix has no typed wrapper for sockaddr results.
func getsockopt(fd, level, opt int, p unsafe.Pointer, size uintptr) error {
	l := uint32(size)
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}
