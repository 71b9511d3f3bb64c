package nft

import (
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// FastPath turns on the kernel verdict path (see kverdict): agent SYNs to
// an (address, port) in a fast set go straight out instead of to the proxy,
// and the first payload of flows that need a name check goes to NFQUEUE.
type FastPath struct {
	// QueueNum is the NFQUEUE number the verdict worker binds.
	QueueNum uint16
	// NativeQueue selects the nft `queue` statement (CONFIG_NFT_QUEUE);
	// otherwise the xt NFQUEUE target runs through nft_compat.
	NativeQueue bool
}

// Names of the fast sets. *_tls sets hold destinations whose flows need
// their first payload checked (ct mark pending at the SYN); *_open sets
// hold destinations the policy allows by address and port alone (ct mark
// allowed at the SYN). alive holds one element, refreshed by the verdict
// worker's heartbeat: when it times out, no new flow takes the fast path
// and pending flows are reset instead of queued to a worker that is gone.
const (
	SetTLS4  = "fast_tls4"
	SetTLS6  = "fast_tls6"
	SetOpen4 = "fast_open4"
	SetOpen6 = "fast_open6"
	SetAlive = "fast_alive"
	// SetBare4 and SetBare6 are constant: the (TCP data offset, IP length)
	// pairs of a segment that carries no payload (see bareAck).
	SetBare4 = "fast_bare4"
	SetBare6 = "fast_bare6"
)

// Conntrack marks of the fast path, and packet marks a queue verdict
// proposes (NF_REPEAT with a mark: this kernel cannot set a ct mark from a
// verdict). All share the supervisor's "FRG" prefix so they cannot collide
// with the small bit masks Kubernetes, Docker and Cilium use.
const (
	CtPending uint32 = 0x46524701 // SYN seen, first payload not yet judged
	CtAllowed uint32 = 0x46524702 // the kernel forwards every packet
	CtDenied  uint32 = 0x46524703 // every packet is answered with a reset

	MarkProposeAllow uint32 = 0x46524711 // verdict: set ct allowed if still pending
	MarkProposeDeny  uint32 = 0x46524712 // verdict: set ct denied if still pending
	MarkRepeat       uint32 = 0x46524713 // a straggler sent back once: follow the ct mark
)

// TCP option kinds of TCP Fast Open (RFC 7413 and its experimental form).
// A SYN that carries one may carry data, which must be inspected: such SYNs
// never take the fast path (the proxy inspects them instead).
const (
	tcpOptFastOpen    = 34
	tcpOptExperiment2 = 254
)

// fastSet is a set of the fast path with the elements it is created with.
type fastSet struct {
	set   *nftables.Set
	elems []nftables.SetElement
}

// fastSets returns the sets the fast-path rules name. Element timeouts come
// from DNS TTLs; the alive element's from the heartbeat; the bare sets are
// constant.
func fastSets(table *nftables.Table) []fastSet {
	v4 := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	v6 := nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService)
	// A byte (the data offset) and two (the length), each padded to a
	// register word.
	bare := nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	return []fastSet{
		{set: &nftables.Set{Table: table, Name: SetTLS4, KeyType: v4, Concatenation: true, HasTimeout: true}},
		{set: &nftables.Set{Table: table, Name: SetTLS6, KeyType: v6, Concatenation: true, HasTimeout: true}},
		{set: &nftables.Set{Table: table, Name: SetOpen4, KeyType: v4, Concatenation: true, HasTimeout: true}},
		{set: &nftables.Set{Table: table, Name: SetOpen6, KeyType: v6, Concatenation: true, HasTimeout: true}},
		{set: &nftables.Set{Table: table, Name: SetAlive, KeyType: nftables.TypeInetProto, HasTimeout: true}},
		{set: &nftables.Set{Table: table, Name: SetBare4, KeyType: bare, Concatenation: true, Constant: true}, elems: bareElems(20)},
		{set: &nftables.Set{Table: table, Name: SetBare6, KeyType: bare, Concatenation: true, Constant: true}, elems: bareElems(0)},
	}
}

