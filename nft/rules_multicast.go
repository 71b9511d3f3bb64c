package nft

import (
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Multicast group reports are a covert channel (issue 11, item 8): a
// process that joins source-specific groups makes the kernel send IGMPv3 /
// MLDv2 reports that carry the groups and sources it chose. The kernel
// sends them from no socket, so no owner match sees them; these rules sit
// in the base chain and apply to every report leaving the pod, unless
// Config.AllowMulticast. The jail's seccomp filter stops the agent's joins
// themselves (jail/multicast.go); these rules are the second wall.
//
// The kernel's own MLD reports for solicited-node groups (ff02::1:ffXX:XXXX,
// which IPv6 neighbour discovery needs on bridges that snoop MLD) pass: an
// MLDv2 report of one or two records, each a solicited-node group without
// sources, and MLDv1 reports/dones addressed to such a group.

// ICMPv6 types of MLD (RFC 2710, RFC 3810).
const (
	mldV1Report = 131
	mldV1Done   = 132
	mldV2Report = 143
)

// solicitedNodePrefix is ff02::1:ff00:0/104.
var solicitedNodePrefix = []byte{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff}

// igmpDrops is `meta l4proto igmp log ... drop`: IPv4 needs no report for
// anything but multicast.
func igmpDrops(logGroup uint16) []expr.Any {
	return withLog(l4proto(unix.IPPROTO_IGMP), logGroup, ReasonMulticastReport, &expr.Verdict{Kind: expr.VerdictDrop})
}

// icmpv6Type is `meta l4proto ipv6-icmp icmpv6 type T`.
func icmpv6Type(t byte) []expr.Any {
	return join(l4proto(unix.IPPROTO_ICMPV6), []expr.Any{
		// [ payload load 1b @ transport header + 0 => reg 1 ]
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		// [ cmp eq reg 1 T ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{t}},
	})
}

// thEquals is `@th,OFFSET*8,LEN*8 == DATA`.
func thEquals(offset uint32, data []byte) []expr.Any {
	return []expr.Any{
		// [ payload load LENb @ transport header + OFFSET => reg 1 ]
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: uint32(len(data))},
		// [ cmp eq reg 1 DATA ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: data},
	}
}

// mldV2Record is one MLDv2 multicast address record at transport offset
// off that names a solicited-node group and carries no aux data and no
// sources: bytes off+1..off+3 (aux len, source count) are zero, the group
// (off+4) starts with ff02::1:ff.
func mldV2Record(off uint32) []expr.Any {
	return join(thEquals(off+1, []byte{0, 0, 0}), thEquals(off+4, solicitedNodePrefix))
}

// mldV2RecordLen is the length of a record with no aux data and no sources.
const mldV2RecordLen = 20

// mldV2SolicitedAccepts is `icmpv6 type 143 @th,48,16 == N <records>
// accept` for N = 1 or 2 solicited-node records. Records start at
// transport offset 8, after type, code, checksum, reserved and the record
// count (offset 6).
func mldV2SolicitedAccepts(records int) []expr.Any {
	r := join(icmpv6Type(mldV2Report), thEquals(6, []byte{0, byte(records)}))
	for i := range records {
		r = join(r, mldV2Record(8+uint32(i)*mldV2RecordLen))
	}
	return append(r, acceptVerdict())
}

// mldV1SolicitedAccepts is `icmpv6 type T ip6 daddr ff02::1:ff00:0/104
// accept`: an MLDv1 message is addressed to its group.
func mldV1SolicitedAccepts(t byte) []expr.Any {
	return join(icmpv6Type(t), []expr.Any{
		// [ payload load 13b @ network header + 24 => reg 1 ]
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: uint32(len(solicitedNodePrefix))},
		// [ cmp eq reg 1 ff02::1:ff ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: solicitedNodePrefix},
		acceptVerdict(),
	})
}

// mldDrops is `icmpv6 type T log ... drop` for the MLD types not accepted
// above.
func mldDrops(t byte, logGroup uint16) []expr.Any {
	return withLog(icmpv6Type(t), logGroup, ReasonMulticastReport, &expr.Verdict{Kind: expr.VerdictDrop})
}

// multicastRules are the base chain's report filters, in order.
func multicastRules(logGroup uint16) [][]expr.Any {
	return [][]expr.Any{
		igmpDrops(logGroup),
		mldV2SolicitedAccepts(1),
		mldV2SolicitedAccepts(2),
		mldV1SolicitedAccepts(mldV1Report),
		mldV1SolicitedAccepts(mldV1Done),
		mldDrops(mldV2Report, logGroup),
		mldDrops(mldV1Report, logGroup),
		mldDrops(mldV1Done, logGroup),
	}
}
