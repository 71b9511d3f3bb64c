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

// ReasonHostSwitch: a later request on a kept-alive cleartext HTTP
// connection named another host (or port) than the one the policy allowed.
// A server at the allowed IP may host that name too (shared-IP virtual
// hosting), so checking only the first request would let any later one
// reach a denied site.
const ReasonHostSwitch = "host_switch"

// ReasonUpgradeProto: a request asked to upgrade to a protocol other than
// WebSocket. After an accepted h2c or TLS upgrade the stream carries
// requests the gate cannot read (HTTP/2 frames may name any :authority),
// so only WebSocket, whose frames carry no destination, is let through.
const ReasonUpgradeProto = "upgrade_not_websocket"

const (
	// maxChunkLine bounds a chunk-size line with its extensions. Chunk
	// extensions are practically unused; Node.js caps them at 16 KiB per
	// message and nginx at its 1 KiB line buffer, so 4 KiB never cuts off a
	// real client yet a line is never buffered beyond the gate's buffer.
	maxChunkLine = 4 << 10
	// maxChunkSizeDigits keeps a chunk size below 2^60: never an overflow.
	maxChunkSizeDigits = 15
	// maxContentLengthDigits keeps a Content-Length below 10^18 < 2^63.
	maxContentLengthDigits = 18
	// maxRuleHost is the longest offending host name kept for the audit
	// line: the longest DNS name.
	maxRuleHost = 253
)

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
// §6, the request-smuggling rules). Only heads are parsed; bodies stream
// through buf in large reads, so memory stays bounded by len(buf).
//
// The gate sees only the client's side. After an upgrade request it cannot
// see whether the server answered 101, so it looks at the client's next
// bytes instead (see afterUpgrade): more HTTP/1.x is gated as before, a
// WebSocket frame switches the gate to opaque relaying. An accepted
// upgrade's bytes still only reach the verified destination IP.
type httpGate struct {
	host string // the first request's host, normalized
	port uint16 // the destination port
	src  io.Reader
	dst  io.Writer
	buf  []byte // len(buf) > conn.MaxHTTPHeader

	r, w int   // unconsumed bytes are buf[r:w]
	rerr error // read error held back until buf is drained

	forwarded int64
	reason    string // set when gateDenied
	rule      string
}

// errTruncated: the client closed in the middle of a request.
var errTruncated = errors.New("http gate: client closed in the middle of a request")

// framing is how a request's body is delimited, and whether the stream
// may switch protocols after it.
type framing struct {
	chunked bool
	length  int64
	upgrade bool
}

func normHost(h string) string { return strings.ToLower(strings.TrimSuffix(h, ".")) }

// run gates requests until the stream ends, fails or turns opaque.
func (g *httpGate) run() (gateEnd, error) {
	for {
		f, end, err := g.head()
		if end != gateNext {
			return end, err
		}
		if f.chunked {
			end, err = g.chunkedBody()
		} else {
			end, err = g.fixedBody(f.length)
		}
		if end != gateNext {
			return end, err
		}
		if f.upgrade {
			opaque, end, err := g.afterUpgrade()
			if end != gateNext {
				return end, err
			}
			if opaque {
				if err := g.forward(g.w - g.r); err != nil {
					return gateFailed, err
				}
				return gateOpaque, nil
			}
		}
	}
}

// fill reads more client bytes into buf, moving the unconsumed ones to its
// front when the end is reached.
func (g *httpGate) fill() error {
	if g.rerr != nil {
		return g.rerr
	}
	if g.r == g.w {
		g.r, g.w = 0, 0
	} else if g.w == len(g.buf) {
		g.w = copy(g.buf, g.buf[g.r:g.w])
		g.r = 0
	}
	if g.w == len(g.buf) {
		return fmt.Errorf("http gate: %w: buffer full", conn.ErrHeaderTooLarge)
	}
	n, err := g.src.Read(g.buf[g.w:])
	g.w += n
	if err != nil {
		if n > 0 {
			g.rerr = err
			return nil
		}
		return err
	}
	return nil
}

// forward writes the next n unconsumed bytes upstream.
func (g *httpGate) forward(n int) error {
	if n == 0 {
		return nil
	}
	k, err := g.dst.Write(g.buf[g.r : g.r+n])
	g.forwarded += int64(k)
	g.r += k
	if err != nil {
		return fmt.Errorf("http gate: write upstream: %w", err)
	}
	return nil
}

