package kverdict

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/nft"
)

// The conntrack event socket hears every connection of the namespace:
// each TCP state change of every flow, the proxy's and root's included,
// about eight messages per connection. The auditor needs one per
// fast-path flow: the update that says it ended (TIME_WAIT or CLOSE: the
// counters are final), or, for a flow that never got there (a flush, a
// timeout), its destroy. A classic BPF socket filter drops the rest in the
// kernel, before they are queued to the socket: unfiltered, reading them
// cost the worker process more CPU per connection than judging it did.
//
// The program walks the netlink attributes with the kernel's own nla_find
// (the SKF_AD_NLATTR and SKF_AD_NLATTR_NEST ancillary loads), so the
// attribute order of a kernel version does not matter:
//
//	CTA_MARK absent, or not FRG-prefixed        → drop (not a fast-path flow)
//	state := CTA_PROTOINFO/_TCP/_TCP_STATE (absent: live)
//	update,  state TIME_WAIT or CLOSE           → keep (the flow ended)
//	destroy, state live or absent               → keep (it ended without an end state)
//	anything else                               → drop
//
// Destroy events carry the protoinfo on current kernels; where one does
// not, it is kept, and the auditor's memory of ended flows stops a second
// line.

// Ancillary loads of linux/filter.h.
const (
	skfAdOff        = 0xfffff000 // SKF_AD_OFF, -0x1000 as the u32 k field holds it
	skfAdNlattr     = 12
	skfAdNlattrNest = 16
)

// ctMarkPrefix is what every fast-path ct mark shares (nft.CtPending,
// CtAllowed, CtDenied: the "FRG" prefix).
const ctMarkPrefix = nft.CtPending &^ 0xff

// bpfInsn is one instruction with symbolic jump targets, resolved by
// assemble.
type bpfInsn struct {
	code   uint16
	k      uint32
	jt, jf string // labels; "" is the next instruction
	label  string // this instruction's label
}

// ctEventFilter is the program above.
func ctEventFilter() []unix.SockFilter {
	const firstAttr = nlmsgHdr + nfgenHdr
	const nlattr, nest = skfAdOff + skfAdNlattr, skfAdOff + skfAdNlattrNest
	// The destroy message's type as BPF reads it: nlmsg_type is in host
	// order, a half-word load is big-endian.
	deleteType := uint32(binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, nfnlSubsysCtnetlink<<8|ipctnlMsgCtDelete)))
	const (
		ldImm  = unix.BPF_LD | unix.BPF_IMM
		ldxImm = unix.BPF_LDX | unix.BPF_IMM
		ldAbsW = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		ldAbsH = unix.BPF_LD | unix.BPF_H | unix.BPF_ABS
		ldIndW = unix.BPF_LD | unix.BPF_W | unix.BPF_IND
		ldIndB = unix.BPF_LD | unix.BPF_B | unix.BPF_IND
		tax    = unix.BPF_MISC | unix.BPF_TAX
		and    = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
		jeq    = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret    = unix.BPF_RET | unix.BPF_K
	)
	return assemble([]bpfInsn{
		{code: ldxImm, k: ctaMark},
		{code: ldImm, k: firstAttr},
		{code: ldAbsW, k: nlattr}, // A = offset of CTA_MARK, or 0
		{code: jeq, k: 0, jt: "drop"},
		{code: tax},
		{code: ldIndW, k: 4}, // the mark, big-endian as sent
		{code: and, k: 0xffffff00},
		{code: jeq, k: ctMarkPrefix, jf: "drop"},
		{code: ldxImm, k: ctaProtoinfo},
		{code: ldImm, k: firstAttr},
		{code: ldAbsW, k: nlattr},
		{code: jeq, k: 0, jt: "live"},
		{code: ldxImm, k: ctaProtoinfoTCP},
		{code: ldAbsW, k: nest},
		{code: jeq, k: 0, jt: "live"},
		{code: ldxImm, k: ctaProtoinfoTCPState},
		{code: ldAbsW, k: nest},
		{code: jeq, k: 0, jt: "live"},
		{code: tax},
		{code: ldIndB, k: 4}, // the state byte
		{code: jeq, k: tcpCtTimeWait, jt: "ended"},
		{code: jeq, k: tcpCtClose, jt: "ended", jf: "live"},
		{label: "live", code: ldAbsH, k: 4}, // nlmsg_type
		{code: jeq, k: deleteType, jt: "keep", jf: "drop"},
		{label: "ended", code: ldAbsH, k: 4},
		{code: jeq, k: deleteType, jt: "drop", jf: "keep"},
		{label: "drop", code: ret, k: 0},
		{label: "keep", code: ret, k: 0xffffffff}, // the whole message
	})
}

// assemble resolves the labels of prog into relative jumps.
func assemble(prog []bpfInsn) []unix.SockFilter {
	at := map[string]int{}
	for i, in := range prog {
		if in.label != "" {
			at[in.label] = i
		}
	}
	rel := func(from int, label string) uint8 {
		if label == "" {
			return 0
		}
		to, ok := at[label]
		if !ok || to <= from {
			panic("kverdict: bpf: bad label " + label) // a bug in the program above, caught by its test
		}
		return uint8(to - from - 1)
	}
	out := make([]unix.SockFilter, len(prog))
	for i, in := range prog {
		out[i] = unix.SockFilter{Code: in.code, K: in.k, Jt: rel(i, in.jt), Jf: rel(i, in.jf)}
	}
	return out
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
