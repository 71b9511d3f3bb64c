package kverdict

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/forge/forge-supervisor/stages"
)

// tcpPacket builds an IP packet carrying one TCP segment, as the output
// hook queues it (checksums are not checked by the parser).
func tcpPacket(src, dst netip.AddrPort, seq uint32, flags byte, payload []byte, ext6 []byte) []byte {
	tcp := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12], tcp[13] = 5<<4, flags
	tcp = append(tcp, payload...)
	if src.Addr().Is4() {
		ip := make([]byte, 20)
		ip[0], ip[9] = 0x45, 6
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		return append(ip, tcp...)
	}
	ip := make([]byte, 40)
	ip[0], ip[6] = 0x60, 6
	if ext6 != nil {
		ip[6] = ip6DestOpts
	}
	binary.BigEndian.PutUint16(ip[4:], uint16(len(ext6)+len(tcp)))
	s, d := src.Addr().As16(), dst.Addr().As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	return append(append(ip, ext6...), tcp...)
}

func TestParseSegment(t *testing.T) {
	src4, dst4 := netip.MustParseAddrPort("198.51.100.2:40000"), netip.MustParseAddrPort("198.51.100.1:443")
	src6, dst6 := netip.MustParseAddrPort("[2001:db8::2]:40000"), netip.MustParseAddrPort("[2001:db8::1]:443")
	destOpts := []byte{6, 0, 1, 4, 0, 0, 0, 0} // next TCP, 8 bytes, PadN
	for _, tc := range []struct {
		name     string
		pkt      []byte
		src, dst netip.AddrPort
	}{
		{"v4", tcpPacket(src4, dst4, 7, tcpACK|tcpPSH, []byte("hello"), nil), src4, dst4},
		{"v6", tcpPacket(src6, dst6, 7, tcpACK|tcpPSH, []byte("hello"), nil), src6, dst6},
		{"v6 with a destination options header", tcpPacket(src6, dst6, 7, tcpACK|tcpPSH, []byte("hello"), destOpts), src6, dst6},
	} {
		s, err := parseSegment(tc.pkt)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if s.key.src != tc.src || s.key.dst != tc.dst || s.seq != 7 || s.flags != tcpACK|tcpPSH || string(s.payload) != "hello" {
			t.Errorf("%s: %+v", tc.name, s)
		}
	}
	// IPv4 padding past the total length is not payload.
	padded := append(tcpPacket(src4, dst4, 1, tcpACK, nil, nil), 0, 0, 0, 0, 0, 0)
	if s, err := parseSegment(padded); err != nil || len(s.payload) != 0 {
		t.Errorf("padded ACK: %v, %d payload bytes", err, len(s.payload))
	}
	for name, pkt := range map[string][]byte{
		"empty":     nil,
		"udp":       func() []byte { p := tcpPacket(src4, dst4, 1, 0, nil, nil); p[9] = 17; return p }(),
		"fragment":  func() []byte { p := tcpPacket(src4, dst4, 1, 0, nil, nil); p[6] = 0x20; return p }(),
		"short tcp": tcpPacket(src4, dst4, 1, 0, nil, nil)[:30],
		"bad doff":  func() []byte { p := tcpPacket(src4, dst4, 1, 0, nil, nil); p[32] = 15 << 4; return p }(),
		"version 5": {0x50, 0, 0, 0},
	} {
		if _, err := parseSegment(pkt); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func FuzzParseSegment(f *testing.F) {
	src, dst := netip.MustParseAddrPort("198.51.100.2:40000"), netip.MustParseAddrPort("[2001:db8::1]:443")
	f.Add(tcpPacket(src, netip.MustParseAddrPort("198.51.100.1:443"), 1, tcpACK, []byte("x"), nil))
	f.Add(tcpPacket(netip.MustParseAddrPort("[2001:db8::2]:1"), dst, 1, tcpACK, []byte("x"), []byte{6, 0, 1, 4, 0, 0, 0, 0}))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSegment(b)
		if err == nil && len(s.payload) > len(b) {
			t.Fatalf("payload longer than the packet")
		}
	})
}

// packetMsg builds the body of an NFQNL_MSG_PACKET (after nfgenmsg).
func packetMsg(id, mark uint32, payload []byte) []byte {
	hdr := binary.BigEndian.AppendUint32(nil, id)
	hdr = append(hdr, 0x08, 0x00, 3) // hw_protocol, hook
	return join(attr(nfqaPacketHdr, hdr), attr(nfqaMark, binary.BigEndian.AppendUint32(nil, mark)), attr(nfqaPayload, payload))
}

func TestParsePacketMsg(t *testing.T) {
	p, ok := parsePacketMsg(packetMsg(42, 0x46524713, []byte("ip packet")))
	if !ok || p.id != 42 || p.mark != 0x46524713 || string(p.data) != "ip packet" {
		t.Fatalf("%+v %v", p, ok)
	}
	if _, ok := parsePacketMsg(attr(nfqaPayload, []byte("no id"))); ok {
		t.Error("a packet without NFQA_PACKET_HDR parsed")
	}
}

func TestQueueRecvFramesSeveralMessages(t *testing.T) {
	// Two packets in one datagram, the last one unpadded: recv must not
	// read past the buffer.
	m1 := nlmsg(nfnlSubsysQueue<<8|nfqnlMsgPacket, 0, 1, 0, packetMsg(1, 0, []byte("a")))
	m2 := nlmsg(nfnlSubsysQueue<<8|nfqnlMsgPacket, 0, 2, 0, packetMsg(2, 0, []byte("bcd")))
	var ids []uint32
	forEachNlmsg(append(m1, m2[:len(m2)-1]...), func(typ uint16, body []byte) {
		if p, ok := parsePacketMsg(body[nfgenHdr:]); ok {
			ids = append(ids, p.id)
		}
	})
	if len(ids) != 1 || ids[0] != 1 {
		t.Errorf("ids %v", ids)
	}
}

