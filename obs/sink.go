package obs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Limits of the log sink.
const (
	// DefaultSinkBytes is how much log the sink holds while its output is
	// slow or stalled: ~4,000 audit lines, a few seconds of a busy agent.
	// Beyond it writers wait (nothing is dropped), so the bound only
	// decides when back-pressure starts.
	DefaultSinkBytes = 1 << 20
	// pollRetry bounds one wait for the output to become writable again
	// after EAGAIN, so Close is noticed even on an output that never drains.
	pollRetry = 100 * time.Millisecond
)

// SinkClass says whose line is written. The agent's relayed output may use
// only half of the buffer, so an agent that floods its stdout slows itself
// down but can never delay the supervisor's own lines past the other half.
type SinkClass int

const (
	// ClassAudit is every line of the supervisor: decisions, lifecycle.
	ClassAudit SinkClass = iota
	// ClassAgent is the agent's output, relayed by actors.RelayOutput.
	ClassAgent
)

// Sink is the one writer of the supervisor's log output (stdout). Lines
// are queued whole and written by one goroutine, so no line is ever split
// or interleaved with another. When the output is slow, writers wait for
// room in a bounded buffer; when the output's file description is
// non-blocking (O_NONBLOCK set by whoever shares it), EAGAIN is waited out
// with poll(2) instead of losing the line. A line is lost only when the
// output fails (EPIPE, EIO) or is still stalled when the process exits;
// both are counted (SinkStats.Dropped) and reported once on stderr.
type Sink struct {
	out    *os.File
	fd     int
	limit  int
	errOut io.Writer

	mu   sync.Mutex
	cond *sync.Cond // signalled when bytes are queued, written or on close
	// queue holds the waiting lines back to back, and spare the buffer
	// of the writer's last batch: the two swap, so a line costs no
	// allocation once they have grown.
	queue   []byte
	qlines  int // lines in queue
	spare   []byte
	writing int // bytes taken by the writer, not yet written
	// writingLines are the lines of writing; whoever zeroes it under mu
	// (the writer when done, Close when it gives up) counts them.
	writingLines int
	closed       bool // no more lines accepted; the writer drains and ends

	done     chan struct{}
	abandon  atomic.Bool // Close gave up waiting: the writer stops retrying
	dropped  atomic.Uint64
	waits    atomic.Uint64
	written  atomic.Uint64
	reported atomic.Bool
}

// SinkStats are the sink's counters (exported as metrics).
type SinkStats struct {
	Written uint64 // lines written
	Dropped uint64 // lines lost to output errors or a stalled exit
	Waits   uint64 // writes that had to wait for room (back-pressure)
	Queued  int    // bytes waiting
}

// NewSink starts a sink writing to out with a buffer of limit bytes (≤ 0:
// DefaultSinkBytes). Output errors are reported once to errOut (nil:
// os.Stderr). Close it to flush.
func NewSink(out *os.File, limit int, errOut io.Writer) *Sink {
	if limit <= 0 {
		limit = DefaultSinkBytes
	}
	if errOut == nil {
		errOut = os.Stderr
	}
	s := &Sink{out: out, fd: int(out.Fd()), limit: limit, errOut: errOut, done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	go s.writeLoop()
	return s
}

// Write queues p as one audit line (ClassAudit); zap writes each entry in
// one call. It implements zapcore.WriteSyncer with Sync.
func (s *Sink) Write(p []byte) (int, error) { return s.WriteClass(ClassAudit, p) }

// Sync waits until every queued line is written (or the sink is closed).
func (s *Sink) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for (len(s.queue) > 0 || s.writing > 0) && !s.closed {
		s.cond.Wait()
	}
	return nil
}

