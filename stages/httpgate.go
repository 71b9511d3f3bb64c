package stages

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/forge/forge-supervisor/conn"
)

// gateReason names why the request gate (conn.HTTPGate) denied.
func gateReason(err error) string {
	switch {
	case errors.Is(err, conn.ErrHostSwitch):
		return ReasonHostSwitch
	case errors.Is(err, conn.ErrHostMismatch):
		return ReasonHostMismatch
	case errors.Is(err, conn.ErrHeaderTooLarge):
		return ReasonHeaderTooLarge
	case errors.Is(err, conn.ErrUpgradeNotWebSocket):
		return ReasonUpgradeProto
	case errors.Is(err, conn.ErrBodyOnBodilessMethod):
		return ReasonBodyOnBodiless
	default:
		return ReasonMalformedHTTP
	}
}

// idleReader reads the client under the relay's idle clock: a read
// deadline that passes while the other direction is busy is renewed.
type idleReader struct {
	c    *net.TCPConn
	idle *idleClock
}

func (r idleReader) Read(p []byte) (int, error) {
	for {
		_ = r.c.SetReadDeadline(r.idle.deadline())
		n, err := r.c.Read(p)
		if n > 0 {
			r.idle.touch()
		}
		if n == 0 && err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !r.idle.expired() {
			continue
		}
		return n, err
	}
}

// idleWriter writes upstream under the relay's idle clock.
type idleWriter struct {
	c    *net.TCPConn
	idle *idleClock
}

func (w idleWriter) Write(p []byte) (int, error) {
	total := 0
	for total < len(p) {
		_ = w.c.SetWriteDeadline(w.idle.deadline())
		n, err := w.c.Write(p[total:])
		total += n
		if n > 0 {
			w.idle.touch()
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !w.idle.expired() {
				continue
			}
			return total, err
		}
	}
	return total, nil
}

// gateUp relays the client→upstream direction of a transparent cleartext
// HTTP connection through the request gate, replaying the peeked bytes
// through it first (they hold the first head and maybe more). It returns
// true when the connection was aborted (both sides reset); on a violation
// it records the denial on c first, so the connection's one audit event
// says egress_denied with the gate's reason. In a dry run a violation is
// recorded as would_deny and the rest of the stream passes unchecked.
func (e *Engine) gateUp(c *conn.Conn, log *conn.Answers, idle *idleClock) (aborted bool) {
	// The gate borrows a classification buffer (conn.MaxPeek, 64 KiB): it
	// holds any head (MaxHTTPHeader) and, as measured by
	// BenchmarkUpload64MiB, reads bodies in pieces large enough to keep up
	// with splice(2), which 32 KiB relay buffers do not.
	bp := e.peekBufs.Get()
	defer e.peekBufs.Put(bp)
	peeked := bytes.NewReader(c.Peeked)
	up := idleWriter{c: c.Upstream, idle: idle}
	g := conn.NewHTTPGate(io.MultiReader(peeked, idleReader{c: c.Client, idle: idle}), up, *bp, c.Host, c.Dst.Port(), log)
	end, err := g.Run()
	c.BytesUp += g.Forwarded()
	switch end {
	case conn.GateEOF:
		_ = c.Upstream.CloseWrite()
		return false
	case conn.GateFailed:
		e.cfg.Log.Debug("http_gate_cut", zap.Uint64("conn", c.ID), zap.Error(err))
		abortConn(c)
		return true
	case conn.GateDenied:
		denial, rule := g.Denial()
		if e.refuse(c, gateReason(denial), rule, false) {
			abortConn(c)
			return true
		}
		before := g.Forwarded()
		err := g.ForwardBuffered()
		c.BytesUp += g.Forwarded() - before
		if err != nil {
			abortConn(c)
			return true
		}
	case conn.GateOpaque:
	}
	// Opaque from here: what is left of the peeked bytes, then the socket.
	_ = c.Upstream.SetWriteDeadline(time.Time{})
	if peeked.Len() > 0 {
		n, err := peeked.WriteTo(up)
		c.BytesUp += n
		if err != nil {
			abortConn(c)
			return true
		}
	}
	n, err := copyHalf(c.Upstream, c.Client, e.pipes, e.bufs, idle)
	c.BytesUp += n
	if err != nil {
		abortConn(c)
		return true
	}
	_ = c.Upstream.CloseWrite()
	return false
}

// answersDown relays the upstream→client direction of a gated connection
// through the answer tracker, which tells the gate whether the server
// accepted a CONNECT or an upgrade; once the tracker stops following (a
// switch, a body to the close) the rest is spliced as is. It returns the
// bytes written to the client.
func (e *Engine) answersDown(c *conn.Conn, log *conn.Answers, idle *idleClock) (int64, error) {
	// A relay buffer holds any response head the tracker follows
	// (conn.MaxHTTPHeader): a larger one ends the tracking, not the
	// connection.
	bp := e.bufs.Get()
	defer e.bufs.Put(bp)
	t := conn.NewAnswerTracker(idleReader{c: c.Upstream, idle: idle}, idleWriter{c: c.Client, idle: idle}, *bp, log)
	// Large bodies (downloads) are spliced: parsing needs only the heads.
	t.SetDirect(func(n int64) (int64, error) {
		return copyUpTo(c.Client, c.Upstream, e.pipes, e.bufs, idle, n)
	})
	opaque, err := t.Run()
	if err != nil || !opaque {
		return t.Forwarded(), err
	}
	if err := t.ForwardBuffered(); err != nil {
		return t.Forwarded(), err
	}
	_ = c.Client.SetWriteDeadline(time.Time{})
	n, err := copyHalf(c.Client, c.Upstream, e.pipes, e.bufs, idle)
	return t.Forwarded() + n, err
}
