package kverdict

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/conn"
	"github.com/forge/forge-supervisor/nft"
	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
)

// Timing of the worker loop.
const (
	// wakeEvery bounds how long the loop sleeps in recv while a flow is
	// being judged: deadlines and async decisions are looked at this often.
	wakeEvery = 5 * time.Millisecond
	// idleWake is the bound while no flow is being judged: only the
	// heartbeat's evidence of life (stallAfter) and the forgetting of
	// decided flows wait on it. A short bound there would wake an idle
	// supervisor hundreds of times a second, and a blocking read longer
	// than sysmon's 10 ms lets the runtime hand the worker's P to others.
	idleWake = 500 * time.Millisecond
	// activeWindow: after a packet or an event, the loop waits with the
	// raw system call (see poll) this long before it waits as an idle one.
	activeWindow = 200 * time.Millisecond
	// eventBatch: conntrack end events are read at most this often while
	// connections come (see wait); an audit line waits at most this long.
	eventBatch = 10 * time.Millisecond
	// eventsPerTurn bounds the events read between two looks at the
	// queue, so a backlog of ends never holds up a ClientHello's verdict.
	eventsPerTurn = 32
	// strayGrace is how long a decided flow is remembered: packets queued
	// before its verdict landed (stragglers) arrive within it.
	strayGrace = 2 * time.Second
	// maxFlows bounds the flows judged or remembered at once (each holds
	// at most maxHeld bytes); past it new flows are denied, never passed.
	maxFlows = 8192
	// maxAsync bounds decisions waiting for a fresh DNS lookup at once.
	maxAsync = 16
	// maxHeadTimeouts bounds, in classify timeouts, how long a head that
	// keeps making progress may take to complete.
	maxHeadTimeouts = 4
)

// worker owns the queue socket and every flow; one goroutine runs it, on a
// locked OS thread (the socket lives in the thread's network namespace).
type worker struct {
	cfg     *Config
	q       *queue
	rst     *resetter
	rec     *records
	aud     *auditor // reads conntrack's end events between packets
	m       *Metrics
	flows   map[flowKey]*flow // judged now, or decided within strayGrace
	pending map[flowKey]*flow // the undecided ones among them
	grace   []graceEntry      // decided flows in verdict order, to forget after strayGrace
	// flowsPeak is the most flows held since the maps were last made.
	flowsPeak int
	gen       uint64
	beat      *atomic.Int64 // unix nanos of the last loop turn: the heartbeat's evidence of life

	async  chan asyncResult
	wakeFD int       // an eventfd: an async decision that lands wakes the loop
	active time.Time // the last packet or event: the raw wait's window (poll)
	// eventsDue is when conntrack's events are next read (wait).
	eventsDue time.Time
	asyncWG   sync.WaitGroup
	slots     chan struct{}
	sweep     time.Time
}

// graceEntry is one decided flow's place in the forgetting order; gen
// tells it from a later flow on the same tuple.
type graceEntry struct {
	key     flowKey
	gen     uint64
	expires time.Time
}

type asyncResult struct {
	key flowKey
	gen uint64
	j   judgement
}

// run serves the queue until ctx ends, then denies what it still holds.
func (w *worker) run(ctx context.Context) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, 256<<10)
	defer w.asyncWG.Wait()
	evBuf := make([]byte, 1<<16)
	for ctx.Err() == nil {
		w.beat.Store(time.Now().UnixNano())
		queued, ended, err := w.wait()
		if err != nil {
			w.cfg.Log.Error("kverdict_queue_failed", zap.Error(err))
			w.shutdown()
			return err
		}
		// The clock is read after the packets arrive, not before the
		// wait: a flow's deadline runs from its first packet.
		var now time.Time
		if queued {
			if err := w.q.recv(buf, func(p packet) {
				if now.IsZero() {
					now = time.Now()
				}
				w.handle(ctx, p, now)
			}); err != nil {
				w.cfg.Log.Error("kverdict_queue_failed", zap.Error(err))
				w.shutdown()
				return err
			}
		}
		if ended {
			// The verdicts of this turn go first: a flow's end is not
			// worth its packets' wait.
			if err := w.q.flush(); err != nil {
				w.cfg.Log.Warn("kverdict_verdict_failed", zap.Error(err))
			}
			got, more, err := w.aud.read(evBuf, eventsPerTurn)
			if err != nil {
				w.cfg.Log.Error("kverdict_conntrack_failed", zap.Error(err))
				w.shutdown()
				return err
			}
			switch {
			case more:
				// A backlog: read on next turn, after the queue.
			case got > 0:
				// Ends are coming: the next ones wait for the window.
				w.eventsDue = time.Now().Add(eventBatch)
			default:
				// None: the socket is watched again, an idle loop sleeps.
				w.eventsDue = time.Time{}
			}
		}
		w.drainAsync()
		if now.IsZero() {
			now = time.Now()
		}
		if now.Sub(w.sweep) >= wakeEvery {
			w.expire(now)
			w.sweep = now
		}
		if err := w.q.flush(); err != nil {
			w.cfg.Log.Warn("kverdict_verdict_failed", zap.Error(err))
		}
	}
	w.shutdown()
	return nil
}

