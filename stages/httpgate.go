package stages

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/forge/forge-supervisor/conn"
)

// maxRuleHost is the longest offending host name kept for the audit line:
// the longest DNS name.
const maxRuleHost = 253

// gateEnd says how a gated client stream ended.
type gateEnd int

const (
	// gateFailed: an I/O error or a truncated request; err says which.
	gateFailed gateEnd = iota
	// gateDenied: a request broke the gate's rules; reason and rule say how.
	// Nothing of that request was forwarded.
	gateDenied
	// gateEOF: the client closed at a request boundary.
	gateEOF
	// gateOpaque: after an upgrade (WebSocket, CONNECT) the stream is no
	// longer HTTP/1.x; everything read so far was forwarded and the rest
	// is to be relayed as is.
	gateOpaque
	// gateNext: internal to the gate, a step ended cleanly and the stream
	// goes on. Never the zero value: a forgotten result fails.
	gateNext
)

// httpGate forwards a cleartext HTTP/1.x client stream request by request
// and checks every request head before a byte of it is forwarded: its Host
// (or absolute-form authority) must be the host the policy allowed, its
// port the destination port, and its body framing unambiguous (RFC 9112
// §6, the request-smuggling rules; conn.HTTPRequest.FramingErr). Only
// heads are parsed; bodies stream through buf in large reads.
//
// After a CONNECT or an upgrade request the gate waits for the server's
// answer (answers, fed by the answer tracker on the other direction): only
// a real 101 Switching Protocols (a 2xx to CONNECT) turns the stream
// opaque; after a refusal the next bytes must be a request again.
type httpGate struct {
	httpStream
	host    string // the first request's host, normalized
	port    uint16 // the destination port
	answers *answers

	reason string // set when gateDenied
	rule   string
}

func normHost(h string) string { return strings.ToLower(strings.TrimSuffix(h, ".")) }

// run gates requests until the stream ends, fails or turns opaque.
func (g *httpGate) run() (gateEnd, error) {
	for {
		req, err := nextHead(&g.httpStream, conn.ParseHTTPRequest)
		switch {
		case errors.Is(err, io.EOF):
			return gateEOF, nil
		case err == nil:
		case errors.Is(err, errTruncated):
			return gateFailed, err
		case errors.Is(err, conn.ErrHostMismatch):
			// The target names a host, the Host header another: a target
			// that switches hosts says so first (host_switch, with the
			// host), else the mismatch itself is the denial.
			if g.switches(req) {
				return g.deny(ReasonHostSwitch, switchedTo(normHost(req.Host), req.Port, g.port))
			}
			return g.deny(ReasonHostMismatch, "")
		case errors.Is(err, conn.ErrHeaderTooLarge):
			return g.deny(ReasonHeaderTooLarge, "")
		case errors.Is(err, conn.ErrMalformedHTTP):
			return g.deny(ReasonMalformedHTTP, "")
		default:
			return gateFailed, err
		}
		if end := g.admit(req); end != gateNext {
			return end, nil
		}
		ex := g.answers.announce(req)
		if err := g.forward(req.HeaderLen); err != nil {
			return gateFailed, err
		}
		if err := g.body(req.Chunked, req.ContentLength); err != nil {
			if errors.Is(err, errBadChunking) {
				return g.deny(ReasonMalformedHTTP, "")
			}
			return gateFailed, err
		}
		if req.Switches() && g.answers.await(ex) {
			if err := g.forward(g.w - g.r); err != nil {
				return gateFailed, err
			}
			return gateOpaque, nil
		}
	}
}

func (g *httpGate) deny(reason, rule string) (gateEnd, error) {
	g.reason, g.rule = reason, rule
	return gateDenied, nil
}

// switches reports whether req names another host or port than the
// connection's.
func (g *httpGate) switches(req conn.HTTPRequest) bool {
	return normHost(req.Host) != g.host || req.Port != 0 && req.Port != g.port
}

