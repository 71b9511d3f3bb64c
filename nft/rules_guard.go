package nft

import (
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Rules that close the holes an outside attack found (issue 11): spoofed
// sources, loopback destinations that leave the pod, and the agent's
// traffic to local services. Each function builds one rule; the comment on
// every expression is its `nft --debug=netlink` line.

// spoofedSourceDrops is `fib saddr type != local log ... drop`: an agent
// packet whose source is not an address of this pod (IP_FREEBIND,
// IPV6_FREEBIND need no privilege) is dropped before anything answers it.
// Without it the DNS proxy and the transparent listener reply to the forged
// source: a reflection channel to any host. Drop, not reject: a reject's
// ICMP error would go to the forged address too.
//
// In the output hook fib looks the source up as a destination without an
// interface (nft_fib4/6 with no iif/oif flag), which yields RTN_LOCAL for
// exactly the addresses of this namespace, 127.0.0.0/8 and ::1 included.
func spoofedSourceDrops(logGroup uint16) []expr.Any {
	return withLog([]expr.Any{
		// [ fib saddr type => reg 1 ]
		&expr.Fib{Register: unix.NFT_REG_1, FlagSADDR: true, ResultADDRTYPE: true},
		// [ cmp neq reg 1 0x00000002 ] (RTN_LOCAL)
		&expr.Cmp{Op: expr.CmpOpNeq, Register: unix.NFT_REG_1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}, logGroup, ReasonSpoofedSource,
		// [ immediate reg 0 drop ]
		&expr.Verdict{Kind: expr.VerdictDrop})
}

// localDest is `fib daddr type local`: a destination on this host — on
// loopback or one of the pod's own addresses.
func localDest() []expr.Any {
	return []expr.Any{
		// [ fib daddr type => reg 1 ]
		&expr.Fib{Register: unix.NFT_REG_1, FlagDADDR: true, ResultADDRTYPE: true},
		// [ cmp eq reg 1 0x00000002 ] (RTN_LOCAL)
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

// l4proto is `meta l4proto PROTO`.
func l4proto(p byte) []expr.Any {
	return []expr.Any{
		// [ meta load l4proto => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 PROTO ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{p}},
	}
}

// portInSet is `th dport|sport @SET`: the transport header's port at
// offset (0 source, 2 destination) is an element of the named set.
func portInSet(offset uint32, set string) []expr.Any {
	return []expr.Any{
		// [ payload load 2b @ transport header + OFFSET => reg 1 ]
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2},
		// [ lookup reg 1 set SET ]
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: set},
	}
}

// ctReply is `ct direction reply`: the packet answers a connection a peer
// opened.
func ctReply() []expr.Any {
	return []expr.Any{
		// [ ct load direction => reg 1 ]
		&expr.Ct{Key: expr.CtKeyDIRECTION, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 0x00000001 ] (IP_CT_DIR_REPLY)
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{ipCtDirReply}},
	}
}

// acceptVerdict is the `accept` verdict as one expression.
func acceptVerdict() *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictAccept} }

// supervisorPortsAccept is `fib daddr type local tcp dport
// @supervisor_ports accept` (nat chain): the supervisor's own ports meant
// for the agent (health, DNS proxy) are reached directly, not through the
// proxy.
func supervisorPortsAccept() []expr.Any {
	return join(localDest(), l4proto(unix.IPPROTO_TCP), portInSet(2, SetSupervisorPorts), []expr.Any{acceptVerdict()})
}

// localTCPRedirectedAccepts is `meta l4proto tcp fib daddr type local ct
// status dnat accept` (filter chain): TCP the nat chain redirected to the
// proxy (or to the DNS proxy). Whether the packet really stays on this host
// is checked in postrouting, where the output device is known (see
// loopbackLeavesDrops). A packet that skipped NAT (untracked) has no
// conntrack status and falls through to the reset: never straight to a
// local listener.
func localTCPRedirectedAccepts() []expr.Any {
	return join(l4proto(unix.IPPROTO_TCP), localDest(), []expr.Any{
		// [ ct load status => reg 1 ]
		&expr.Ct{Key: expr.CtKeySTATUS, Register: unix.NFT_REG_1},
		// [ bitwise reg 1 = ( reg 1 & 0x00000020 ) ^ 0x00000000 ] (IPS_DST_NAT)
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: []byte{0, 0, 0, 0}},
		// [ cmp neq reg 1 0x00000000 ]
		&expr.Cmp{Op: expr.CmpOpNeq, Register: unix.NFT_REG_1, Data: []byte{0, 0, 0, 0}},
		acceptVerdict(),
	})
}

// ipsDstNAT is IPS_DST_NAT from the kernel's conntrack headers: a
// destination NAT (redirect included) applies to the connection.
const ipsDstNAT = 1 << 5

// supervisorPortsFilterAccepts is `fib daddr type local tcp dport
// @supervisor_ports accept` (filter chain): the agent's direct connections
// to the health and DNS ports, which the nat chain lets through.
func supervisorPortsFilterAccepts() []expr.Any {
	return join(localDest(), l4proto(unix.IPPROTO_TCP), portInSet(2, SetSupervisorPorts), []expr.Any{acceptVerdict()})
}

