package stages

import (
	"context"
	"errors"
	"time"

	"github.com/forge/forge-supervisor/conn"
)

// classify stage: the original destination (origdst.go), then the
// client's first bytes under ClassifyTimeout. Contract: it may only peek.
// Every byte read from the client is kept in c.Peeked and replayed
// upstream before relaying, so the upstream sees the stream exactly as
// the client sent it. When the decision needs no name the upstream is
// dialled first (early.go).
func (e *Engine) classify(_ context.Context, c *conn.Conn) route {
	if r := e.origDst(c); r != routeClassify {
		return r
	}
	bp := e.peekBufs.Get()
	defer e.peekBufs.Put(bp)
	buf := *bp
	pump := e.dialEarly(c)
	_ = c.Client.SetReadDeadline(time.Now().Add(e.cfg.ClassifyTimeout))
	s, n, err := conn.Sniff(c.Client, buf)
	_ = c.Client.SetReadDeadline(time.Time{})
	if pump != nil {
		pump.stop()
		if pump.failed() {
			// The server spoke and the client did not take it, or a
			// socket failed: nothing to relay, the deny stage resets.
			if n > 0 {
				c.Peeked = append([]byte(nil), buf[:n]...)
			}
			c.Proto = protoOfPrefix(c.Peeked)
			e.refuse(c, ReasonClientClosed, "", true)
			return routeDeny
		}
		if n == 0 && errors.Is(err, conn.ErrClientClosed) {
			// The client took the server's bytes and closed without a
			// word (nc < /dev/null): a silent client, as after a timeout.
			s, err = conn.Sniffed{Proto: conn.ProtoOpaque}, nil
		}
	}
	c.Stamps.Classify = e.observe("classify", c.Stamps.OrigDst)
	if n > 0 {
		// Keep only what was read; the scratch buffer goes back to the pool.
		c.Peeked = append([]byte(nil), buf[:n]...)
	}
	c.Proto, c.SNI, c.Host, c.ALPN, c.NamePort = s.Proto, s.SNI, s.Host, s.ALPN, s.Port
	if err != nil {
		if c.Proto == conn.ProtoUnknown {
			c.Proto = protoOfPrefix(c.Peeked)
		}
		reason := classifyReason(err)
		if e.refuse(c, reason, "", reason == ReasonClientClosed) {
			return routeDeny
		}
	}
	if c.Proto == conn.ProtoHTTP && c.NamePort != 0 && c.NamePort != c.Dst.Port() {
		if e.refuse(c, ReasonHostPort, "", false) {
			return routeDeny
		}
	}
	return routePolicy
}

func protoOfPrefix(b []byte) conn.Proto {
	switch {
	case conn.LooksLikeTLS(b):
		return conn.ProtoTLS
	case conn.LooksLikeHTTP(b):
		return conn.ProtoHTTP
	default:
		return conn.ProtoOpaque
	}
}

func classifyReason(err error) string {
	switch {
	case errors.Is(err, conn.ErrMalformedClientHello):
		return ReasonMalformedTLS
	case errors.Is(err, conn.ErrHostMismatch):
		return ReasonHostMismatch
	case errors.Is(err, conn.ErrHeaderTooLarge):
		return ReasonHeaderTooLarge
	case errors.Is(err, conn.ErrMalformedHTTP):
		return ReasonMalformedHTTP
	case errors.Is(err, conn.ErrClassifyTimeout):
		return ReasonClassifyTimeout
	case errors.Is(err, conn.ErrClientClosed):
		return ReasonClientClosed
	default:
		return ReasonClassifyError
	}
}
