package nft

import (
	"encoding/binary"
	"net/netip"
	"strconv"

	"golang.org/x/sys/unix"
)

// LoggedPacket is what the audit line of a kernel denial says about the
// packet: its reason (the rule's log prefix), protocol and addresses.
type LoggedPacket struct {
	Reason           string
	Proto            string // "udp", "icmp", "ipv6-icmp", "igmp", "sctp", … or the protocol number
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16 // 0 for protocols without ports
	ICMPType         uint8  // ICMP/ICMPv6 type; 0 otherwise
}

// protoNames are the names of the protocols the audit line spells out.
var protoNames = map[uint8]string{
	unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp", unix.IPPROTO_UDPLITE: "udplite",
	unix.IPPROTO_SCTP: "sctp", unix.IPPROTO_DCCP: "dccp", unix.IPPROTO_ICMP: "icmp",
	unix.IPPROTO_ICMPV6: "ipv6-icmp", unix.IPPROTO_IGMP: "igmp",
}

// hasPorts: the first four bytes of the transport header are the ports.
func hasPorts(p uint8) bool {
	switch p {
	case unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_UDPLITE, unix.IPPROTO_SCTP, unix.IPPROTO_DCCP:
		return true
	}
	return false
}

// maxExtHeaders bounds the IPv6 extension-header walk.
const maxExtHeaders = 8

// parsePacket decodes the network and transport headers of a logged
// packet. family is the netfilter family (NFPROTO_IPV4 / NFPROTO_IPV6).
// A truncated transport header leaves the ports zero; a truncated or
// unknown network header is not a packet (false).
func parsePacket(family uint8, b []byte) (LoggedPacket, bool) {
	var p LoggedPacket
	var proto uint8
	var th []byte
	switch {
	case family == unix.NFPROTO_IPV4 && len(b) >= 20 && b[0]>>4 == 4:
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || ihl > len(b) {
			return p, false
		}
		proto = b[9]
		p.Src, _ = netip.AddrFromSlice(b[12:16])
		p.Dst, _ = netip.AddrFromSlice(b[16:20])
		th = b[ihl:]
	case family == unix.NFPROTO_IPV6 && len(b) >= 40 && b[0]>>4 == 6:
		p.Src, _ = netip.AddrFromSlice(b[8:24])
		p.Dst, _ = netip.AddrFromSlice(b[24:40])
		proto, th = skipExtHeaders(b[6], b[40:])
	default:
		return p, false
	}
	p.Proto = protoNames[proto]
	if p.Proto == "" {
		p.Proto = strconv.Itoa(int(proto))
	}
	switch {
	case hasPorts(proto) && len(th) >= 4:
		p.SrcPort, p.DstPort = binary.BigEndian.Uint16(th), binary.BigEndian.Uint16(th[2:])
	case (proto == unix.IPPROTO_ICMP || proto == unix.IPPROTO_ICMPV6) && len(th) >= 1:
		p.ICMPType = th[0]
	}
	return p, true
}

// skipExtHeaders follows IPv6 extension headers (hop-by-hop, routing,
// destination options, fragment) to the transport protocol.
func skipExtHeaders(next uint8, b []byte) (uint8, []byte) {
	for range maxExtHeaders {
		switch next {
		case unix.IPPROTO_HOPOPTS, unix.IPPROTO_ROUTING, unix.IPPROTO_DSTOPTS:
			if len(b) < 2 || 8+int(b[1])*8 > len(b) {
				return next, nil
			}
			next, b = b[0], b[8+int(b[1])*8:]
		case unix.IPPROTO_FRAGMENT:
			if len(b) < 8 {
				return next, nil
			}
			next, b = b[0], b[8:]
		default:
			return next, b
		}
	}
	return next, nil
}