// bareElems are the (data offset byte, length) keys of payload-less TCP
// segments for every data offset: the length is ipHeader plus the TCP
// header. IPv4's length field counts its own header (ihl 5 is matched
// apart), IPv6's payload length does not.
func bareElems(ipHeader int) []nftables.SetElement {
	var out []nftables.SetElement
	for doff := 5; doff <= 15; doff++ {
		n := ipHeader + 4*doff
		out = append(out, nftables.SetElement{Key: []byte{byte(doff << 4), 0, 0, 0, byte(n >> 8), byte(n), 0, 0}})
	}
	return out
}

// fastNATRules go in agent_nat before the proxy redirect: a SYN to a fast
// destination gets no redirect (the filter chain then marks it).
//
//	meta l4proto tcp meta l4proto @fast_alive tcp option fastopen missing … ip daddr . tcp dport @fast_tls4 accept
//	… ip6 daddr . tcp dport @fast_tls6 accept
//	meta l4proto tcp meta l4proto @fast_alive ip daddr . tcp dport @fast_open4 accept
//	… ip6 daddr . tcp dport @fast_open6 accept
func fastNATRules() [][]expr.Any {
	return [][]expr.Any{
		join(tcpAlive(), noFastOpen(), daddrPortIn(unix.NFPROTO_IPV4, SetTLS4), accept()),
		join(tcpAlive(), noFastOpen(), daddrPortIn(unix.NFPROTO_IPV6, SetTLS6), accept()),
		join(tcpAlive(), daddrPortIn(unix.NFPROTO_IPV4, SetOpen4), accept()),
		join(tcpAlive(), daddrPortIn(unix.NFPROTO_IPV6, SetOpen6), accept()),
	}
}

// fastFilterRules go in agent_filter after the reply accept and before the
// reset of TCP that escaped the redirect. The SYN rules come first and set
// the ct mark explicitly, so a reused 5-tuple never inherits an old verdict.
//
//	tcp flags & (fin|syn|rst|ack) == syn meta l4proto @fast_alive tcp option fastopen missing … ip daddr . tcp dport @fast_tls4 ct mark set pending ct event set protoinfo,destroy accept   (and ip6)
//	tcp flags & (fin|syn|rst|ack) == syn meta l4proto @fast_alive ip daddr . tcp dport @fast_open4 ct mark set allowed ct event set protoinfo,destroy accept   (and ip6)
//	meta mark propose-allow ct mark pending ct mark set allowed
//	meta mark propose-deny ct mark pending ct mark set denied
//	ct mark allowed accept
//	ct mark denied reject with tcp reset
//	ct mark pending <a bare ACK, v4> accept      (and v6: see bareAck)
//	ct mark pending meta l4proto @fast_alive queue num N
//	ct mark pending reject with tcp reset
func fastFilterRules(fp FastPath) [][]expr.Any {
	return [][]expr.Any{
		join(synOnly(), aliveOnly(), noFastOpen(), daddrPortIn(unix.NFPROTO_IPV4, SetTLS4), setCtMark(CtPending), setCtEvents(auditEvents), accept()),
		join(synOnly(), aliveOnly(), noFastOpen(), daddrPortIn(unix.NFPROTO_IPV6, SetTLS6), setCtMark(CtPending), setCtEvents(auditEvents), accept()),
		join(synOnly(), aliveOnly(), daddrPortIn(unix.NFPROTO_IPV4, SetOpen4), setCtMark(CtAllowed), setCtEvents(auditEvents), accept()),
		join(synOnly(), aliveOnly(), daddrPortIn(unix.NFPROTO_IPV6, SetOpen6), setCtMark(CtAllowed), setCtEvents(auditEvents), accept()),
		join(metaMarkIs(MarkProposeAllow), ctMarkIs(CtPending), setCtMark(CtAllowed)),
		join(metaMarkIs(MarkProposeDeny), ctMarkIs(CtPending), setCtMark(CtDenied)),
		join(ctMarkIs(CtAllowed), accept()),
		join(ctMarkIs(CtDenied), []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}),
		join(ctMarkIs(CtPending), bareAck(unix.NFPROTO_IPV4), accept()),
		join(ctMarkIs(CtPending), bareAck(unix.NFPROTO_IPV6), accept()),
		join(ctMarkIs(CtPending), aliveOnly(), queueTo(fp)),
		join(ctMarkIs(CtPending), []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}),
	}
}