func (g *httpGate) deny(reason, rule string) (gateEnd, error) {
	g.reason, g.rule = reason, rule
	return gateDenied, nil
}

// head reads, checks and forwards the next request head. At a clean end
// of stream it returns gateEOF.
func (g *httpGate) head() (framing, gateEnd, error) {
	grew := true
	for {
		pending := g.buf[g.r:g.w]
		// A head can only complete, or a line fail, once a new LF arrived
		// or the size limit was crossed; reparsing on every read would let
		// a client trickling bytes cost O(n²).
		if len(pending) > 0 && grew {
			req, err := conn.ParseHTTPRequest(pending)
			if err == nil {
				return g.admit(req, pending[:req.HeaderLen])
			}
			switch {
			case errors.Is(err, conn.ErrHeaderTooLarge):
				end, derr := g.deny(ReasonHeaderTooLarge, "")
				return framing{}, end, derr
			case !errors.Is(err, conn.ErrNeedMore):
				end, derr := g.deny(ReasonMalformedHTTP, "")
				return framing{}, end, derr
			}
		}
		before := g.w - g.r
		if err := g.fill(); err != nil {
			if !errors.Is(err, io.EOF) {
				return framing{}, gateFailed, err
			}
			pending = g.buf[g.r:g.w]
			if len(bytes.Trim(pending, "\r\n")) > 0 {
				return framing{}, gateFailed, errTruncated
			}
			// Only line endings left (clients may send a CRLF after a
			// body, RFC 9112 §2.2): a clean end.
			if err := g.forward(len(pending)); err != nil {
				return framing{}, gateFailed, err
			}
			return framing{}, gateEOF, nil
		}
		fresh := g.buf[g.r+before : g.w]
		grew = bytes.IndexByte(fresh, '\n') >= 0 || g.w-g.r > conn.MaxHTTPHeader
	}
}

// admit checks a parsed head and forwards it.
func (g *httpGate) admit(req conn.HTTPRequest, head []byte) (framing, gateEnd, error) {
	if host := normHost(req.Host); host != g.host || req.Port != 0 && req.Port != g.port {
		end, err := g.deny(ReasonHostSwitch, switchedTo(host, req.Port, g.port))
		return framing{}, end, err
	}
	f, reason := requestFraming(req, head)
	if reason != "" {
		end, err := g.deny(reason, "")
		return framing{}, end, err
	}
	if err := g.forward(req.HeaderLen); err != nil {
		return framing{}, gateFailed, err
	}
	return f, gateNext, nil
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

// requestFraming reads the body framing and upgrade intent from a head
// that conn.ParseHTTPRequest accepted (so its lines are well formed). It
// returns a reason when the framing is ambiguous or refused.
func requestFraming(req conn.HTTPRequest, head []byte) (framing, string) {
	var (
		f             framing
		te            []string
		haveCL        bool
		upgradeProtos []string
		clValue       = int64(-1)
	)
	lines := bytes.Split(head, []byte{'\n'})
	seenRequestLine := false
	for _, line := range lines {
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if !seenRequestLine {
			// Leading empty lines, then the request line.
			seenRequestLine = len(line) > 0
			continue
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue // the blank line that ends the head
		}
		value = bytes.Trim(value, " \t")
		switch strings.ToLower(string(name)) {
		case "content-length":
			for _, v := range strings.Split(string(value), ",") {
				n, ok := parseContentLength(strings.Trim(v, " \t"))
				if !ok || haveCL && n != clValue {
					return f, ReasonMalformedHTTP
				}
				haveCL, clValue = true, n
			}
		case "transfer-encoding":
			for _, v := range strings.Split(string(value), ",") {
				te = append(te, strings.ToLower(strings.Trim(v, " \t")))
			}
		case "upgrade":
			for _, v := range strings.Split(string(value), ",") {
				upgradeProtos = append(upgradeProtos, strings.Trim(v, " \t"))
			}
		}
	}
	if len(te) > 0 {
		// RFC 9112 §6.1: TE and CL together, TE in HTTP/1.0 and a final
		// coding other than chunked all make the framing faulty.
		if haveCL || req.Version == "HTTP/1.0" || !chunkedLast(te) {
			return f, ReasonMalformedHTTP
		}
		f.chunked = true
	} else if haveCL {
		f.length = clValue
	}
	if req.Method == "CONNECT" {
		// RFC 9110 §9.3.6: a CONNECT request has no content; a body would
		// be read differently by a server that tunnels at once.
		if f.chunked || f.length != 0 {
			return f, ReasonMalformedHTTP
		}
		f.upgrade = true
	}
	// Any Upgrade header counts, with or without "Connection: upgrade":
	// a lenient server may switch on the Upgrade header alone.
	if len(upgradeProtos) > 0 {
		for _, p := range upgradeProtos {
			name, _, _ := strings.Cut(p, "/")
			if !strings.EqualFold(name, "websocket") {
				return f, ReasonUpgradeProto
			}
		}
		f.upgrade = true
	}
	return f, ""
}

// chunkedLast reports whether a Transfer-Encoding list is well formed and
// ends in chunked, applied exactly once.
func chunkedLast(codings []string) bool {
	for i, c := range codings {
		if !isTokenString(c) || c == "chunked" && i != len(codings)-1 {
			return false
		}
	}
	return codings[len(codings)-1] == "chunked"
}

func isTokenString(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHTTPTokenByte(s[i]) {
			return false
		}
	}
	return true
}

