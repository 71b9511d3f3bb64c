package kverdict

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/nft"
	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
)

// ctnetlink, from linux/netfilter/nfnetlink_conntrack.h.
const (
	nfnlSubsysCtnetlink = 1
	ipctnlMsgCtNew      = 0
	ipctnlMsgCtGet      = 1
	ipctnlMsgCtDelete   = 2

	nfnlgrpCtUpdate  = 2
	nfnlgrpCtDestroy = 3

	ctaTupleOrig     = 1
	ctaProtoinfo     = 4
	ctaMark          = 8
	ctaCountersOrig  = 9
	ctaCountersReply = 10
	ctaID            = 12
	ctaTimestamp     = 20

	ctaTupleIP    = 1
	ctaTupleProto = 2
	ctaIPv4Src    = 1
	ctaIPv4Dst    = 2
	ctaIPv6Src    = 3
	ctaIPv6Dst    = 4
	ctaProtoNum   = 1
	ctaProtoSrc   = 2
	ctaProtoDst   = 3

	ctaProtoinfoTCP      = 1
	ctaProtoinfoTCPState = 1
	ctaCountersBytes     = 2
	ctaTimestampStart    = 1

	tcpCtTimeWait = 7
	tcpCtClose    = 8

	nlaFNested = 0x8000
)

// ctEvent is what the auditor reads from one conntrack message.
type ctEvent struct {
	key       flowKey
	id        uint32 // the conntrack entry's id: a reused tuple gets a new one
	mark      uint32
	state     uint8 // TCP conntrack state, 0 when absent
	up, down  int64 // bytes (IP layer, headers included) when accounting is on
	start     time.Time
	destroyed bool
}

// auditor writes the one audit line of each allowed kernel-path flow when
// conntrack says it ended: at TIME_WAIT or CLOSE (the counters are final;
// the entry itself lingers 120 s in TIME_WAIT), or at its destruction.
type auditor struct {
	cfg    *Config
	rec    *records
	m      *Metrics
	ended  *endedFlows
	socks  ctSockets
	getBuf []byte // ctGet's answers
}

