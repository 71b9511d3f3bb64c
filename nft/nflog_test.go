package nft

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Real headers, as the kernel copies them to NFLOG.
var (
	// IPv4 UDP 198.51.100.2:40000 → 198.51.100.3:9999.
	udp4Packet = []byte{
		0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0, 198, 51, 100, 2, 198, 51, 100, 3,
		0x9c, 0x40, 0x27, 0x0f, 0, 12, 0, 0, 'e', 's', 'c', '-',
	}
	// IPv6 hop-by-hop (router alert) + ICMPv6 MLDv2 report, fe80::2 → ff02::16.
	mld6Packet = append(append([]byte{
		0x60, 0, 0, 0, 0, 36, 0, 1,
		0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
		0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16,
		58, 0, 5, 2, 0, 0, 1, 0, // hop-by-hop: next ICMPv6, router alert, padding
	}, 143, 0, 0, 0, 0, 0, 0, 1), make([]byte, 20)...)
)

func TestParsePacket(t *testing.T) {
	p, ok := parsePacket(unix.NFPROTO_IPV4, udp4Packet)
	if !ok || p.Proto != "udp" || p.Src != netip.MustParseAddr("198.51.100.2") || p.Dst != netip.MustParseAddr("198.51.100.3") ||
		p.SrcPort != 40000 || p.DstPort != 9999 {
		t.Errorf("udp4: %+v %v", p, ok)
	}
	p, ok = parsePacket(unix.NFPROTO_IPV6, mld6Packet)
	if !ok || p.Proto != "ipv6-icmp" || p.ICMPType != 143 || p.Dst != netip.MustParseAddr("ff02::16") {
		t.Errorf("mld6: %+v %v", p, ok)
	}
	for name, tc := range map[string]struct {
		family uint8
		b      []byte
	}{
		"empty":          {unix.NFPROTO_IPV4, nil},
		"v6 as v4":       {unix.NFPROTO_IPV4, mld6Packet},
		"short v6":       {unix.NFPROTO_IPV6, mld6Packet[:30]},
		"bad ihl":        {unix.NFPROTO_IPV4, append([]byte{0x4f}, udp4Packet[1:]...)},
		"unknown family": {7, udp4Packet},
	} {
		if _, ok := parsePacket(tc.family, tc.b); ok {
			t.Errorf("%s: parsed", name)
		}
	}
	// A truncated transport header keeps the addresses, without ports.
	if p, ok := parsePacket(unix.NFPROTO_IPV4, udp4Packet[:22]); !ok || p.DstPort != 0 || p.Proto != "udp" {
		t.Errorf("truncated udp: %+v %v", p, ok)
	}
}

// logMessage builds an NFULNL_MSG_PACKET body as the kernel sends it.
func logMessage(family uint8, prefix string, payload []byte) []byte {
	b := []byte{family, 0, 0x46, 0x47}
	b = append(b, attr(1, []byte{0x08, 0x00, 3, 0})...) // packet header: hook output
	b = append(b, attr(nfulaPrefix, append([]byte(prefix), 0))...)
	return append(b, attr(nfulaPayload, payload)...)
}

func TestParseLogMessage(t *testing.T) {
	p, ok := parseLogMessage(logMessage(unix.NFPROTO_IPV4, ReasonUDPNotAllowed, udp4Packet))
	if !ok || p.Reason != ReasonUDPNotAllowed || p.DstPort != 9999 {
		t.Errorf("%+v %v", p, ok)
	}
	if _, ok := parseLogMessage(logMessage(unix.NFPROTO_IPV4, "", udp4Packet)); ok {
		t.Error("a message without a prefix (not one of our rules) was accepted")
	}
	bad := logMessage(unix.NFPROTO_IPV4, ReasonUDPNotAllowed, udp4Packet)
	binary.NativeEndian.PutUint16(bad[4:], 0xffff) // attribute longer than the message
	if _, ok := parseLogMessage(bad); ok {
		t.Error("a message with a bad attribute length was accepted")
	}
}

func FuzzParseLogMessage(f *testing.F) {
	f.Add(logMessage(unix.NFPROTO_IPV4, ReasonUDPNotAllowed, udp4Packet))
	f.Add(logMessage(unix.NFPROTO_IPV6, ReasonMulticastReport, mld6Packet))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseLogMessage(b)
		for range netlinkMessages(b) {
		}
	})
}

func TestFlowGate(t *testing.T) {
	g := NewFlowGate()
	now := time.Unix(1000, 0)
	p := LoggedPacket{Reason: ReasonUDPNotAllowed, Proto: "udp", Dst: netip.MustParseAddr("198.51.100.3"), DstPort: 443}
	if g.Admit(p, now) != GateLog {
		t.Fatal("first packet of a flow not logged")
	}
	if g.Admit(p, now.Add(time.Second)) != GateDuplicate {
		t.Error("second packet of the flow logged again")
	}
	if g.Admit(p, now.Add(flowWindow+time.Second)) != GateLog {
		t.Error("the flow after the window is not logged")
	}
	// A flood of distinct flows: the burst, then the rate.
	logged, limited := 0, 0
	for i := range 1000 {
		q := p
		q.SrcPort = uint16(i + 1)
		switch g.Admit(q, now.Add(flowWindow+time.Second)) {
		case GateLog:
			logged++
		case GateRateLimited:
			limited++
		}
	}
	if logged > lineBurst || limited == 0 {
		t.Errorf("flood: %d logged, %d rate-limited; want at most %d logged", logged, limited, lineBurst)
	}
}

// TestLogReaderSeesAgentRejects installs the ruleset with a log group and
// reads the group: the agent's rejected UDP and ICMP come out as packets
// with the rule's reason.
func TestLogReaderSeesAgentRejects(t *testing.T) {
	w := newWorld(t)
	var r *LogReader
	if err := w.pair.Agent.Do(func() (err error) {
		r, err = OpenLog(DefaultLogGroup)
		return err
	}); err != nil {
		t.Fatalf("open log (is nfnetlink_log available?): %v", err)
	}
	got := make(chan LoggedPacket, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- r.Serve(ctx, func(p LoggedPacket) { got <- p }, func() { t.Error("lost log messages") })
	}()
	t.Cleanup(func() { cancel(); <-done })

	w.helperRun(t, asAgent, "udp", "198.51.100.1:9999", 0)
	_, _ = w.run(t, asAgent, nil, "ping", "-c1", "-W1", "2001:db8::1")
	want := map[string]bool{"udp_not_allowed udp 198.51.100.1:9999": false, "icmp_not_allowed ipv6-icmp [2001:db8::1]:0": false}
	deadline := time.After(eventWait)
	for missing := len(want); missing > 0; {
		select {
		case p := <-got:
			k := p.Reason + " " + p.Proto + " " + netip.AddrPortFrom(p.Dst, p.DstPort).String()
			if seen, ok := want[k]; ok && !seen {
				want[k] = true
				missing--
			}
		case <-deadline:
			t.Fatalf("log lines missing: %v", want)
		}
	}
}

func TestProbeLogBusyGroup(t *testing.T) {
	pair := newWorld(t).pair
	if err := pair.Agent.Do(func() error {
		r, err := OpenLog(DefaultLogGroup + 1)
		if err != nil {
			return err
		}
		defer r.Close()
		if err := ProbeLog(DefaultLogGroup + 1); err == nil {
			t.Error("ProbeLog succeeded on a group another socket holds")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