// wait blocks until the queue or the conntrack event socket is readable,
// or for as long as what the loop waits on allows: short while a flow is
// being judged (deadlines, async decisions), long while none is (only the
// heartbeat's evidence of life and the forgetting of decided flows wait
// on it; a short bound there would wake an idle supervisor hundreds of
// times a second).
func (w *worker) wait() (queued, ended bool, err error) {
	timeout := idleWake
	if len(w.pending) > 0 {
		timeout = wakeEvery
	}
	// Conntrack's end events are not worth a wake of their own while
	// connections come: within eventBatch of the last read they wait, and
	// are read when the window is over, on a turn the queue woke anyway.
	// Past the window the event socket is polled again, so the first end
	// after a quiet spell is read at once.
	now := time.Now()
	watchEvents := !now.Before(w.eventsDue)
	if !watchEvents {
		timeout = min(timeout, w.eventsDue.Sub(now))
	}
	fds := []unix.PollFd{{Fd: int32(w.q.fd), Events: unix.POLLIN}, {Fd: int32(w.wakeFD), Events: unix.POLLIN},
		{Fd: int32(w.aud.socks.ev), Events: unix.POLLIN}}
	if !watchEvents {
		fds = fds[:2]
	}
	if err := w.poll(fds, timeout); err != nil {
		return false, false, err
	}
	if fds[1].Revents&unix.POLLIN != 0 {
		var b [8]byte
		_, _ = unix.Read(w.wakeFD, b[:]) // reset the count; drainAsync takes the results
	}
	// An error condition (a netlink overrun) is read too: recv reports it.
	const ready = unix.POLLIN | unix.POLLERR
	if watchEvents {
		ended = fds[2].Revents&ready != 0
	} else {
		ended = !time.Now().Before(w.eventsDue)
	}
	return fds[0].Revents&ready != 0, ended, nil
}

// shutdown denies every held flow: nothing is let through unjudged.
func (w *worker) shutdown() {
	for _, f := range w.pending {
		w.finish(f, judgement{verdict: policy.Verdict{Reason: ReasonShutdown}}, time.Now())
	}
	_ = w.q.flush()
}