// enableAccounting turns on conntrack byte counters and timestamps in the
// current network namespace (both are per-namespace sysctls). Where they
// cannot be set, lines carry zero bytes and a duration measured from the
// verdict; the error says why.
func enableAccounting() error {
	var errs []error
	for _, name := range []string{"nf_conntrack_acct", "nf_conntrack_timestamp"} {
		if err := os.WriteFile("/proc/sys/net/netfilter/"+name, []byte("1"), 0); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// ctSockets are the auditor's two netlink sockets: the event
// subscription (filtered, non-blocking: the worker's loop polls it) and
// one for reading an entry's counters.
type ctSockets struct {
	ev, get int
}

// openCtSockets opens them in the calling thread's network namespace.
func openCtSockets(log *zap.Logger) (ctSockets, error) {
	ev, err := ctSocket(1<<(nfnlgrpCtUpdate-1) | 1<<(nfnlgrpCtDestroy-1))
	if err != nil {
		return ctSockets{}, err
	}
	if err := attachCtEventFilter(ev); err != nil {
		// Unfiltered, the auditor reads every flow's events and keeps
		// what it needs: correct, only dearer.
		log.Warn("kverdict_event_filter_unavailable", zap.Error(err))
	}
	get, err := ctSocket(0)
	if err != nil {
		unix.Close(ev)
		return ctSockets{}, err
	}
	return ctSockets{ev: ev, get: get}, nil
}

func (s ctSockets) close() {
	unix.Close(s.ev)
	unix.Close(s.get)
}

// read takes up to max messages the event socket holds, without waiting,
// and says how many it took and whether more may be there. The worker's
// loop calls it when poll says the socket is readable or its batch window
// is over: it runs on the worker's thread, not a goroutine of its own, as
// one poll for both sockets costs less than two threads parked in the
// kernel, and than Go's poller waking a second goroutine for each flow's
// end.
func (a *auditor) read(buf []byte, max int) (got int, more bool, err error) {
	for range max {
		n, _, err := unix.Recvfrom(a.socks.ev, buf, unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return got, false, nil
		case errors.Is(err, unix.ENOBUFS):
			a.m.eventsLost.Inc()
			continue
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return got, false, fmt.Errorf("kverdict: conntrack events: %w", err)
		}
		got++
		forEachNlmsg(buf[:n], func(typ uint16, body []byte) {
			a.m.ctEvents.Inc()
			if e, ok := parseCtMsg(typ, body); ok {
				a.event(e)
			}
		})
	}
	return got, true, nil
}

func (a *auditor) event(e ctEvent) {
	switch e.mark {
	case nft.CtAllowed, nft.CtPending, nft.CtDenied:
	default:
		return // not a fast-path flow
	}
	if !e.destroyed && e.state != tcpCtTimeWait && e.state != tcpCtClose {
		return // still live (the event filter, where it runs, drops these)
	}
	if e.id != 0 && a.ended.seen(e.id) {
		return // this entry's line is written (an id is in every event since Linux 2.6.x; without one there is nothing to tell entries apart by)
	}
	rec, known := a.rec.take(e.key)
	switch {
	case e.mark == nft.CtDenied:
		return // the worker wrote its line
	case known && rec.state == recJudging:
		return // the worker reports it (conntrack saw the close before the worker's verdict)
	case known && rec.state == recDenied:
		return // the worker wrote its line
	}
	if !e.destroyed {
		// Update events carry no counters: read the entry.
		if full, err := ctGet(a.socks.get, e.key, a.getBuf); err == nil && (full.id == e.id || e.id == 0) {
			full.state, full.mark = e.state, e.mark
			e = full
		}
	}
	if e.id != 0 {
		a.ended.add(e.id, time.Now())
	}
	a.write(e, rec, known)
}

// write builds the flow's line from the worker's record (inspected flows)
// or the policy's address-only verdict (flows allowed at the SYN, and
// pending flows whose client never sent a byte).
func (a *auditor) write(e ctEvent, rec record, ok bool) {
	var line obs.Flow
	if ok {
		line = rec.line(e.key)
	} else {
		p := a.cfg.Policy.Load()
		v := p.Decide(context.Background(), policy.Request{IP: e.key.dst.Addr(), Port: e.key.dst.Port()}, cacheOnly{a.cfg.Names})
		allowed, wouldDeny := v.Allow, false
		if !allowed && a.cfg.DryRun {
			allowed, wouldDeny = true, true
		}
		line = obs.Flow{
			Allowed: allowed, WouldDeny: wouldDeny, Proto: "opaque",
			SrcPort: e.key.src.Port(), DstIP: e.key.dst.Addr().String(), DstPort: e.key.dst.Port(),
			Reason: v.Reason, Rule: v.Rule, Source: SourceKernel,
		}
	}
	line.BytesUp, line.BytesDown = e.up, e.down
	switch {
	case !e.start.IsZero():
		line.Duration = time.Since(e.start)
	case rec.started != 0:
		line.Duration = time.Since(time.Unix(0, rec.started))
	}
	a.cfg.Audit.Egress(line)
	a.m.connections.WithLabelValues("kernel", decisionLabel(line.Allowed, line.WouldDeny)).Inc()
}

func ctSocket(groups uint32) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return -1, fmt.Errorf("kverdict: conntrack socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("kverdict: conntrack bind: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, recvBufSize)
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return fd, nil
}

// ctGet reads one conntrack entry by its original tuple, into buf.
func ctGet(fd int, k flowKey, buf []byte) (ctEvent, error) {
	family := byte(unix.AF_INET)
	ipAttrs := [][]byte{}
	if k.src.Addr().Is4() {
		s, d := k.src.Addr().As4(), k.dst.Addr().As4()
		ipAttrs = append(ipAttrs, attr(ctaIPv4Src, s[:]), attr(ctaIPv4Dst, d[:]))
	} else {
		family = unix.AF_INET6
		s, d := k.src.Addr().As16(), k.dst.Addr().As16()
		ipAttrs = append(ipAttrs, attr(ctaIPv6Src, s[:]), attr(ctaIPv6Dst, d[:]))
	}
	proto := [][]byte{
		attr(ctaProtoNum, []byte{unix.IPPROTO_TCP}),
		attr(ctaProtoSrc, binary.BigEndian.AppendUint16(nil, k.src.Port())),
		attr(ctaProtoDst, binary.BigEndian.AppendUint16(nil, k.dst.Port())),
	}
	tuple := attr(ctaTupleOrig|nlaFNested, join(attr(ctaTupleIP|nlaFNested, join(ipAttrs...)), attr(ctaTupleProto|nlaFNested, join(proto...))))
	msg := nlmsg(nfnlSubsysCtnetlink<<8|ipctnlMsgCtGet, unix.NLM_F_REQUEST, 1, 0, tuple)
	msg[16] = family
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return ctEvent{}, err
	}
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return ctEvent{}, err
	}
	var out ctEvent
	found := false
	forEachNlmsg(buf[:n], func(typ uint16, body []byte) {
		if e, ok := parseCtMsg(typ, body); ok {
			out, found = e, true
		}
	})
	if !found {
		return ctEvent{}, errors.New("no entry")
	}
	out.destroyed = false
	return out, nil
}

