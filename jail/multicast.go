package jail

import (
	"fmt"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// The multicast filter closes a covert channel (issue 11, item 8): joining
// multicast groups, above all source-specific ones, makes the kernel send
// IGMPv3/MLDv2 reports that carry groups and sources the process chose —
// packets without a socket owner, which no owner-based nft rule sees. The
// agent needs none of it, so every setsockopt option that joins, leaves or
// filters a group fails with EPERM.
//
// It is a second seccomp filter, loaded before the profile's: the kernel
// runs every filter of a thread and the most restrictive verdict wins, so
// it holds whatever profile the user configured, and it never needs to
// mix an unconditional allow of setsockopt with conditional denials in one
// libseccomp filter (libseccomp drops such conditional rules).

// Group-membership options of setsockopt, by level.
var (
	// SOL_IP: IP_ADD_MEMBERSHIP (35) through MCAST_MSFILTER (48): add/drop
	// membership, (un)block source, add/drop source membership, IP_MSFILTER
	// and the protocol-independent MCAST_* options.
	ipGroupOptions = optionRange(unix.IP_ADD_MEMBERSHIP, unix.MCAST_MSFILTER)
	// SOL_IPV6: IPV6_ADD_MEMBERSHIP/DROP_MEMBERSHIP (20, 21),
	// IPV6_JOIN_ANYCAST/LEAVE_ANYCAST (27, 28: an anycast join makes the
	// kernel join a solicited-node group chosen by the address), and the
	// MCAST_* options (42–48).
	ipv6GroupOptions = append([]uint64{unix.IPV6_ADD_MEMBERSHIP, unix.IPV6_DROP_MEMBERSHIP,
		unix.IPV6_JOIN_ANYCAST, unix.IPV6_LEAVE_ANYCAST}, optionRange(unix.MCAST_JOIN_GROUP, unix.MCAST_MSFILTER)...)
)

func optionRange(from, to int) []uint64 {
	var out []uint64
	for o := from; o <= to; o++ {
		out = append(out, uint64(o))
	}
	return out
}

// low32 compares only the low 32 bits of an argument: level and optname
// are C ints, and the kernel ignores the upper half of the register, so a
// full 64-bit comparison could be dodged with garbage in the upper half.
const low32 = 0xffffffff

// multicastFilter builds the filter: default allow, setsockopt(_, level,
// optname) → EPERM for each group-membership option (SCMP_ACT_LOG in log
// mode, like every other denial).
func multicastFilter(logMode bool) (*seccomp.ScmpFilter, error) {
	f, err := seccomp.NewFilter(seccomp.ActAllow)
	if err != nil {
		return nil, fmt.Errorf("seccomp: multicast filter: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Release()
		}
	}()
	if err := f.SetNoNewPrivsBit(false); err != nil {
		return nil, fmt.Errorf("seccomp: multicast filter: clear NNP attribute: %w", err)
	}
	act := seccomp.ActErrno.SetReturnCode(int16(unix.EPERM))
	if logMode {
		act = seccomp.ActLog
	}
	call, err := seccomp.GetSyscallFromName("setsockopt")
	if err != nil {
		return nil, fmt.Errorf("seccomp: multicast filter: %w", err)
	}
	for _, g := range []struct {
		level uint64
		opts  []uint64
	}{{unix.SOL_IP, ipGroupOptions}, {unix.SOL_IPV6, ipv6GroupOptions}} {
		for _, opt := range g.opts {
			level, err := seccomp.MakeCondition(1, seccomp.CompareMaskedEqual, low32, g.level)
			if err != nil {
				return nil, fmt.Errorf("seccomp: multicast filter: %w", err)
			}
			name, err := seccomp.MakeCondition(2, seccomp.CompareMaskedEqual, low32, opt)
			if err != nil {
				return nil, fmt.Errorf("seccomp: multicast filter: %w", err)
			}
			if err := f.AddRuleConditional(call, act, []seccomp.ScmpCondition{level, name}); err != nil {
				return nil, fmt.Errorf("seccomp: multicast filter: setsockopt(%d, %d): %w", g.level, opt, err)
			}
		}
	}
	ok = true
	return f, nil
}
