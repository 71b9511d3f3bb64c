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

// fastSets returns the sets the fast-path rules name. Element timeouts come
// from DNS TTLs; the alive element's from the heartbeat.
func fastSets(table *nftables.Table) []*nftables.Set {
	v4 := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	v6 := nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService)
	return []*nftables.Set{
		{Table: table, Name: SetTLS4, KeyType: v4, Concatenation: true, HasTimeout: true},
		{Table: table, Name: SetTLS6, KeyType: v6, Concatenation: true, HasTimeout: true},
		{Table: table, Name: SetOpen4, KeyType: v4, Concatenation: true, HasTimeout: true},
		{Table: table, Name: SetOpen6, KeyType: v6, Concatenation: true, HasTimeout: true},
		{Table: table, Name: SetAlive, KeyType: nftables.TypeInetProto, HasTimeout: true},
	}
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
//	tcp flags & (fin|syn|rst|ack) == syn meta l4proto @fast_alive tcp option fastopen missing … ip daddr . tcp dport @fast_tls4 ct mark set pending accept   (and ip6)
//	tcp flags & (fin|syn|rst|ack) == syn meta l4proto @fast_alive ip daddr . tcp dport @fast_open4 ct mark set allowed accept   (and ip6)
//	meta mark propose-allow ct mark pending ct mark set allowed
//	meta mark propose-deny ct mark pending ct mark set denied
//	ct mark allowed accept
//	ct mark denied reject with tcp reset
//	ct mark pending meta l4proto @fast_alive queue num N
//	ct mark pending reject with tcp reset
func fastFilterRules(fp FastPath) [][]expr.Any {
	return [][]expr.Any{
		join(synOnly(), aliveOnly(), noFastOpen(), daddrPortIn(unix.NFPROTO_IPV4, SetTLS4), setCtMark(CtPending), accept()),
		join(synOnly(), aliveOnly(), noFastOpen(), daddrPortIn(unix.NFPROTO_IPV6, SetTLS6), setCtMark(CtPending), accept()),
		join(synOnly(), aliveOnly(), daddrPortIn(unix.NFPROTO_IPV4, SetOpen4), setCtMark(CtAllowed), accept()),
		join(synOnly(), aliveOnly(), daddrPortIn(unix.NFPROTO_IPV6, SetOpen6), setCtMark(CtAllowed), accept()),
		join(metaMarkIs(MarkProposeAllow), ctMarkIs(CtPending), setCtMark(CtAllowed)),
		join(metaMarkIs(MarkProposeDeny), ctMarkIs(CtPending), setCtMark(CtDenied)),
		join(ctMarkIs(CtAllowed), accept()),
		join(ctMarkIs(CtDenied), []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}),
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
// otherwise leave by the base chain's accept policy, unjudged.
//
//	ct mark pending jump agent_filter
//	ct mark allowed jump agent_filter
//	ct mark denied jump agent_filter
func fastOwnerRules() [][]expr.Any {
	var out [][]expr.Any
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