// join concatenates attributes, padding each to 4 bytes.
func join(attrs ...[]byte) []byte {
	var b []byte
	for _, a := range attrs {
		b = append(b, a...)
		b = append(b, make([]byte, align(len(a), nlaAlign)-len(a))...)
	}
	return b
}

func forEachNlmsg(b []byte, fn func(typ uint16, body []byte)) {
	for len(b) >= nlmsgHdr {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < nlmsgHdr || l > len(b) {
			return
		}
		fn(binary.NativeEndian.Uint16(b[4:6]), b[nlmsgHdr:l])
		b = b[min(len(b), align(l, nlmsgAlign)):]
	}
}

// forEachAttr calls fn for each attribute of b (type without flag bits).
func forEachAttr(b []byte, fn func(typ uint16, v []byte)) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < 4 || l > len(b) {
			return
		}
		fn(binary.NativeEndian.Uint16(b[2:4])&0x3fff, b[4:l])
		b = b[min(len(b), align(l, nlaAlign)):]
	}
}

// parseCtMsg reads a conntrack new/update/destroy message about TCP.
func parseCtMsg(typ uint16, body []byte) (ctEvent, bool) {
	if typ>>8 != nfnlSubsysCtnetlink || len(body) < nfgenHdr {
		return ctEvent{}, false
	}
	var e ctEvent
	switch typ & 0xff {
	case ipctnlMsgCtNew:
	case ipctnlMsgCtDelete:
		e.destroyed = true
	default:
		return ctEvent{}, false
	}
	var srcIP, dstIP netip.Addr
	var sport, dport uint16
	var l4 uint8
	forEachAttr(body[nfgenHdr:], func(t uint16, v []byte) {
		switch t {
		case ctaTupleOrig:
			forEachAttr(v, func(t uint16, v []byte) {
				switch t {
				case ctaTupleIP:
					forEachAttr(v, func(t uint16, v []byte) {
						switch t {
						case ctaIPv4Src, ctaIPv6Src:
							srcIP, _ = netip.AddrFromSlice(v)
						case ctaIPv4Dst, ctaIPv6Dst:
							dstIP, _ = netip.AddrFromSlice(v)
						}
					})
				case ctaTupleProto:
					forEachAttr(v, func(t uint16, v []byte) {
						switch {
						case t == ctaProtoNum && len(v) >= 1:
							l4 = v[0]
						case t == ctaProtoSrc && len(v) >= 2:
							sport = binary.BigEndian.Uint16(v)
						case t == ctaProtoDst && len(v) >= 2:
							dport = binary.BigEndian.Uint16(v)
						}
					})
				}
			})
		case ctaMark:
			if len(v) >= 4 {
				e.mark = binary.BigEndian.Uint32(v)
			}
		case ctaID:
			if len(v) >= 4 {
				e.id = binary.BigEndian.Uint32(v)
			}
		case ctaProtoinfo:
			forEachAttr(v, func(t uint16, v []byte) {
				if t == ctaProtoinfoTCP {
					forEachAttr(v, func(t uint16, v []byte) {
						if t == ctaProtoinfoTCPState && len(v) >= 1 {
							e.state = v[0]
						}
					})
				}
			})
		case ctaCountersOrig, ctaCountersReply:
			forEachAttr(v, func(ct uint16, cv []byte) {
				if ct == ctaCountersBytes && len(cv) >= 8 {
					if t == ctaCountersOrig {
						e.up = int64(binary.BigEndian.Uint64(cv))
					} else {
						e.down = int64(binary.BigEndian.Uint64(cv))
					}
				}
			})
		case ctaTimestamp:
			forEachAttr(v, func(t uint16, v []byte) {
				if t == ctaTimestampStart && len(v) >= 8 {
					if ns := int64(binary.BigEndian.Uint64(v)); ns > 0 {
						e.start = time.Unix(0, ns)
					}
				}
			})
		}
	})
	if l4 != unix.IPPROTO_TCP || !srcIP.IsValid() || !dstIP.IsValid() {
		return ctEvent{}, false
	}
	e.key = flowKey{src: netip.AddrPortFrom(srcIP, sport), dst: netip.AddrPortFrom(dstIP, dport)}
	return e, true
}

// logAccounting says once, at startup, what the audit lines will lack.
func logAccounting(log *zap.Logger, err error) {
	if err != nil {
		log.Warn("kverdict_accounting_unavailable", zap.Error(err),
			zap.String("effect", "kernel-path audit lines carry bytes 0 and a duration measured from the verdict"))
	}
}