func join(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func accept() []expr.Any {
	// [ immediate reg 0 accept ]
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}
}

// tcpAlive is `meta l4proto tcp meta l4proto @fast_alive`.
func tcpAlive() []expr.Any {
	return []expr.Any{
		// [ meta load l4proto => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 0x00000006 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{unix.IPPROTO_TCP}},
		// [ lookup reg 1 set fast_alive ]
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: SetAlive},
	}
}

// aliveOnly is `meta l4proto @fast_alive` (the rules using it already
// matched TCP).
func aliveOnly() []expr.Any {
	return []expr.Any{
		// [ meta load l4proto => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1},
		// [ lookup reg 1 set fast_alive ]
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: SetAlive},
	}
}

// synOnly is `meta l4proto tcp tcp flags & (fin|syn|rst|ack) == syn`.
func synOnly() []expr.Any {
	return []expr.Any{
		// [ meta load l4proto => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 0x00000006 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{unix.IPPROTO_TCP}},
		// [ payload load 1b @ transport header + 13 => reg 1 ]
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		// [ bitwise reg 1 = ( reg 1 & 0x00000017 ) ^ 0x00000000 ]
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 1, Mask: []byte{0x17}, Xor: []byte{0}},
		// [ cmp eq reg 1 0x00000002 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{0x02}},
	}
}

// bareAck matches a TCP segment that provably carries no payload and only
// acknowledges (no SYN, FIN, RST, PSH or URG): the handshake's last ACK of
// every pending flow, which would otherwise cost a trip through the queue
// (a wake of the worker, a verdict) before the first payload even leaves.
// Anything it cannot prove bare — IPv4 options, IPv6 extension headers —
// still goes to the queue.
//
//	meta l4proto tcp meta nfproto ipv4 @nh,0,8 0x45 tcp flags & (fin|syn|rst|psh|ack|urg) == ack
//	    (@th,96,8 & 0xf0) . ip length @fast_bare4
//	meta l4proto tcp meta nfproto ipv6 ip6 nexthdr tcp tcp flags & (…) == ack
//	    (@th,96,8 & 0xf0) . ip6 length @fast_bare6
func bareAck(family byte) []expr.Any {
	out := []expr.Any{
		// [ meta load l4proto => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 0x00000006 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{unix.IPPROTO_TCP}},
		// [ meta load nfproto => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 ipv4|ipv6 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{family}},
	}
	set, lenOffset := SetBare4, uint32(2)
	if family == unix.NFPROTO_IPV4 {
		out = append(out,
			// [ payload load 1b @ network header + 0 => reg 1 ]
			&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseNetworkHeader, Offset: 0, Len: 1},
			// [ cmp eq reg 1 0x45 ]: version 4, no options
			&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{0x45}})
	} else {
		set, lenOffset = SetBare6, 4
		out = append(out,
			// [ payload load 1b @ network header + 6 => reg 1 ]
			&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseNetworkHeader, Offset: 6, Len: 1},
			// [ cmp eq reg 1 0x06 ]: TCP right after the fixed header
			&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{unix.IPPROTO_TCP}})
	}
	return append(out,
		// [ payload load 1b @ transport header + 13 => reg 1 ]
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		// [ bitwise reg 1 = ( reg 1 & 0x3f ) ^ 0x00 ]
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 1, Mask: []byte{0x3f}, Xor: []byte{0}},
		// [ cmp eq reg 1 0x10 ]: ACK alone
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{0x10}},
		// [ payload load 1b @ transport header + 12 => reg 1 ]
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseTransportHeader, Offset: 12, Len: 1},
		// [ bitwise reg 1 = ( reg 1 & 0xf0 ) ^ 0x00 ]: the data offset
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 1, Mask: []byte{0xf0}, Xor: []byte{0}},
		// [ payload load 2b @ network header + 2|4 => reg 9 ]
		&expr.Payload{DestRegister: unix.NFT_REG32_01, Base: expr.PayloadBaseNetworkHeader, Offset: lenOffset, Len: 2},
		// [ lookup reg 1 set fast_bare4|6 ]
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: set},
	)
}