func isHTTPTokenByte(ch byte) bool {
	if 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", ch) >= 0
}

// parseContentLength accepts 1*DIGIT below 10^18.
func parseContentLength(s string) (int64, bool) {
	if s == "" || len(s) > maxContentLengthDigits {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// fixedBody forwards exactly n body bytes.
func (g *httpGate) fixedBody(n int64) (gateEnd, error) {
	for n > 0 {
		if g.r == g.w {
			if err := g.fill(); err != nil {
				if errors.Is(err, io.EOF) {
					return gateFailed, errTruncated
				}
				return gateFailed, err
			}
		}
		k := int(min(int64(g.w-g.r), n))
		if err := g.forward(k); err != nil {
			return gateFailed, err
		}
		n -= int64(k)
	}
	return gateNext, nil
}

// line returns the length of the CRLF-terminated line at buf[r:], CRLF
// included, reading more as needed; ok is false when no line ends within
// limit bytes or a bare LF ends it. Chunked framing is parsed strictly:
// a bare LF is where lenient and strict parsers disagree on boundaries.
func (g *httpGate) line(limit int) (n int, ok bool, err error) {
	scanned := 0
	for {
		if i := bytes.IndexByte(g.buf[g.r+scanned:g.w], '\n'); i >= 0 {
			end := scanned + i + 1
			if end > limit || end < 2 || g.buf[g.r+end-2] != '\r' {
				return 0, false, nil
			}
			return end, true, nil
		}
		scanned = g.w - g.r
		if scanned >= limit {
			return 0, false, nil
		}
		if err := g.fill(); err != nil {
			if errors.Is(err, io.EOF) {
				return 0, false, errTruncated
			}
			return 0, false, err
		}
	}
}

// chunkedBody forwards a chunked body (RFC 9112 §7.1): size lines with
// optional extensions, data, and trailer fields after the last chunk.
func (g *httpGate) chunkedBody() (gateEnd, error) {
	for {
		n, ok, err := g.line(maxChunkLine)
		if err != nil {
			return gateFailed, err
		}
		if !ok {
			return g.deny(ReasonMalformedHTTP, "")
		}
		size, ok := parseChunkSize(g.buf[g.r : g.r+n-2])
		if !ok {
			return g.deny(ReasonMalformedHTTP, "")
		}
		if err := g.forward(n); err != nil {
			return gateFailed, err
		}
		if size == 0 {
			return g.trailers()
		}
		if end, err := g.fixedBody(size); end != gateNext {
			return end, err
		}
		for g.w-g.r < 2 {
			if err := g.fill(); err != nil {
				if errors.Is(err, io.EOF) {
					return gateFailed, errTruncated
				}
				return gateFailed, err
			}
		}
		if g.buf[g.r] != '\r' || g.buf[g.r+1] != '\n' {
			return g.deny(ReasonMalformedHTTP, "")
		}
		if err := g.forward(2); err != nil {
			return gateFailed, err
		}
	}
}

// parseChunkSize parses "1*HEXDIG [ ; extensions ]". Extensions are passed
// on unread but must be visible ASCII, space or tab.
func parseChunkSize(line []byte) (int64, bool) {
	digits, ext, hasExt := bytes.Cut(line, []byte{';'})
	if len(digits) == 0 || len(digits) > maxChunkSizeDigits {
		return 0, false
	}
	var n int64
	for _, ch := range digits {
		var d byte
		switch {
		case '0' <= ch && ch <= '9':
			d = ch - '0'
		case 'a' <= ch && ch <= 'f':
			d = ch - 'a' + 10
		case 'A' <= ch && ch <= 'F':
			d = ch - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	if hasExt {
		for _, ch := range ext {
			if ch < ' ' && ch != '\t' || ch == 0x7f {
				return 0, false
			}
		}
	}
	return n, true
}

// trailers forwards the trailer section after the last chunk, up to and
// including the empty line, within conn.MaxHTTPHeader bytes in all.
func (g *httpGate) trailers() (gateEnd, error) {
	budget := conn.MaxHTTPHeader
	for {
		n, ok, err := g.line(min(budget, len(g.buf)))
		if err != nil {
			return gateFailed, err
		}
		if !ok {
			return g.deny(ReasonMalformedHTTP, "")
		}
		field := g.buf[g.r : g.r+n-2]
		if len(field) > 0 && !validTrailer(field) {
			return g.deny(ReasonMalformedHTTP, "")
		}
		if err := g.forward(n); err != nil {
			return gateFailed, err
		}
		if len(field) == 0 {
			return gateNext, nil
		}
		budget -= n
	}
}

// validTrailer accepts "token: value" without control bytes (no folding).
func validTrailer(field []byte) bool {
	name, value, ok := bytes.Cut(field, []byte{':'})
	if !ok || !isTokenString(string(name)) {
		return false
	}
	for _, ch := range value {
		if ch < ' ' && ch != '\t' || ch == 0x7f {
			return false
		}
	}
	return true
}

// afterUpgrade decides, from the client's first bytes after an upgrade
// request, whether the stream is still HTTP/1.x. The server's answer
// travels the other direction, so the client's bytes are the evidence: a
// request line starts with a token byte (or empty lines, or whitespace a
// lenient server skips) followed by another token byte or a space, while
// a client's WebSocket frame always has the mask bit (0x80) set in its
// second byte (RFC 6455 §5.3) and a TLS record (CONNECT tunnels) starts
// with a non-token byte. A refused upgrade therefore stays gated; only an
// accepted one turns opaque — the limit of a one-directional gate.
func (g *httpGate) afterUpgrade() (opaque bool, end gateEnd, err error) {
	for {
		pending := g.buf[g.r:g.w]
		if len(pending) >= 1 {
			switch b := pending[0]; {
			case b == '\r' || b == '\n' || b == ' ' || b == '\t':
				return false, gateNext, nil
			case !isHTTPTokenByte(b):
				return true, gateNext, nil
			case len(pending) >= 2:
				return pending[1] >= 0x80, gateNext, nil
			}
		}
		if err := g.fill(); err != nil {
			if !errors.Is(err, io.EOF) {
				return false, gateFailed, err
			}
			if len(pending) == 0 {
				return false, gateEOF, nil
			}
			// One token byte, then EOF: not a request, not a frame.
			return false, gateFailed, errTruncated
		}
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
func (e *Engine) gateUp(c *conn.Conn, idle *idleClock) (aborted bool) {
	// The gate borrows a classification buffer (conn.MaxPeek, 64 KiB): it
	// holds any head (MaxHTTPHeader) and, as measured by
	// BenchmarkUpload64MiB, reads bodies in pieces large enough to keep up
	// with splice(2), which 32 KiB relay buffers do not.
	bp := e.peekBufs.Get()
	defer e.peekBufs.Put(bp)
	peeked := bytes.NewReader(c.Peeked)
	up := idleWriter{c: c.Upstream, idle: idle}
	g := httpGate{
		host: normHost(c.Host),
		port: c.Dst.Port(),
		src:  io.MultiReader(peeked, idleReader{c: c.Client, idle: idle}),
		dst:  up,
		buf:  *bp,
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