// handle judges one queued packet.
func (w *worker) handle(ctx context.Context, p packet, now time.Time) {
	seg, err := parseSegment(p.data)
	if err != nil {
		// Nothing to judge it by: the connection is denied.
		w.m.unparseable.Inc()
		w.q.verdict(p.id, nfRepeat, nft.MarkProposeDeny)
		return
	}
	f := w.flows[seg.key]
	if ce := w.cfg.Log.Check(zap.DebugLevel, "kverdict_packet"); ce != nil {
		ce.Write(zap.Uint32("id", p.id), zap.Uint32("mark", p.mark), zap.Stringer("src", seg.key.src),
			zap.Uint32("seq", seg.seq), zap.Uint8("flags", seg.flags), zap.Int("len", len(seg.payload)), zap.Bool("known", f != nil))
	}
	if f != nil && f.decided && p.mark == nft.MarkRepeat {
		// A straggler sent back found the connection still pending: the
		// tuple was reused by a new connection after our verdict. Judge it
		// afresh.
		w.forget(seg.key)
		f = nil
	}
	if f != nil && f.decided {
		// Queued before the verdict landed (or the tuple's next
		// connection): send it back through the rules once, so the
		// connection's ct mark decides, not a guess made here.
		w.m.stragglers.Inc()
		w.q.verdict(p.id, nfRepeat, nft.MarkRepeat)
		return
	}
	closing := seg.flags&(tcpFIN|tcpRST) != 0
	if len(seg.payload) == 0 && (!closing || f == nil) {
		// A pure ACK (or a close with nothing ever sent) carries no byte
		// for the server to act on.
		w.m.bare.Inc()
		w.q.verdict(p.id, nfAccept, 0)
		return
	}
	if f == nil {
		if len(w.flows) >= maxFlows {
			w.m.overloaded.Inc()
			w.q.verdict(p.id, nfRepeat, nft.MarkProposeDeny)
			return
		}
		w.gen++
		f = &flow{key: seg.key, gen: w.gen, base: seg.seq, started: now, deadline: now.Add(w.cfg.ClassifyTimeout)}
		w.flows[seg.key] = f
		w.pending[seg.key] = f
		w.flowsPeak = max(w.flowsPeak, len(w.flows))
		w.rec.put(seg.key, record{state: recJudging})
	}
	f.held = append(f.held, p.id)
	if seg.flags&tcpACK != 0 {
		f.peerSeq = seg.ack
	}
	if e := seg.seq + uint32(len(seg.payload)); int32(e-f.end) > 0 || f.end == 0 {
		f.end = e
	}
	w.m.held.Inc()
	if f.waiting {
		return
	}
	if k := f.add(seg.seq, seg.payload); k > 0 {
		// Progress moves the deadline: every held segment costs the
		// client a round trip through the queue, so a head trickled in
		// many segments takes longer here than through the proxy. Silence
		// still ends it after the classify timeout, and no head may take
		// longer than maxHeadTimeouts of them.
		f.deadline = now.Add(w.cfg.ClassifyTimeout)
		if last := f.started.Add(maxHeadTimeouts * w.cfg.ClassifyTimeout); f.deadline.After(last) {
			f.deadline = last
		}
		s, done, err := f.sniffer.Add(f.data, k)
		if done {
			w.decide(ctx, f, s, err, now)
			return
		}
	}
	switch {
	case closing:
		w.finish(f, w.partial(f, ReasonClientClosed), now)
	case len(f.data) >= maxHeld || len(f.held) >= maxHeldPackets || len(f.ooo) > 64:
		w.finish(f, w.partial(f, ReasonWindowFull), now)
	case f.peerSeq != 0 && len(f.ooo) == 0:
		// The head is incomplete. Held segments are never acknowledged by
		// the server, and unacknowledged they stall the client (TCP
		// autocorking and small queues, then its congestion window), so
		// the rest would never come: acknowledge what is held, as the
		// server will once it has it. The bytes stay held here until the
		// verdict; the server receives none of them before it.
		if err := w.rst.ackClient(f.key, f.peerSeq, f.end); err != nil {
			w.cfg.Log.Warn("kverdict_ack_failed", zap.Error(err))
		}
	}
}

// partial is the judgement of a flow whose first bytes never classified.
func (w *worker) partial(f *flow, reason string) judgement {
	return judgement{sniffed: conn.Sniffed{Proto: conn.PartialProto(f.data)}, verdict: policy.Verdict{Reason: reason}}
}

// decide judges a classified flow: at once from the cache, or, when only
// a fresh lookup can confirm the SNI↔IP binding, on an async goroutine.
func (w *worker) decide(ctx context.Context, f *flow, s conn.Sniffed, sniffErr error, now time.Time) {
	p := w.cfg.Policy.Load()
	j := judge(ctx, p, s, sniffErr, f.key.dst, cacheOnly{w.cfg.Names})
	if j.verdict.Reason != policy.ReasonSNIIPMismatch {
		w.finish(f, j, now)
		return
	}
	select {
	case w.slots <- struct{}{}:
	default:
		w.finish(f, j, now) // too many lookups at once: the cache's answer stands
		return
	}
	f.waiting = true
	key, gen, dst := f.key, f.gen, f.key.dst
	lookupCtx, cancel := context.WithDeadline(ctx, f.deadline)
	w.asyncWG.Add(1)
	go func() {
		defer w.asyncWG.Done()
		defer cancel()
		defer func() { <-w.slots }()
		w.async <- asyncResult{key: key, gen: gen, j: judge(lookupCtx, p, s, nil, dst, w.cfg.Names)}
		w.wakeLoop()
	}()
}