// admit checks a parsed head: gateNext lets it through.
func (g *httpGate) admit(req conn.HTTPRequest) gateEnd {
	if g.switches(req) {
		host := normHost(req.Host)
		end, _ := g.deny(ReasonHostSwitch, switchedTo(host, req.Port, g.port))
		return end
	}
	var reason string
	switch err := req.FramingErr; {
	case err == nil:
		return gateNext
	case errors.Is(err, conn.ErrUpgradeNotWebSocket):
		reason = ReasonUpgradeProto
	case errors.Is(err, conn.ErrBodyOnBodilessMethod):
		reason = ReasonBodyOnBodiless
	default:
		reason = ReasonMalformedHTTP
	}
	end, _ := g.deny(reason, "")
	return end
}

// switchedTo renders the offending destination for the audit rule field:
// printable ASCII only, the name cut to the longest DNS name.
func switchedTo(host string, port, dstPort uint16) string {
	h := printable(host)
	if len(h) > maxRuleHost {
		h = h[:maxRuleHost]
	}
	if h == "" {
		h = "<none>" // an HTTP/1.0 request without Host
	}
	if port != 0 && port != dstPort {
		return fmt.Sprintf("switched_to:%s:%d", h, port)
	}
	return "switched_to:" + h
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
func (e *Engine) gateUp(c *conn.Conn, log *answers, idle *idleClock) (aborted bool) {
	// The gate borrows a classification buffer (conn.MaxPeek, 64 KiB): it
	// holds any head (MaxHTTPHeader) and, as measured by
	// BenchmarkUpload64MiB, reads bodies in pieces large enough to keep up
	// with splice(2), which 32 KiB relay buffers do not.
	bp := e.peekBufs.Get()
	defer e.peekBufs.Put(bp)
	peeked := bytes.NewReader(c.Peeked)
	up := idleWriter{c: c.Upstream, idle: idle}
	g := httpGate{
		httpStream: httpStream{
			src: io.MultiReader(peeked, idleReader{c: c.Client, idle: idle}),
			dst: up,
			buf: *bp,
		},
		host:    normHost(c.Host),
		port:    c.Dst.Port(),
		answers: log,
	}
	end, err := g.run()
	c.BytesUp += g.forwarded
	switch end {
	case gateEOF:
		_ = c.Upstream.CloseWrite()
		return false
	case gateFailed:
		e.cfg.Log.Debug("http_gate_cut", zap.Uint64("conn", c.ID), zap.Error(err))
		abortConn(c)
		return true
	case gateDenied:
		if !e.cfg.DryRun {
			c.Allowed, c.Reason, c.Rule = false, g.reason, g.rule
			abortConn(c)
			return true
		}
		if !c.WouldDeny {
			c.WouldDeny, c.Reason, c.Rule = true, g.reason, g.rule
		}
		before := g.forwarded
		err := g.forward(g.w - g.r)
		c.BytesUp += g.forwarded - before
		if err != nil {
			abortConn(c)
			return true
		}
	case gateOpaque:
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
func (e *Engine) answersDown(c *conn.Conn, log *answers, idle *idleClock) (int64, error) {
	// A relay buffer holds any response head the tracker follows
	// (conn.MaxHTTPHeader): a larger one ends the tracking, not the
	// connection.
	bp := e.bufs.Get()
	defer e.bufs.Put(bp)
	t := answerTracker{
		httpStream: httpStream{
			src: idleReader{c: c.Upstream, idle: idle},
			dst: idleWriter{c: c.Client, idle: idle},
			buf: *bp,
		},
		log: log,
	}
	// Large bodies (downloads) are spliced: parsing needs only the heads.
	t.direct = func(n int64) (int64, error) {
		return copyUpTo(c.Client, c.Upstream, e.pipes, e.bufs, idle, n)
	}
	opaque, err := t.run()
	if err != nil || !opaque {
		return t.forwarded, err
	}
	if err := t.forward(t.w - t.r); err != nil {
		return t.forwarded, err
	}
	_ = c.Client.SetWriteDeadline(time.Time{})
	n, err := copyHalf(c.Client, c.Upstream, e.pipes, e.bufs, idle)
	return t.forwarded + n, err
}