// noFastOpen is `tcp option 34 missing tcp option 254 missing`.
func noFastOpen() []expr.Any {
	var out []expr.Any
	for _, kind := range []uint8{tcpOptFastOpen, tcpOptExperiment2} {
		out = append(out,
			// [ exthdr load tcpopt 1b @ KIND + 0 present => reg 1 ]
			&expr.Exthdr{Op: expr.ExthdrOpTcpopt, Type: kind, Len: 1, Flags: unix.NFT_EXTHDR_F_PRESENT, DestRegister: unix.NFT_REG_1},
			// [ cmp eq reg 1 0x00000000 ]
			&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{0}},
		)
	}
	return out
}

// daddrPortIn is `ip daddr . tcp dport @SET` (or ip6).
func daddrPortIn(family byte, set string) []expr.Any {
	offset, size := uint32(16), uint32(4)
	portReg := uint32(unix.NFT_REG32_01)
	if family == unix.NFPROTO_IPV6 {
		offset, size, portReg = 24, 16, unix.NFT_REG_2
	}
	return []expr.Any{
		// [ meta load nfproto => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 ipv4|ipv6 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{family}},
		// [ payload load 4b|16b @ network header + 16|24 => reg 1 ]
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size},
		// [ payload load 2b @ transport header + 2 => reg 9|2 ]
		&expr.Payload{DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		// [ lookup reg 1 set SET ]
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: set},
	}
}

// setCtMark is `ct mark set MARK`.
func setCtMark(mark uint32) []expr.Any {
	return []expr.Any{
		// [ immediate reg 1 MARK ]
		&expr.Immediate{Register: unix.NFT_REG_1, Data: binaryutil.NativeEndian.PutUint32(mark)},
		// [ ct set mark with reg 1 ]
		&expr.Ct{Key: expr.CtKeyMARK, Register: unix.NFT_REG_1, SourceRegister: true},
	}
}

// Conntrack event bits (enum ip_conntrack_events). The kernel path's
// auditor reads a flow's end from its state changes (protoinfo) and its
// destruction; every other event of the namespace's flows would be built
// by the kernel only to be dropped by the auditor's socket filter.
const (
	ctEventDestroy   = 1 << 2
	ctEventProtoinfo = 1 << 5
	auditEvents      = ctEventDestroy | ctEventProtoinfo
)

// setCtEvents is `ct event set MASK`: the events this connection's entry
// reports.
func setCtEvents(mask uint32) []expr.Any {
	return []expr.Any{
		// [ immediate reg 1 MASK ]
		&expr.Immediate{Register: unix.NFT_REG_1, Data: binaryutil.NativeEndian.PutUint32(mask)},
		// [ ct set event with reg 1 ]
		&expr.Ct{Key: expr.CtKeyEVENTMASK, Register: unix.NFT_REG_1, SourceRegister: true},
	}
}