// proxyPortAccepts is `fib daddr type local tcp dport PROXY accept`: a
// connection straight to the proxy's own port, which the redirect maps onto
// itself (an identity mapping sets no NAT status). The engine denies it as
// a loop, with its audit line.
func proxyPortAccepts(port uint16) []expr.Any {
	return join(localDest(), l4proto(unix.IPPROTO_TCP), []expr.Any{
		// [ payload load 2b @ transport header + 2 => reg 1 ]
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		// [ cmp eq reg 1 PORT ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: binaryutil.BigEndian.PutUint16(port)},
		acceptVerdict(),
	})
}

// localTCPRepliesAccept is `meta l4proto tcp ct direction reply fib daddr
// type local accept`: a TCP server the agent runs answering a local client
// (the proxy splicing a connection to the agent's own listener).
func localTCPRepliesAccept() []expr.Any {
	return join(l4proto(unix.IPPROTO_TCP), ctReply(), localDest(), []expr.Any{acceptVerdict()})
}

// localUDPPortsAccept is `meta l4proto udp fib daddr type local udp dport
// @local_udp_ports accept`: the DNS proxy's port and the declared
// allowed_local_ports. Any other UDP listener on this host — Docker's
// embedded DNS on 127.0.0.11, a sidecar — is closed to the agent.
func localUDPPortsAccept() []expr.Any {
	return join(l4proto(unix.IPPROTO_UDP), localDest(), portInSet(2, SetLocalUDPPorts), []expr.Any{acceptVerdict()})
}

// localUDPRepliesAccept is `meta l4proto udp ct direction reply fib daddr
// type local accept`: a UDP service the agent runs answering a local
// client that asked it first.
func localUDPRepliesAccept() []expr.Any {
	return join(l4proto(unix.IPPROTO_UDP), ctReply(), localDest(), []expr.Any{acceptVerdict()})
}

// localICMPAccepts is `meta l4proto PROTO fib daddr type local accept`:
// ping to this host. The kernel answers it; nothing is relayed.
func localICMPAccepts(p byte) []expr.Any {
	return join(l4proto(p), localDest(), []expr.Any{acceptVerdict()})
}

// localRejects is `fib daddr type local log ... reject`: any other agent
// packet to a local address (UDP to an undeclared port, SCTP, UDP-Lite).
func localRejects(logGroup uint16) []expr.Any {
	return withLog(localDest(), logGroup, ReasonLocalPort, adminProhibited())
}

// inboundAccepts is `meta l4proto tcp ct direction reply tcp sport
// @inbound_ports accept`: the agent's half of connections a peer outside
// the pod opened to a declared inbound port.
func inboundAccepts() []expr.Any {
	return join(l4proto(unix.IPPROTO_TCP), ctReply(), portInSet(0, SetInboundPorts), []expr.Any{acceptVerdict()})
}

// inboundDrops is `meta l4proto tcp ct direction reply counter name
// inbound_dropped drop`: the agent's SYN-ACKs (and anything after) for a
// connection to an undeclared port. The peer never gets a connection; the
// named counter feeds a metric.
func inboundDrops() []expr.Any {
	return join(l4proto(unix.IPPROTO_TCP), ctReply(), []expr.Any{
		// [ objref type 1 name inbound_dropped ]
		&expr.Objref{Type: unix.NFT_OBJECT_COUNTER, Name: CounterInboundDropped},
		// [ immediate reg 0 drop ]
		&expr.Verdict{Kind: expr.VerdictDrop},
	})
}

// outputIsLoopbackAccepts is `oif "lo" accept` (postrouting): in
// postrouting the output device is the one the packet really leaves by.
func outputIsLoopbackAccepts() []expr.Any {
	return []expr.Any{
		// [ meta load oif => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyOIF, Register: unix.NFT_REG_1},
		// [ cmp eq reg 1 0x00000001 ] (lo is ifindex 1 in every namespace)
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: binaryutil.NativeEndian.PutUint32(loopbackIfindex)},
		acceptVerdict(),
	}
}

// loopbackIfindex is the loopback device's index: the kernel creates lo
// first in every network namespace.
const loopbackIfindex = 1

// loopbackLeavesDrops is `ip daddr 127.0.0.0/8 log ... drop` (or `ip6
// daddr ::1`) in postrouting, after the oif "lo" accept: a socket bound to
// the pod's interface (SO_BINDTODEVICE, unprivileged since Linux 5.7)
// sends loopback destinations out of the pod — and a redirect to the
// proxies, rerouted with that binding, would follow them.
func loopbackLeavesDrops(v6 bool, logGroup uint16) []expr.Any {
	match := loopbackV4()
	if v6 {
		match = loopbackV6()
	}
	return withLog(match, logGroup, ReasonLoopbackLeaves, &expr.Verdict{Kind: expr.VerdictDrop})
}
