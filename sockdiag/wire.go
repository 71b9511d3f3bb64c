package sockdiag

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Wire layout of inet_diag (include/uapi/linux/inet_diag.h). Ports and
// addresses are in network byte order, everything else in host order
// (little-endian on every architecture this binary is built for).
const (
	nlmsgHdrLen = unix.SizeofNlMsghdr // struct nlmsghdr
	sockIDLen   = 48                  // struct inet_diag_sockid
	reqV2Len    = 8 + sockIDLen       // struct inet_diag_req_v2
	diagMsgLen  = 4 + sockIDLen + 20  // struct inet_diag_msg

	// inetDiagReqBytecode is the request attribute carrying a filter program.
	inetDiagReqBytecode = 1
	// Filter opcodes (enum in inet_diag.h): local port ≥ / ≤ the next op's "no".
	bcSrcGE = 2
	bcSrcLE = 3
)

// noCookie is INET_DIAG_NOCOOKIE: the request names the socket by address.
const noCookie = ^uint32(0)

// request is one inet_diag_req_v2 and its optional bytecode.
type request struct {
	family, proto uint8
	states        uint32
	src, dst      netip.AddrPort
	bytecode      []byte
	dump          bool
}

// encode renders the request as one netlink message with sequence seq.
func (r request) encode(seq uint32) []byte {
	n := nlmsgHdrLen + reqV2Len
	if len(r.bytecode) > 0 {
		n += unix.SizeofRtAttr + len(r.bytecode) // an nlattr has the rtattr layout
	}
	b := make([]byte, n)
	flags := uint16(unix.NLM_F_REQUEST)
	if r.dump {
		flags |= unix.NLM_F_DUMP
	}
	binary.LittleEndian.PutUint32(b[0:], uint32(n))
	binary.LittleEndian.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.LittleEndian.PutUint16(b[6:], flags)
	binary.LittleEndian.PutUint32(b[8:], seq)
	q := b[nlmsgHdrLen:]
	q[0], q[1] = r.family, r.proto
	binary.LittleEndian.PutUint32(q[4:], r.states)
	id := q[8 : 8+sockIDLen]
	binary.BigEndian.PutUint16(id[0:], r.src.Port())
	binary.BigEndian.PutUint16(id[2:], r.dst.Port())
	putAddr(id[4:20], r.src.Addr(), r.family)
	putAddr(id[20:36], r.dst.Addr(), r.family)
	binary.LittleEndian.PutUint32(id[40:], noCookie)
	binary.LittleEndian.PutUint32(id[44:], noCookie)
	if len(r.bytecode) > 0 {
		a := b[nlmsgHdrLen+reqV2Len:]
		binary.LittleEndian.PutUint16(a[0:], uint16(unix.SizeofRtAttr+len(r.bytecode)))
		binary.LittleEndian.PutUint16(a[2:], inetDiagReqBytecode)
		copy(a[unix.SizeofRtAttr:], r.bytecode)
	}
	return b
}

// putAddr writes a as the family's address field: 4 bytes for AF_INET,
// 16 (IPv4 mapped) for AF_INET6. An invalid address stays all zero.
func putAddr(dst []byte, a netip.Addr, family uint8) {
	if !a.IsValid() {
		return
	}
	if family == unix.AF_INET {
		v4 := a.Unmap().As4()
		copy(dst, v4[:])
		return
	}
	v6 := a.As16()
	copy(dst, v6[:])
}

// srcPortFilter is a bytecode program keeping sockets whose local port is
// port: "sport ≥ port" then "sport ≤ port". A program accepts when its
// last jump lands exactly on its end and rejects when a jump overshoots
// it (inet_diag_bc_run), so every "no" jumps 4 bytes past the end.
func srcPortFilter(port uint16) []byte {
	const opLen = 4 // struct inet_diag_bc_op { u8 code; u8 yes; u16 no; }
	const progLen = 4 * opLen
	b := make([]byte, progLen)
	put := func(off int, code, yes uint8, no uint16) {
		b[off], b[off+1] = code, yes
		binary.LittleEndian.PutUint16(b[off+2:], no)
	}
	put(0, bcSrcGE, 2*opLen, progLen+4)
	put(opLen, 0, 0, port)
	put(2*opLen, bcSrcLE, 2*opLen, 2*opLen+4)
	put(3*opLen, 0, 0, port)
	return b
}

// parseDiagMsg decodes one inet_diag_msg payload.
func parseDiagMsg(proto Proto, b []byte) (Socket, error) {
	if len(b) < diagMsgLen {
		return Socket{}, fmt.Errorf("sockdiag: short inet_diag_msg: %d bytes, want %d", len(b), diagMsgLen)
	}
	family := b[0]
	if family != unix.AF_INET && family != unix.AF_INET6 {
		return Socket{}, fmt.Errorf("sockdiag: inet_diag_msg of family %d", family)
	}
	id := b[4 : 4+sockIDLen]
	rest := b[4+sockIDLen:]
	return Socket{
		Proto:  proto,
		Family: family,
		State:  b[1],
		Src:    netip.AddrPortFrom(getAddr(id[4:20], family), binary.BigEndian.Uint16(id[0:])),
		Dst:    netip.AddrPortFrom(getAddr(id[20:36], family), binary.BigEndian.Uint16(id[2:])),
		UID:    binary.LittleEndian.Uint32(rest[12:]),
		Inode:  binary.LittleEndian.Uint32(rest[16:]),
	}, nil
}

func getAddr(b []byte, family uint8) netip.Addr {
	if family == unix.AF_INET {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16([16]byte(b[:16])).Unmap()
}