// poll waits for fds. While the worker is busy (a flow being judged, or a
// packet or event within activeWindow) the wait is a raw system call: the
// goroutine keeps its P, so the runtime neither hands the P to another
// thread when the wait outlasts sysmon's tick nor has to get one back
// when a packet wakes it, and sysmon is not kept polling every 20 µs to
// retake it. Measured on the kernel path's CPU benchmark, that is a third
// of the worker's CPU per connection. A raw wait cannot be parked by the
// runtime, so it is kept short (wakeEvery): a stop-the-world or a
// preemption request interrupts ppoll with a signal (ppoll is never
// restarted), and the loop reaches a safe point at once. An idle worker
// waits through the runtime (unix.Ppoll), up to idleWake, costing nothing.
func (w *worker) poll(fds []unix.PollFd, timeout time.Duration) error {
	var errno unix.Errno
	if len(w.pending) > 0 || time.Since(w.active) < activeWindow {
		ts := unix.NsecToTimespec(min(timeout, wakeEvery).Nanoseconds())
		_, _, errno = unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)),
			uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	} else {
		ts := unix.NsecToTimespec(timeout.Nanoseconds())
		if _, err := unix.Ppoll(fds, &ts, nil); err != nil {
			errno, _ = err.(unix.Errno)
			if errno == 0 {
				return fmt.Errorf("kverdict: poll: %w", err)
			}
		}
	}
	if errno != 0 && errno != unix.EINTR {
		return fmt.Errorf("kverdict: poll: %w", errno)
	}
	for _, fd := range fds {
		if fd.Revents != 0 {
			w.active = time.Now()
			break
		}
	}
	return nil
}

// wakeLoop ends the loop's wait (an eventfd write never blocks: the
// counter saturates far beyond maxAsync).
func (w *worker) wakeLoop() {
	one := [8]byte{1} // little-endian 1; the value is never read
	_, _ = unix.Write(w.wakeFD, one[:])
}

// drainAsync applies decisions that came back from a fresh lookup.
func (w *worker) drainAsync() {
	for {
		select {
		case r := <-w.async:
			if f := w.flows[r.key]; f != nil && f.gen == r.gen && f.waiting {
				w.finish(f, r.j, time.Now())
			}
		default:
			return
		}
	}
}

// expire denies flows past their classification deadline and forgets
// decided ones past their grace. Decided flows are visited in verdict
// order and only while they are due: the map of the last strayGrace's
// flows is never walked.
func (w *worker) expire(now time.Time) {
	for _, f := range w.pending {
		if !f.waiting && now.After(f.deadline) {
			w.finish(f, w.partial(f, ReasonClassifyTimout), now)
		}
	}
	i := 0
	for ; i < len(w.grace) && now.After(w.grace[i].expires); i++ {
		g := w.grace[i]
		if f := w.flows[g.key]; f != nil && f.gen == g.gen {
			delete(w.flows, g.key)
		}
	}
	w.grace = w.grace[i:]
	if len(w.grace) == 0 {
		w.grace = w.grace[:0:0] // let the drained backing array go
	}
	if len(w.flows) == 0 && w.flowsPeak > 64 {
		// A Go map keeps its buckets when emptied: after a burst, the
		// flows of the last strayGrace would otherwise cost the worker
		// their peak for good.
		w.flows, w.pending, w.flowsPeak = make(map[flowKey]*flow), make(map[flowKey]*flow), 0
	}
}

// forget drops the flow on k now (its tuple was reused).
func (w *worker) forget(k flowKey) {
	delete(w.flows, k)
	delete(w.pending, k)
}