// WriteClass queues p, waiting while the class's share of the buffer is
// full. A line larger than the whole buffer is accepted when the buffer is
// empty, so nothing waits forever. After Close it returns os.ErrClosed.
func (s *Sink) WriteClass(c SinkClass, p []byte) (int, error) {
	limit := s.limit
	if c == ClassAgent {
		limit = s.limit / 2
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	waited := false
	for !s.closed && len(s.queue)+s.writing > 0 && len(s.queue)+s.writing+len(p) > limit {
		if !waited {
			waited = true
			s.waits.Add(1)
		}
		s.cond.Wait()
	}
	if s.closed {
		return 0, os.ErrClosed
	}
	s.queue = append(s.queue, p...)
	s.qlines++
	s.cond.Broadcast()
	return len(p), nil
}

// Stats returns the counters.
func (s *Sink) Stats() SinkStats {
	s.mu.Lock()
	q := len(s.queue) + s.writing
	s.mu.Unlock()
	return SinkStats{Written: s.written.Load(), Dropped: s.dropped.Load(), Waits: s.waits.Load(), Queued: q}
}

// Close stops accepting lines and waits up to timeout for the queue to be
// written. Lines still queued then are counted as dropped and reported on
// stderr: PID 1 must exit even when nobody reads its log.
func (s *Sink) Close(timeout time.Duration) error {
	s.mu.Lock()
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	case <-time.After(timeout):
	}
	// A non-blocking output makes the writer give up at its next EAGAIN;
	// a blocking one may hold it in write(2) for good.
	s.abandon.Store(true)
	select {
	case <-s.done:
	case <-time.After(2 * pollRetry):
	}
	s.mu.Lock()
	n := s.qlines + s.writingLines
	s.queue, s.qlines, s.writingLines = nil, 0, 0
	s.mu.Unlock()
	if n > 0 {
		s.dropped.Add(uint64(n))
		s.report(fmt.Errorf("%d lines still unwritten %v after exit began", n, timeout))
	}
	return fmt.Errorf("obs: log sink: output stalled for %v at exit, lines dropped: %d", timeout, s.dropped.Load())
}

// writeLoop takes everything queued and writes it in one go, until closed
// and drained.
func (s *Sink) writeLoop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && !s.closed {
			s.cond.Wait()
		}
		if len(s.queue) == 0 && s.closed {
			s.mu.Unlock()
			return
		}
		batch := s.queue
		s.queue, s.spare = s.spare[:0], nil
		s.writing, s.writingLines, s.qlines = len(batch), s.qlines, 0
		s.mu.Unlock()

		err := s.writeAll(batch)

		s.mu.Lock()
		n := s.writingLines
		s.writing, s.writingLines = 0, 0
		s.spare = batch[:0]
		s.cond.Broadcast()
		s.mu.Unlock()
		if err != nil {
			s.dropped.Add(uint64(n))
			s.report(err)
		} else {
			s.written.Add(uint64(n))
		}
	}
}

// writeAll writes b to the output fd, waiting out EAGAIN with poll(2):
// the description may have been made non-blocking by another process that
// shares it, which must not cost a line.
func (s *Sink) writeAll(b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(s.fd, b)
		if n > 0 {
			b = b[n:]
		}
		switch {
		case err == nil:
		case errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN):
			if s.abandon.Load() {
				return fmt.Errorf("write(%s): still full at exit: %w", s.out.Name(), err)
			}
			fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLOUT}}
			if _, perr := unix.Poll(fds, int(pollRetry/time.Millisecond)); perr != nil && !errors.Is(perr, unix.EINTR) {
				return fmt.Errorf("poll(%s, POLLOUT): %w", s.out.Name(), perr)
			}
		default:
			return fmt.Errorf("write(%s): %w", s.out.Name(), err)
		}
	}
	return nil
}

// report writes the first output failure to errOut; later ones are only
// counted, so a broken log cannot flood stderr.
func (s *Sink) report(err error) {
	if s.reported.CompareAndSwap(false, true) {
		fmt.Fprintf(s.errOut, "forge-supervisor: log output failing, lines are counted in forge_supervisor_audit_lines_dropped_total: %v\n", err)
	}
}

// Agent returns a writer that queues each Write as one line of the agent's
// relayed output (ClassAgent).
func (s *Sink) Agent() io.Writer { return agentWriter{s} }

type agentWriter struct{ s *Sink }

func (w agentWriter) Write(p []byte) (int, error) { return w.s.WriteClass(ClassAgent, p) }
func (w agentWriter) Sync() error                 { return w.s.Sync() }