// ctStateNew is `ct state new`.
func ctStateNew() []expr.Any {
	return []expr.Any{
		// [ ct load state => reg 1 ]
		&expr.Ct{Key: expr.CtKeySTATE, Register: unix.NFT_REG_1},
		// [ bitwise reg 1 = ( reg 1 & 0x00000008 ) ^ 0x00000000 ]
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: binaryutil.NativeEndian.PutUint32(0)},
		// [ cmp neq reg 1 0x00000000 ]
		&expr.Cmp{Op: expr.CmpOpNeq, Register: unix.NFT_REG_1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// ctMarkIs is `ct mark MARK`.
func ctMarkIs(mark uint32) []expr.Any {
	return []expr.Any{
		// [ ct load mark => reg 1 ]
		&expr.Ct{Key: expr.CtKeyMARK, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 MARK ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: binaryutil.NativeEndian.PutUint32(mark)},
	}
}

// metaMarkIs is `meta mark MARK`.
func metaMarkIs(mark uint32) []expr.Any {
	return []expr.Any{
		// [ meta load mark => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyMARK, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 MARK ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: binaryutil.NativeEndian.PutUint32(mark)},
	}
}

// queueTo is `queue num N` without bypass: with no worker bound, the
// kernel drops the packet (fail closed). On kernels without nft_queue it
// is the xt NFQUEUE target (revision 1: queue number, queues total).
func queueTo(fp FastPath) []expr.Any {
	if fp.NativeQueue {
		// [ queue num N ]
		return []expr.Any{&expr.Queue{Num: fp.QueueNum, Total: 1}}
	}
	info := make(xt.Unknown, 8) // struct xt_NFQ_info_v1, XT_ALIGNed
	copy(info[0:2], binaryutil.NativeEndian.PutUint16(fp.QueueNum))
	copy(info[2:4], binaryutil.NativeEndian.PutUint16(1))
	// [ target name NFQUEUE rev 1 ]
	return []expr.Any{&expr.Target{Name: "NFQUEUE", Rev: 1, Info: &info}}
}

// withFastPath splices the fast-path rules into the ruleset when cfg asks
// for them: in agent_nat before the proxy redirect, in agent_filter before
// the reset of TCP that escaped the redirect.
func withFastPath(cfg Config, rs []chainRules) []chainRules {
	if cfg.FastPath == nil {
		return rs
	}
	for i := range rs {
		switch rs[i].chain.Name {
		case ChainFilterOutput:
			// After the supervisor's mark, before the owner matches.
			rs[i].rules = insertBefore(rs[i].rules, isOwnerJump, fastOwnerRules())
		case ChainAgentNAT:
			rs[i].rules = insertBefore(rs[i].rules, isTCPRedirect, fastNATRules())
		case ChainAgentFilter:
			rs[i].rules = insertBefore(rs[i].rules, isTCPReset, fastFilterRules(*cfg.FastPath))
		}
	}
	return rs
}

// insertBefore puts extra before the first rule that at reports, or at the
// end when none does.
func insertBefore(rules [][]expr.Any, at func([]expr.Any) bool, extra [][]expr.Any) [][]expr.Any {
	i := len(rules)
	for j, r := range rules {
		if at(r) {
			i = j
			break
		}
	}
	out := make([][]expr.Any, 0, len(rules)+len(extra))
	out = append(out, rules[:i]...)
	out = append(out, extra...)
	return append(out, rules[i:]...)
}

// fastOwnerRules send every packet of a fast-path flow to the agent's
// filter chain by its ct mark, not by its socket's owner: a socket the
// agent closed (an orphan still sending, or one closed while its packets
// were held in the queue) has no owner to match, and its packets would
// otherwise leave by the base chain's accept policy, unjudged. First, the
// namespace's new flows report no conntrack events: the fast path's SYN
// rules turn on the two its auditor reads, for its own flows only, and
// nothing else in a pod listens (a listener that did would see only
// fast-path flows).
//
//	ct state new ct event set 0
//	ct mark pending jump agent_filter
//	ct mark allowed jump agent_filter
//	ct mark denied jump agent_filter
func fastOwnerRules() [][]expr.Any {
	out := [][]expr.Any{join(ctStateNew(), setCtEvents(0))}
	for _, m := range []uint32{CtPending, CtAllowed, CtDenied} {
		out = append(out, join(ctMarkIs(m), []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: ChainAgentFilter}}))
	}
	return out
}

func isOwnerJump(r []expr.Any) bool {
	m, ok := r[0].(*expr.Meta)
	return ok && (m.Key == expr.MetaKeySKUID || m.Key == expr.MetaKeySKGID)
}

func isTCPRedirect(r []expr.Any) bool {
	_, ok := r[len(r)-1].(*expr.Redir)
	return ok && len(r) == 4 // meta l4proto tcp redirect (not the DNS redirects)
}

func isTCPReset(r []expr.Any) bool {
	rej, ok := r[len(r)-1].(*expr.Reject)
	return ok && rej.Type == unix.NFT_REJECT_TCP_RST
}