// finish gives the verdict to every held packet, in order. Allowed: the
// packets go back through the rules with a proposal that sets the ct mark
// allowed, and the kernel forwards the rest of the connection. Denied: the
// server gets a reset from us, the held packets are rejected (the client
// gets a reset) and the ct mark denied resets every retransmit.
func (w *worker) finish(f *flow, j judgement, now time.Time) {
	v := j.verdict
	allowed, wouldDeny := v.Allow, false
	if !allowed && w.cfg.DryRun {
		allowed, wouldDeny = true, true
	}
	mark := nft.MarkProposeAllow
	if !allowed {
		mark = nft.MarkProposeDeny
	}
	if !allowed {
		// First the answer in the client's protocol, as the proxy gives
		// it; then the held packets are rejected (their resets now fall
		// outside the client's window and cannot destroy the answer).
		if answer := denialAnswer(j, v.Reason); answer != nil && f.peerSeq != 0 {
			if err := w.rst.answerClient(f.key, f.peerSeq, f.end, answer); err != nil {
				w.cfg.Log.Warn("kverdict_answer_failed", zap.Error(err))
			}
		}
	}
	for _, id := range f.held {
		w.q.verdict(id, nfRepeat, mark)
	}
	_ = w.q.flush()
	if !allowed {
		// After the verdicts: the ct mark is denied before conntrack sees
		// the server's reset close the entry.
		if err := w.rst.resetServer(f.key, f.base); err != nil {
			w.cfg.Log.Warn("kverdict_reset_failed", zap.Error(err))
		}
	}
	f.decided, f.waiting, f.expires = true, false, now.Add(strayGrace)
	delete(w.pending, f.key)
	w.grace = append(w.grace, graceEntry{key: f.key, gen: f.gen, expires: f.expires})
	defer func() { f.held, f.data, f.ooo, f.sniffer = nil, nil, nil, conn.Sniffer{} }()

	if ce := w.cfg.Log.Check(zap.DebugLevel, "kverdict_verdict"); ce != nil {
		ce.Write(zap.Stringer("src", f.key.src), zap.Stringer("dst", f.key.dst), zap.Bool("allowed", allowed),
			zap.String("reason", v.Reason), zap.Int("held", len(f.held)), zap.Int("bytes", len(f.data)))
	}
	w.m.decisions.WithLabelValues(decisionLabel(allowed, wouldDeny)).Inc()
	w.m.decideLatency.Observe(now.Sub(f.started).Seconds())
	if !allowed {
		// Nothing was relayed: the line is written now, not at conntrack's
		// end of the connection.
		w.rec.put(f.key, record{state: recDenied})
		w.cfg.Audit.Egress(obs.Flow{
			Proto: j.sniffed.Proto.String(), SNI: j.sniffed.SNI, ALPN: j.sniffed.ALPN,
			SrcPort: f.key.src.Port(), DstIP: f.key.dst.Addr().String(), DstPort: f.key.dst.Port(),
			Reason: v.Reason, Rule: v.Rule, Source: SourceKernel, Duration: now.Sub(f.started),
		})
		w.m.connections.WithLabelValues("kernel", obs.DecisionDenied).Inc()
		return
	}
	w.rec.put(f.key, record{
		state: recAllowed, wouldDeny: wouldDeny, proto: j.sniffed.Proto.String(), sni: j.sniffed.SNI, alpn: j.sniffed.ALPN,
		reason: v.Reason, rule: v.Rule, started: f.started.UnixNano(),
	})
}

func decisionLabel(allowed, wouldDeny bool) string {
	switch {
	case wouldDeny:
		return obs.DecisionWouldDeny
	case allowed:
		return obs.DecisionAllowed
	}
	return obs.DecisionDenied
}

// tlsAccessDenied is the proxy's TLS answer (stages/deny.go): a fatal
// access_denied alert record.
var tlsAccessDenied = []byte{21, 3, 3, 0, 2, 2, 49}

// denialAnswer is what a denied client is told: a TLS alert after a
// ClientHello, an HTTP 403 after a request head, nothing (a reset) else.
func denialAnswer(j judgement, reason string) []byte {
	switch j.sniffed.Proto {
	case conn.ProtoTLS:
		return tlsAccessDenied
	case conn.ProtoHTTP:
		body := fmt.Sprintf("forge-supervisor: egress to %s denied (%s)\n", printableHost(j.sniffed.Host), reason)
		return fmt.Appendf(nil, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"+
			"Content-Length: %d\r\nConnection: close\r\nX-Forge-Supervisor: denied\r\n\r\n%s", len(body), body)
	}
	return nil
}

func printableHost(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return "the requested destination"
	}
	return s
}
