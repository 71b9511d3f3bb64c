package kverdict

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// TCP flags (RFC 9293 §3.1).
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
)

// IPv6 extension headers the parser walks past (RFC 8200 §4). A fragment
// header ends parsing: a TCP segment the kernel fragments itself is not
// one the agent's socket sends on the output hook.
const (
	ip6HopByHop = 0
	ip6Routing  = 43
	ip6DestOpts = 60
)

// flowKey names one TCP connection by its original-direction 4-tuple.
type flowKey struct {
	src, dst netip.AddrPort
}

// segment is what the worker needs from one queued TCP packet.
type segment struct {
	key     flowKey
	seq     uint32
	ack     uint32 // the server's next sequence number, as the client has seen it
	flags   uint8
	payload []byte // aliases the packet
}

var errNotTCP = errors.New("not a parseable TCP packet")

// parseSegment reads an IPv4 or IPv6 packet carrying TCP. With GSO the
// packet may be larger than the MTU; the IP length field then describes
// the whole super-packet or is zero (BIG TCP), so the captured length
// bounds the payload.
func parseSegment(b []byte) (segment, error) {
	if len(b) < 1 {
		return segment{}, errNotTCP
	}
	var s segment
	var tcp []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return s, errNotTCP
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl || b[9] != 6 {
			return s, errNotTCP
		}
		if frag := binary.BigEndian.Uint16(b[6:8]); frag&0x3fff != 0 {
			return s, errNotTCP // a fragment (MF set or an offset)
		}
		end := len(b)
		if tot := int(binary.BigEndian.Uint16(b[2:4])); tot >= ihl && tot < end {
			end = tot
		}
		src, _ := netip.AddrFromSlice(b[12:16])
		dst, _ := netip.AddrFromSlice(b[16:20])
		s.key.src, s.key.dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
		tcp = b[ihl:end]
	case 6:
		if len(b) < 40 {
			return s, errNotTCP
		}
		src, _ := netip.AddrFromSlice(b[8:24])
		dst, _ := netip.AddrFromSlice(b[24:40])
		s.key.src, s.key.dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
		end := len(b)
		if pl := int(binary.BigEndian.Uint16(b[4:6])); pl > 0 && 40+pl < end {
			end = 40 + pl
		}
		next, off := b[6], 40
		for next == ip6HopByHop || next == ip6Routing || next == ip6DestOpts {
			if off+8 > end {
				return s, errNotTCP
			}
			next, off = b[off], off+8+int(b[off+1])*8
		}
		if next != 6 || off > end {
			return s, errNotTCP
		}
		tcp = b[off:end]
	default:
		return s, errNotTCP
	}
	if len(tcp) < 20 {
		return s, errNotTCP
	}
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || doff > len(tcp) {
		return s, errNotTCP
	}
	s.key.src = netip.AddrPortFrom(s.key.src.Addr(), binary.BigEndian.Uint16(tcp[0:2]))
	s.key.dst = netip.AddrPortFrom(s.key.dst.Addr(), binary.BigEndian.Uint16(tcp[2:4]))
	s.seq = binary.BigEndian.Uint32(tcp[4:8])
	s.ack = binary.BigEndian.Uint32(tcp[8:12])
	s.flags = tcp[13]
	s.payload = tcp[doff:]
	return s, nil
}
