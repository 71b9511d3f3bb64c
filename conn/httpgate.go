package conn

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxRuleHost is the longest offending host name kept for the audit
// line's rule: the longest DNS name.
const maxRuleHost = 253

// GateEnd says how a gated client stream ended.
type GateEnd int

const (
	// GateFailed: an I/O error or a truncated request; the error says
	// which (ErrTruncated for a cut request).
	GateFailed GateEnd = iota
	// GateDenied: a request broke the gate's rules; Denial says how.
	// Nothing of that request was forwarded.
	GateDenied
	// GateEOF: the client closed at a request boundary.
	GateEOF
	// GateOpaque: the server switched protocols (101 to a WebSocket
	// upgrade, 2xx to a CONNECT); everything read so far was forwarded
	// and the rest is to be relayed as is.
	GateOpaque
	// gateNext: internal, a step ended cleanly and the stream goes on.
	// Never the zero value: a forgotten result fails.
	gateNext
)

// HTTPGate forwards a cleartext HTTP/1.x client stream request by request
// and checks every request head before a byte of it is forwarded: its Host
// (or absolute-form authority) must be the host the policy allowed, its
// port the destination port, and its body framing unambiguous (RFC 9112
// §6, the request-smuggling rules; HTTPRequest.FramingErr). Only heads are
// parsed; bodies stream through buf in large reads.
//
// After a CONNECT or an upgrade request the gate waits for the server's
// answer (Answers, fed by the AnswerTracker on the other direction): only
// a real 101 Switching Protocols (a 2xx to CONNECT) turns the stream
// opaque; after a refusal the next bytes must be a request again.
type HTTPGate struct {
	httpStream
	host    string // the first request's host, normalized
	port    uint16 // the destination port
	answers *Answers

	denial error // set when GateDenied
	rule   string
}

// NewHTTPGate gates src (the client, the peeked bytes first) into dst
// (the upstream) through buf (len(buf) > MaxHTTPHeader) for a connection
// allowed to host:port.
func NewHTTPGate(src io.Reader, dst io.Writer, buf []byte, host string, port uint16, a *Answers) *HTTPGate {
	return &HTTPGate{httpStream: httpStream{src: src, dst: dst, buf: buf}, host: NormHost(host), port: port, answers: a}
}

// NormHost is the form in which the gate compares hosts.
func NormHost(h string) string { return strings.ToLower(strings.TrimSuffix(h, ".")) }

// Forwarded is the number of client bytes written upstream.
func (g *HTTPGate) Forwarded() int64 { return g.forwarded }

// Denial says why the gate denied: one of ErrHostSwitch, ErrHostMismatch,
// ErrHeaderTooLarge, ErrUpgradeNotWebSocket, ErrBodyOnBodilessMethod or
// an error wrapping ErrMalformedHTTP; rule names the host switched to.
func (g *HTTPGate) Denial() (err error, rule string) { return g.denial, g.rule }

// ForwardBuffered writes what the gate read but did not forward (a dry
// run lets the rest of a denied stream through).
func (g *HTTPGate) ForwardBuffered() error { return g.forward(g.w - g.r) }

// Run gates requests until the stream ends, fails or turns opaque.
func (g *HTTPGate) Run() (GateEnd, error) {
	for {
		req, err := nextHead(&g.httpStream, ParseHTTPRequest)
		switch {
		case errors.Is(err, io.EOF):
			return GateEOF, nil
		case err == nil:
		case errors.Is(err, errTruncated):
			return GateFailed, err
		case errors.Is(err, ErrHostMismatch):
			// The target names a host, the Host header another: a target
			// that switches hosts says so first (host_switch, with the
			// host), else the mismatch itself is the denial.
			if g.switches(req) {
				return g.deny(ErrHostSwitch, switchedTo(NormHost(req.Host), req.Port, g.port))
			}
			return g.deny(err, "")
		case errors.Is(err, ErrHeaderTooLarge), errors.Is(err, ErrMalformedHTTP):
			return g.deny(err, "")
		default:
			return GateFailed, err
		}
		if end := g.admit(req); end != gateNext {
			return end, nil
		}
		ex := g.answers.announce(req)
		if err := g.forward(req.HeaderLen); err != nil {
			return GateFailed, err
		}
		if err := g.body(req.Chunked, req.ContentLength); err != nil {
			if errors.Is(err, errBadChunking) {
				return g.deny(fmt.Errorf("%w: %w", ErrMalformedHTTP, err), "")
			}
			return GateFailed, err
		}
		if req.Switches() && g.answers.await(ex) {
			if err := g.forward(g.w - g.r); err != nil {
				return GateFailed, err
			}
			return GateOpaque, nil
		}
	}
}

func (g *HTTPGate) deny(err error, rule string) (GateEnd, error) {
	g.denial, g.rule = err, rule
	return GateDenied, nil
}

// switches reports whether req names another host or port than the
// connection's.
func (g *HTTPGate) switches(req HTTPRequest) bool {
	return NormHost(req.Host) != g.host || req.Port != 0 && req.Port != g.port
}

// admit checks a parsed head: gateNext lets it through.
func (g *HTTPGate) admit(req HTTPRequest) GateEnd {
	if g.switches(req) {
		end, _ := g.deny(ErrHostSwitch, switchedTo(NormHost(req.Host), req.Port, g.port))
		return end
	}
	if req.FramingErr != nil {
		end, _ := g.deny(req.FramingErr, "")
		return end
	}
	return gateNext
}

// switchedTo renders the offending destination for the audit rule field:
// printable ASCII only, the name cut to the longest DNS name.
func switchedTo(host string, port, dstPort uint16) string {
	h := Printable(host)
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

// Printable keeps only printable ASCII (no space) of an agent-controlled
// string, for answers and audit fields.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e {
			return -1
		}
		return r
	}, s)
}
