package kverdict

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/nft"
)

// ctMsg builds a conntrack event as ctnetlink sends it: the original
// tuple, then (when non-zero) the mark, then (when non-zero) the TCP state.
func ctMsg(typ uint8, mark uint32, state uint8) []byte {
	ip := join(attr(ctaIPv4Src, []byte{198, 51, 100, 2}), attr(ctaIPv4Dst, []byte{198, 51, 100, 1}))
	proto := join(attr(ctaProtoNum, []byte{unix.IPPROTO_TCP}),
		attr(ctaProtoSrc, binary.BigEndian.AppendUint16(nil, 40000)), attr(ctaProtoDst, binary.BigEndian.AppendUint16(nil, 443)))
	attrs := [][]byte{attr(ctaTupleOrig|nlaFNested, join(attr(ctaTupleIP|nlaFNested, ip), attr(ctaTupleProto|nlaFNested, proto)))}
	if state != 0 {
		tcp := attr(ctaProtoinfoTCP|nlaFNested, join(attr(ctaProtoinfoTCPState, []byte{state}), attr(2, []byte{7})))
		attrs = append(attrs, attr(ctaProtoinfo|nlaFNested, tcp))
	}
	if mark != 0 {
		attrs = append(attrs, attr(ctaMark, binary.BigEndian.AppendUint32(nil, mark)))
	}
	msg := nlmsg(nfnlSubsysCtnetlink<<8|uint16(typ), 0, 0, 0, attrs...)
	msg[16] = unix.AF_INET
	return msg
}

// TestCtEventFilterKeepsOnlyFastPathEnds runs the filter in the kernel, on
// a datagram socket pair (the program only reads the message bytes), over
// messages built as ctnetlink builds them.
func TestCtEventFilterKeepsOnlyFastPathEnds(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if err := attachCtEventFilter(fds[1]); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fds[1], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	const established = 3
	for _, c := range []struct {
		name string
		msg  []byte
		keep bool
	}{
		{"allowed flow at TIME_WAIT", ctMsg(ipctnlMsgCtNew, nft.CtAllowed, tcpCtTimeWait), true},
		{"allowed flow at CLOSE", ctMsg(ipctnlMsgCtNew, nft.CtAllowed, tcpCtClose), true},
		{"pending flow at CLOSE", ctMsg(ipctnlMsgCtNew, nft.CtPending, tcpCtClose), true},
		{"allowed flow destroyed, no state in the message", ctMsg(ipctnlMsgCtDelete, nft.CtAllowed, 0), true},
		{"denied flow destroyed, no state in the message", ctMsg(ipctnlMsgCtDelete, nft.CtDenied, 0), true},
		{"allowed flow destroyed while established (a flush)", ctMsg(ipctnlMsgCtDelete, nft.CtAllowed, established), true},
		{"allowed flow destroyed after TIME_WAIT (its line is written)", ctMsg(ipctnlMsgCtDelete, nft.CtAllowed, tcpCtTimeWait), false},
		{"allowed flow destroyed after CLOSE (its line is written)", ctMsg(ipctnlMsgCtDelete, nft.CtAllowed, tcpCtClose), false},
		{"allowed flow established", ctMsg(ipctnlMsgCtNew, nft.CtAllowed, established), false},
		{"allowed flow, update without state (a mark change)", ctMsg(ipctnlMsgCtNew, nft.CtAllowed, 0), false},
		{"unmarked flow at TIME_WAIT", ctMsg(ipctnlMsgCtNew, 0, tcpCtTimeWait), false},
		{"unmarked flow destroyed", ctMsg(ipctnlMsgCtDelete, 0, 0), false},
		{"another owner's mark at TIME_WAIT", ctMsg(ipctnlMsgCtNew, 0x4000, tcpCtTimeWait), false},
		{"another owner's mark destroyed", ctMsg(ipctnlMsgCtDelete, 0x46524800, 0), false},
	} {
		if _, err := unix.Write(fds[0], c.msg); err != nil {
			t.Fatalf("%s: send: %v", c.name, err)
		}
		buf := make([]byte, 4096)
		n, err := unix.Read(fds[1], buf)
		for errors.Is(err, unix.EINTR) { // the runtime's preemption signal
			n, err = unix.Read(fds[1], buf)
		}
		got := err == nil
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			t.Fatalf("%s: recv: %v", c.name, err)
		}
		if got != c.keep {
			t.Errorf("%s: kept %v, want %v", c.name, got, c.keep)
		}
		if got {
			if e, ok := parseCtMsg(binary.NativeEndian.Uint16(buf[4:6]), buf[nlmsgHdr:n]); !ok || e.key.dst.Port() != 443 {
				t.Errorf("%s: the kept message does not parse: %+v %v", c.name, e, ok)
			}
		}
	}
}

func TestEndedFlowsForgetsOldestAndByAge(t *testing.T) {
	e := newEndedFlows()
	t0 := time.Unix(1000, 0)
	for i := range uint32(maxEnded + 10) {
		e.add(i+1, t0)
	}
	if e.seen(1) || !e.seen(maxEnded+10) || len(e.ids) > maxEnded {
		t.Fatalf("bound not kept: %d remembered, seen(1)=%v", len(e.ids), e.seen(1))
	}
	e.add(999999, t0.Add(endedMemory+time.Second))
	if len(e.ids) != 1 || !e.seen(999999) {
		t.Fatalf("entries older than %v kept: %d", endedMemory, len(e.ids))
	}
}

func TestRecordsBoundAndKey(t *testing.T) {
	r := newRecords()
	key := func(i int) flowKey {
		return flowKey{src: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.2"), uint16(i%60000+1)),
			dst: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(i >> 16), byte(i >> 8)}), 443)}
	}
	for i := range maxRecords + 100 {
		r.put(key(i), record{state: recAllowed, sni: "x.test"})
	}
	if len(r.m) > maxRecords {
		t.Fatalf("%d records kept, bound %d", len(r.m), maxRecords)
	}
	last := key(maxRecords + 99)
	if rec, ok := r.take(last); !ok || rec.sni != "x.test" {
		t.Fatalf("the newest record is gone: %+v %v", rec, ok)
	}
	if _, ok := r.take(last); ok {
		t.Fatal("a taken record is still there")
	}
	v6 := flowKey{src: netip.MustParseAddrPort("[2001:db8::2]:40000"), dst: netip.MustParseAddrPort("[2001:db8::1]:443")}
	if keyOf(v6) == keyOf(key(1)) || keyOf(v6) != keyOf(v6) {
		t.Fatal("record keys do not tell flows apart")
	}
}
