package kverdict

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/nft"
)

// The conntrack event socket hears every connection of the namespace:
// each TCP state change of every flow, the proxy's and root's included,
// about eight messages per connection. The auditor needs two kinds, and
// only for fast-path flows: a TIME_WAIT or CLOSE update (the flow ended)
// and a destroy. A classic BPF socket filter drops the rest in the kernel,
// before they are queued to the socket — in the prototype's measurements
// the unfiltered stream cost the worker process more CPU per connection
// than judging the connection did.
//
// The program walks the netlink attributes with the kernel's own nla_find
// (the SKF_AD_NLATTR and SKF_AD_NLATTR_NEST ancillary loads), so the
// attribute order of a kernel version does not matter:
//
//	mark := CTA_MARK          (absent: drop)
//	mark & ^0xff != FRG\0     → drop   (not a fast-path flow)
//	type == CT_DELETE         → keep
//	state := CTA_PROTOINFO / CTA_PROTOINFO_TCP / CTA_PROTOINFO_TCP_STATE   (absent: drop)
//	state is TIME_WAIT or CLOSE → keep, else drop

// Ancillary loads of linux/filter.h.
const (
	skfAdOff        = 0xfffff000 // SKF_AD_OFF, -0x1000 as the u32 k field holds it
	skfAdNlattr     = 12
	skfAdNlattrNest = 16
)

// ctMarkPrefix is what every fast-path ct mark shares (nft.CtPending,
// CtAllowed, CtDenied: the "FRG" prefix).
const ctMarkPrefix = nft.CtPending &^ 0xff

// ctEventFilter is the program above.
func ctEventFilter() []unix.SockFilter {
	const firstAttr = nlmsgHdr + nfgenHdr
	ld := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jeq := func(k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: jt, Jf: jf, K: k}
	}
	const nlattr, nest = skfAdOff + skfAdNlattr, skfAdOff + skfAdNlattrNest
	// The destroy message's type as BPF reads it: nlmsg_type is in host
	// order, a half-word load is big-endian.
	deleteAsRead := uint32(binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, nfnlSubsysCtnetlink<<8|ipctnlMsgCtDelete)))

	return []unix.SockFilter{
		/* 0 */ ld(unix.BPF_LDX|unix.BPF_IMM, ctaMark),
		/* 1 */ ld(unix.BPF_LD|unix.BPF_IMM, firstAttr),
		/* 2 */ ld(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, nlattr), // A = offset of CTA_MARK, or 0
		/* 3 */ jeq(0, 24-4, 0),
		/* 4 */ ld(unix.BPF_MISC|unix.BPF_TAX, 0),
		/* 5 */ ld(unix.BPF_LD|unix.BPF_W|unix.BPF_IND, 4), // the mark, big-endian as sent
		/* 6 */ ld(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, 0xffffff00),
		/* 7 */ jeq(ctMarkPrefix, 0, 24-8),
		/* 8 */ ld(unix.BPF_LD|unix.BPF_H|unix.BPF_ABS, 4), // nlmsg_type
		/* 9 */ jeq(deleteAsRead, 25-10, 0),
		/* 10 */ ld(unix.BPF_LDX|unix.BPF_IMM, ctaProtoinfo),
		/* 11 */ ld(unix.BPF_LD|unix.BPF_IMM, firstAttr),
		/* 12 */ ld(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, nlattr),
		/* 13 */ jeq(0, 24-14, 0),
		/* 14 */ ld(unix.BPF_LDX|unix.BPF_IMM, ctaProtoinfoTCP),
		/* 15 */ ld(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, nest),
		/* 16 */ jeq(0, 24-17, 0),
		/* 17 */ ld(unix.BPF_LDX|unix.BPF_IMM, ctaProtoinfoTCPState),
		/* 18 */ ld(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, nest),
		/* 19 */ jeq(0, 24-20, 0),
		/* 20 */ ld(unix.BPF_MISC|unix.BPF_TAX, 0),
		/* 21 */ ld(unix.BPF_LD|unix.BPF_B|unix.BPF_IND, 4), // the state byte
		/* 22 */ jeq(tcpCtTimeWait, 25-23, 0),
		/* 23 */ jeq(tcpCtClose, 25-24, 24-24),
		/* 24 */ ld(unix.BPF_RET|unix.BPF_K, 0), // drop
		/* 25 */ ld(unix.BPF_RET|unix.BPF_K, 0xffffffff), // keep it whole
	}
}

// attachCtEventFilter installs ctEventFilter on the event socket fd.
func attachCtEventFilter(fd int) error {
	prog := ctEventFilter()
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("kverdict: conntrack event filter: %w", err)
	}
	return nil
}
