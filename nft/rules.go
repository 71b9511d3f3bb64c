package nft

import (
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Each function below builds one rule and is named for what it does; the
// comment on every expression is the line `nft --debug=netlink` prints for
// it. All rules use register 1 only.

// markReturns is `meta mark MARK return`: the supervisor's own (marked)
// sockets leave the chain before any owner match.
func markReturns(mark uint32) []expr.Any {
	return markVerdict(mark, expr.VerdictReturn)
}

// markAccepts is `meta mark MARK accept`.
func markAccepts(mark uint32) []expr.Any {
	return markVerdict(mark, expr.VerdictAccept)
}

func markVerdict(mark uint32, kind expr.VerdictKind) []expr.Any {
	return []expr.Any{
		// [ meta load mark => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyMARK, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 MARK ] (host byte order)
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: binaryutil.NativeEndian.PutUint32(mark)},
		// [ immediate reg 0 return|accept ]
		&expr.Verdict{Kind: kind},
	}
}

// skuidJumps is `meta skuid UID jump CHAIN`: packets from sockets the agent
// user owns go to the agent chain. Packets without a full socket (kernel
// generated, time-wait) have no owner and never match.
func skuidJumps(uid uint32, chain string) []expr.Any {
	return []expr.Any{
		// [ meta load skuid => reg 1 ]
		&expr.Meta{Key: expr.MetaKeySKUID, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 UID ] (host byte order)
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: binaryutil.NativeEndian.PutUint32(uid)},
		// [ immediate reg 0 jump -> CHAIN ]
		&expr.Verdict{Kind: expr.VerdictJump, Chain: chain},
	}
}

// skgidJumps is `meta skgid GID jump CHAIN`: the same by the socket's
// group, for agent processes that run under another UID but the agent's
// group.
func skgidJumps(gid uint32, chain string) []expr.Any {
	return []expr.Any{
		// [ meta load skgid => reg 1 ]
		&expr.Meta{Key: expr.MetaKeySKGID, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 GID ] (host byte order)
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: binaryutil.NativeEndian.PutUint32(gid)},
		// [ immediate reg 0 jump -> CHAIN ]
		&expr.Verdict{Kind: expr.VerdictJump, Chain: chain},
	}
}

// dnsRedirects is `udp dport 53 redirect to :PORT` (or tcp): every DNS
// query, to any address including Docker's 127.0.0.11, goes to the DNS
// proxy on loopback.
func dnsRedirects(l4proto byte, port uint16) []expr.Any {
	return []expr.Any{
		// [ meta load l4proto => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 udp|tcp ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{l4proto}},
		// [ payload load 2b @ transport header + 2 => reg 1 ] (destination port)
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		// [ cmp eq reg 1 0x00003500 ] (53, network byte order)
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: binaryutil.BigEndian.PutUint16(53)},
		// [ immediate reg 1 PORT ] (network byte order)
		&expr.Immediate{Register: unix.NFT_REG_1, Data: binaryutil.BigEndian.PutUint16(port)},
		// [ redir proto_min reg 1 proto_max reg 1 flags 0x2 ] (to 127.0.0.1 or ::1 on output)
		redirectToRegister1(),
	}
}

// loopbackV4 is `ip daddr 127.0.0.0/8`.
func loopbackV4() []expr.Any {
	return []expr.Any{
		// [ meta load nfproto => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 0x00000002 ] (ipv4)
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{unix.NFPROTO_IPV4}},
		// [ payload load 4b @ network header + 16 => reg 1 ] (destination address)
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		// [ bitwise reg 1 = ( reg 1 & 0x000000ff ) ^ 0x00000000 ] (/8)
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 4,
			Mask: []byte{0xff, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		// [ cmp eq reg 1 0x0000007f ] (127.0.0.0)
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{127, 0, 0, 0}},
	}
}

// loopbackV6 is `ip6 daddr ::1`.
func loopbackV6() []expr.Any {
	return []expr.Any{
		// [ meta load nfproto => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 0x0000000a ] (ipv6)
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{unix.NFPROTO_IPV6}},
		// [ payload load 16b @ network header + 24 => reg 1 ] (destination address)
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
		// [ cmp eq reg 1 0x00000000 0x00000000 0x00000000 0x01000000 ] (::1)
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{15: 1}},
	}
}

// tcpRedirects is `meta l4proto tcp redirect to :PORT`: every other TCP
// connection, IPv4 and IPv6, goes to the transparent proxy, which reads the
// original destination back with SO_ORIGINAL_DST.
func tcpRedirects(port uint16) []expr.Any {
	return []expr.Any{
		// [ meta load l4proto => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 0x00000006 ] (tcp)
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{unix.IPPROTO_TCP}},
		// [ immediate reg 1 PORT ] (network byte order)
		&expr.Immediate{Register: unix.NFT_REG_1, Data: binaryutil.BigEndian.PutUint16(port)},
		// [ redir proto_min reg 1 proto_max reg 1 flags 0x2 ]
		redirectToRegister1(),
	}
}

// redirectToRegister1 redirects to the local port held in register 1. It
// spells out what the kernel stores (max port = min port, "port given"
// flag, as `nft` sends it) so a read-back compares equal.
func redirectToRegister1() *expr.Redir {
	return &expr.Redir{
		RegisterProtoMin: unix.NFT_REG_1,
		RegisterProtoMax: unix.NFT_REG_1,
		Flags:            unix.NF_NAT_RANGE_PROTO_SPECIFIED,
	}
}

// ipCtDirReply is IP_CT_DIR_REPLY from the kernel's conntrack headers.
const ipCtDirReply = 1

// tcpResets is `meta l4proto tcp reject with tcp reset`: agent TCP that
// reaches the filter chain in the original direction and not to loopback
// escaped the redirect (an untracked packet, or a nat chain ahead of ours
// that bound a mapping first). It is refused, not let through: the
// redirect failing must never mean the agent goes out directly.
func tcpResets(logGroup uint16) []expr.Any {
	// [ reject type 1 code 0 ] (tcp reset)
	return withLog(l4proto(unix.IPPROTO_TCP), logGroup, ReasonRedirectMissed, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
}

// l4protoRejects is `meta l4proto PROTO reject with icmpx admin-prohibited`.
// Rejecting rather than dropping makes the sender's send(2) fail at once
// (EPERM) and queues an ICMP error for the socket, so a client (QUIC on 443
// above all) falls back or fails fast instead of waiting out its timeouts.
func l4protoRejects(p byte, logGroup uint16, reason string) []expr.Any {
	// [ reject type 2 code 3 ] (icmpx admin-prohibited)
	return withLog(l4proto(p), logGroup, reason, adminProhibited())
}

// everythingRejects is `reject with icmpx admin-prohibited`: any other L4
// protocol the agent can emit.
func everythingRejects(logGroup uint16) []expr.Any {
	// [ reject type 2 code 3 ]
	return withLog(nil, logGroup, ReasonProtoNotAllowed, adminProhibited())
}

// adminProhibited is the icmpx form of reject, valid in the inet family: the
// kernel answers with ICMP type 3 code 13 for IPv4 and ICMPv6 type 1 code 1
// for IPv6.
func adminProhibited() *expr.Reject {
	return &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}
}