func FuzzParseNetlink(f *testing.F) {
	f.Add(nlmsg(nfnlSubsysQueue<<8|nfqnlMsgPacket, 0, 1, 0, packetMsg(1, 2, []byte("x"))))
	f.Add(nlmsg(nfnlSubsysCtnetlink<<8|ipctnlMsgCtDelete, 0, 1, 0, attr(ctaMark, []byte{0x46, 0x52, 0x47, 0x02})))
	f.Fuzz(func(t *testing.T, b []byte) {
		forEachNlmsg(b, func(typ uint16, body []byte) {
			if len(body) >= nfgenHdr {
				parsePacketMsg(body[nfgenHdr:])
			}
			parseCtMsg(typ, body)
		})
	})
}

func TestParseCtMsg(t *testing.T) {
	ipAttrs := join(attr(ctaIPv4Src, []byte{198, 51, 100, 2}), attr(ctaIPv4Dst, []byte{198, 51, 100, 1}))
	proto := join(attr(ctaProtoNum, []byte{6}), attr(ctaProtoSrc, []byte{0x9c, 0x40}), attr(ctaProtoDst, []byte{1, 0xbb}))
	tuple := attr(ctaTupleOrig|nlaFNested, join(attr(ctaTupleIP|nlaFNested, ipAttrs), attr(ctaTupleProto|nlaFNested, proto)))
	counters := func(typ uint16, n uint64) []byte {
		return attr(typ|nlaFNested, join(attr(1, binary.BigEndian.AppendUint64(nil, 3)), attr(ctaCountersBytes, binary.BigEndian.AppendUint64(nil, n))))
	}
	state := attr(ctaProtoinfo|nlaFNested, attr(ctaProtoinfoTCP|nlaFNested, attr(ctaProtoinfoTCPState, []byte{tcpCtTimeWait})))
	body := append([]byte{2, 0, 0, 0}, join(tuple, state, attr(ctaMark, []byte{0x46, 0x52, 0x47, 0x02}),
		counters(ctaCountersOrig, 1234), counters(ctaCountersReply, 5678))...)
	e, ok := parseCtMsg(nfnlSubsysCtnetlink<<8|ipctnlMsgCtNew, body)
	if !ok {
		t.Fatal("not parsed")
	}
	want := flowKey{src: netip.MustParseAddrPort("198.51.100.2:40000"), dst: netip.MustParseAddrPort("198.51.100.1:443")}
	if e.key != want || e.mark != 0x46524702 || e.state != tcpCtTimeWait || e.up != 1234 || e.down != 5678 || e.destroyed {
		t.Errorf("%+v", e)
	}
	if e, ok := parseCtMsg(nfnlSubsysCtnetlink<<8|ipctnlMsgCtDelete, body); !ok || !e.destroyed {
		t.Errorf("destroy: %+v %v", e, ok)
	}
}

func TestFlowReassembly(t *testing.T) {
	f := &flow{base: 1000}
	if k := f.add(1000, []byte("abc")); k != 3 {
		t.Fatalf("first segment: %d", k)
	}
	if k := f.add(1006, []byte("ghi")); k != 0 {
		t.Fatalf("segment after a gap added %d", k)
	}
	if k := f.add(1001, []byte("bcdef")); k != 6 || string(f.data) != "abcdefghi" {
		t.Fatalf("filling the gap: %d %q", k, f.data)
	}
	if k := f.add(1000, []byte("abcdefghi")); k != 0 || string(f.data) != "abcdefghi" {
		t.Fatalf("retransmit: %d %q", k, f.data)
	}
	if k := f.add(999, []byte("zz")); k != 0 {
		t.Fatalf("bytes before base: %d", k)
	}
	if k := f.add(1000+maxHeld+10, []byte("far")); k != 0 || len(f.ooo) != 0 {
		t.Fatalf("far ahead: %d, %d kept", k, len(f.ooo))
	}
}

func TestResetChecksum(t *testing.T) {
	src, dst := netip.MustParseAddr("198.51.100.2").AsSlice(), netip.MustParseAddr("198.51.100.1").AsSlice()
	seg := make([]byte, 20)
	seg[12], seg[13] = 5<<4, tcpRST
	binary.BigEndian.PutUint16(seg[16:], tcpChecksum(src, dst, seg))
	// A segment with its checksum in place sums to zero.
	if c := tcpChecksum(src, dst, seg); c != 0 {
		t.Errorf("checksum does not verify: %#x", c)
	}
	if !bytes.Equal(seg[:12], make([]byte, 12)) {
		t.Error("header changed")
	}
}

// TestReasonsMatchProxy: a flow is explained with the same words whichever
// path judged it.
func TestReasonsMatchProxy(t *testing.T) {
	for mine, proxy := range map[string]string{
		ReasonMalformedTLS: stages.ReasonMalformedTLS, ReasonMalformedHTTP: stages.ReasonMalformedHTTP,
		ReasonHeaderTooLarge: stages.ReasonHeaderTooLarge, ReasonClassifyTimout: stages.ReasonClassifyTimeout,
		ReasonClientClosed: stages.ReasonClientClosed, ReasonClassifyError: stages.ReasonClassifyError,
		ReasonShutdown: stages.ReasonShutdown,
	} {
		if mine != proxy {
			t.Errorf("kernel path says %q where the proxy says %q", mine, proxy)
		}
	}
}
