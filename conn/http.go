package conn

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
)

// MaxHTTPHeader bounds the HTTP/1.x request line plus headers (through the
// blank line). Browsers and CLI clients send well under 8 KiB; Node.js
// rejects heads over 16 KiB and nginx's default large header buffers are
// 8 KiB each, so 16 KiB never cuts off a real client yet keeps the peek
// buffer — held per connection while classifying — small.
const MaxHTTPHeader = 16 << 10

// HTTPRequest is what classification needs from an HTTP/1.x request head.
type HTTPRequest struct {
	Method string
	// Target is the request-target exactly as sent.
	Target string
	// Host is the destination name that wins: the authority of an
	// absolute-form or CONNECT target, else the Host header. Lowercased,
	// without port; an IPv6 literal is given without brackets in its
	// canonical form. Empty only for an HTTP/1.0 request without Host.
	Host string
	// Port is the explicit port of that authority (0 when none).
	Port uint16
	// AbsoluteForm is set for an absolute-form target (proxy-style
	// "GET http://h/ HTTP/1.1").
	AbsoluteForm bool
	// Version is "HTTP/1.0" or "HTTP/1.1".
	Version string
	// HeaderLen is the length of the request head, blank line included.
	HeaderLen int

	// The body framing, read from the head once (see framing.go).
	// ContentLength is the body length a Content-Length header gives (0
	// when none); Chunked says Transfer-Encoding ends in chunked; Upgrade
	// is the first protocol an Upgrade header asks for ("" when none).
	ContentLength int64
	Chunked       bool
	Upgrade       string
	// FramingErr says why the framing is ambiguous or refused: it wraps
	// ErrMalformedHTTP (RFC 9112 §6 smuggling rules), ErrUpgradeNotWebSocket
	// or ErrBodyOnBodilessMethod. The destination fields are valid even
	// then; a gate that forwards the request must refuse it.
	FramingErr error
}

// httpMethods are the request methods LooksLikeHTTP recognises. Read-only.
var httpMethods = [...]string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"}

// LooksLikeHTTP reports whether b starts with a known HTTP/1.x method
// followed by a space. HTTP/2 prior knowledge ("PRI * HTTP/2.0") does not.
func LooksLikeHTTP(b []byte) bool {
	b = b[leadingEmptyLines(b):]
	for _, m := range httpMethods {
		if len(b) > len(m) && string(b[:len(m)]) == m && b[len(m)] == ' ' {
			return true
		}
	}
	return false
}

// couldBeHTTP reports whether b is a prefix of "METHOD " for a known
// method, or already LooksLikeHTTP.
func couldBeHTTP(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	if n := leadingEmptyLines(b); n > 0 || isEmptyLinePrefix(b) {
		b = b[n:]
		if len(b) == 0 || isEmptyLinePrefix(b) {
			// Only empty lines so far (RFC 9112 §2.2 lets a request
			// follow some): wait for the request line.
			return true
		}
	}
	for _, m := range httpMethods {
		k := min(len(b), len(m))
		if string(b[:k]) == m[:k] && (len(b) <= len(m) || b[len(m)] == ' ') {
			return true
		}
	}
	return false
}

func malformedHTTP(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformedHTTP}, args...)...)
}

// ParseHTTPRequest parses the HTTP/1.x request head at the start of b. It
// returns ErrNeedMore until the blank line that ends the head (CRLF or a
// bare LF), ErrHeaderTooLarge once the head exceeds MaxHTTPHeader, and an
// error wrapping ErrMalformedHTTP for anything not a well-formed request
// head with one unambiguous destination — ErrHostMismatch when a target
// and the Host header name different hosts, with req still carrying the
// target's Host and Port. Each line is judged as soon as it
// is complete, so garbage is rejected without waiting for the blank line,
// and a prefix of a valid head only ever yields ErrNeedMore.
func ParseHTTPRequest(b []byte) (HTTPRequest, error) {
	var req HTTPRequest
	// Servers skip empty lines before a request line (RFC 9112 §2.2), so
	// the parser does too: otherwise "\r\nGET …" would pass as opaque
	// bytes that a server still reads as a request.
	line, pos, err := nextHTTPLine(b, leadingEmptyLines(b))
	if err != nil {
		return req, err
	}
	if err := parseRequestLine(&req, line); err != nil {
		return req, err
	}
	var (
		hostHeader []byte
		seenHost   bool
		fr         framingFields
	)
	for {
		line, pos, err = nextHTTPLine(b, pos)
		if err != nil {
			return req, err
		}
		if len(line) == 0 {
			break
		}
		name, value, err := splitHeaderField(line)
		if err != nil {
			return req, err
		}
		if strings.EqualFold(string(name), "host") {
			if seenHost {
				return req, malformedHTTP("duplicate Host header")
			}
			seenHost, hostHeader = true, value
		}
		fr.add(name, value)
	}
	req.HeaderLen = pos
	if err := resolveHTTPHost(&req, seenHost, hostHeader); err != nil {
		// A mismatch still reports the target's host, for the audit line.
		return req, err
	}
	fr.apply(&req)
	return req, nil
}

// nextHTTPLine returns the line starting at start without its line ending
// and the offset after it.
func nextHTTPLine(b []byte, start int) (line []byte, next int, err error) {
	i := bytes.IndexByte(b[start:], '\n')
	if i < 0 {
		if len(b) > MaxHTTPHeader {
			return nil, 0, fmt.Errorf("%w: no end of header within %d bytes", ErrHeaderTooLarge, MaxHTTPHeader)
		}
		return nil, 0, fmt.Errorf("http head: %w", ErrNeedMore)
	}
	next = start + i + 1
	if next > MaxHTTPHeader {
		return nil, 0, fmt.Errorf("%w: head exceeds %d bytes", ErrHeaderTooLarge, MaxHTTPHeader)
	}
	line = b[start : start+i]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if j := bytes.IndexByte(line, '\r'); j >= 0 {
		return nil, 0, malformedHTTP("bare CR at offset %d", start+j)
	}
	if j := bytes.IndexByte(line, 0); j >= 0 {
		return nil, 0, malformedHTTP("NUL at offset %d", start+j)
	}
	return line, next, nil
}

// parseRequestLine parses "method SP request-target SP HTTP-version"
// (RFC 9112 §3) strictly: single spaces, a token method, HTTP/1.0 or 1.1.
func parseRequestLine(req *HTTPRequest, line []byte) error {
	method, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return malformedHTTP("request line has no space")
	}
	target, version, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return malformedHTTP("request line has no HTTP version")
	}
	if !isToken(method) {
		return malformedHTTP("method %q is not a token", method)
	}
	switch string(version) {
	case "HTTP/1.1", "HTTP/1.0":
	default:
		return malformedHTTP("version %q is not HTTP/1.0 or HTTP/1.1", version)
	}
	if len(target) == 0 {
		return malformedHTTP("empty request-target")
	}
	for i, ch := range target {
		if ch <= ' ' || ch >= 0x7f {
			return malformedHTTP("byte 0x%02x at offset %d of request-target", ch, i)
		}
	}
	req.Method, req.Target, req.Version = string(method), string(target), string(version)
	return nil
}

// splitHeaderField splits "name: value" (RFC 9112 §5). Obsolete line
// folding, whitespace before the colon and control bytes in the value are
// rejected: each is a known request-smuggling vector.
func splitHeaderField(line []byte) (name, value []byte, err error) {
	if line[0] == ' ' || line[0] == '\t' {
		return nil, nil, malformedHTTP("obsolete line folding")
	}
	name, value, ok := bytes.Cut(line, []byte{':'})
	if !ok {
		return nil, nil, malformedHTTP("header line without colon")
	}
	if !isToken(name) {
		return nil, nil, malformedHTTP("header name %q is not a token", name)
	}
	value = bytes.Trim(value, " \t")
	for i, ch := range value {
		if ch < ' ' && ch != '\t' || ch == 0x7f {
			return nil, nil, malformedHTTP("control byte 0x%02x in header %s at offset %d", ch, name, i)
		}
	}
	return name, value, nil
}

// resolveHTTPHost decides the destination name from the target form and
// the Host header, after the whole head was read.
func resolveHTTPHost(req *HTTPRequest, seenHost bool, hostHeader []byte) error {
	var (
		authority   string
		fromTarget  bool
		requirePort bool
	)
	target := req.Target
	switch {
	case req.Method == "CONNECT":
		// Authority-form, port required (RFC 9110 §9.3.6).
		authority, fromTarget, requirePort = target, true, true
	case target == "*":
		if req.Method != "OPTIONS" {
			return malformedHTTP("asterisk-form target with method %s", req.Method)
		}
	case target[0] == '/':
		// Origin-form: the Host header names the destination.
	default:
		scheme, rest, ok := strings.Cut(target, "://")
		if !ok {
			return malformedHTTP("request-target %q is in no known form", target)
		}
		if !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") {
			return malformedHTTP("absolute-form scheme %q is not http or https", scheme)
		}
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			rest = rest[:i]
		}
		authority, fromTarget = rest, true
		req.AbsoluteForm = true
	}

	// The Host header is validated even when the target wins, so a
	// hostile header never passes silently.
	var hHost string
	var hPort uint16
	if seenHost && len(hostHeader) > 0 {
		var err error
		if hHost, hPort, err = parseAuthority(string(hostHeader), false); err != nil {
			return fmt.Errorf("Host header: %w", err)
		}
	}
	if fromTarget {
		host, port, err := parseAuthority(authority, requirePort)
		if err != nil {
			return fmt.Errorf("request-target: %w", err)
		}
		req.Host, req.Port = host, port
		if seenHost && !sameAuthority(req, hHost, hPort) {
			// RFC 9112 §3.2: the Host must be identical to the target's
			// authority. A server that prefers the Host (Python, Node)
			// would serve a host the policy never judged.
			return fmt.Errorf("%w: target %q, Host %q", ErrHostMismatch, authority, hostHeader)
		}
		return nil
	}
	if req.Version == "HTTP/1.1" && hHost == "" {
		// RFC 9112 §3.2: a 1.1 request without a (non-empty) Host is 400.
		return malformedHTTP("HTTP/1.1 request without Host")
	}
	req.Host, req.Port = hHost, hPort
	return nil
}

// sameAuthority reports whether a Host header (hHost, hPort; "" when
// empty) names the authority of req's target. Names compare without a
// trailing dot; a port left out on one side is the scheme's default
// (CONNECT has none: a Host without port matches any).
func sameAuthority(req *HTTPRequest, hHost string, hPort uint16) bool {
	if hHost == "" || strings.TrimSuffix(hHost, ".") != strings.TrimSuffix(req.Host, ".") {
		return false
	}
	tPort, def := req.Port, uint16(0)
	switch {
	case req.Method == "CONNECT":
		return hPort == 0 || hPort == tPort
	case hasPrefixFold(req.Target, "https://"):
		def = 443
	default:
		def = 80
	}
	if tPort == 0 {
		tPort = def
	}
	if hPort == 0 {
		hPort = def
	}
	return tPort == hPort
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// parseAuthority parses host[:port] (RFC 3986 §3.2 without userinfo). The
// host is a DNS-style name (letters, digits, '-', '.', '_'), an IPv4
// address, or a bracketed IPv6 address without zone.
func parseAuthority(s string, requirePort bool) (host string, port uint16, err error) {
	if s == "" {
		return "", 0, malformedHTTP("empty authority")
	}
	if strings.IndexByte(s, '@') >= 0 {
		return "", 0, malformedHTTP("userinfo in authority %q", s)
	}
	var portStr string
	hasPort := false
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, malformedHTTP("unterminated IPv6 literal in %q", s)
		}
		a, perr := netip.ParseAddr(s[1:end])
		if perr != nil || !a.Is6() || a.Zone() != "" {
			return "", 0, malformedHTTP("bad IPv6 literal %q", s[1:end])
		}
		host = a.String()
		switch rest := s[end+1:]; {
		case rest == "":
		case rest[0] == ':':
			portStr, hasPort = rest[1:], true
		default:
			return "", 0, malformedHTTP("junk after IPv6 literal in %q", s)
		}
	} else {
		h, p, found := strings.Cut(s, ":")
		host, portStr, hasPort = h, p, found
		if err := checkHTTPHostName(host); err != nil {
			return "", 0, err
		}
		host = strings.ToLower(host)
	}
	if !hasPort {
		if requirePort {
			return "", 0, malformedHTTP("authority %q has no port", s)
		}
		return host, 0, nil
	}
	port, err = parsePort(portStr)
	return host, port, err
}

func checkHTTPHostName(h string) error {
	if h == "" {
		return malformedHTTP("empty host")
	}
	if len(h) > maxHostNameLen {
		return malformedHTTP("host of %d bytes exceeds %d", len(h), maxHostNameLen)
	}
	for i := 0; i < len(h); i++ {
		if !isHostNameByte(h[i]) {
			return malformedHTTP("byte 0x%02x at offset %d of host %q", h[i], i, h)
		}
	}
	return nil
}

// parsePort parses 1–5 decimal digits naming a port in 1..65535.
func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 {
		return 0, malformedHTTP("bad port %q", s)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, malformedHTTP("bad port %q", s)
		}
		n = n*10 + int(s[i]-'0')
	}
	if n < 1 || n > 65535 {
		return 0, malformedHTTP("port %d out of range", n)
	}
	return uint16(n), nil
}

// isToken reports whether b is a non-empty RFC 9110 §5.6.2 token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, ch := range b {
		if !isTokenByte(ch) {
			return false
		}
	}
	return true
}

func isTokenByte(ch byte) bool {
	if 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", ch) >= 0
}

// maxLeadingEmptyLines is how many empty lines may precede a request line.
// RFC 9112 asks servers to ignore "at least one"; a few cover what real
// servers accept, and a stream of more is not treated as HTTP at all.
const maxLeadingEmptyLines = 4

// leadingEmptyLines returns the length of the empty lines (CRLF or bare
// LF, at most maxLeadingEmptyLines) at the start of b.
func leadingEmptyLines(b []byte) int {
	pos := 0
	for range maxLeadingEmptyLines {
		switch {
		case len(b) >= pos+2 && b[pos] == '\r' && b[pos+1] == '\n':
			pos += 2
		case len(b) >= pos+1 && b[pos] == '\n':
			pos++
		default:
			return pos
		}
	}
	return pos
}

// isEmptyLinePrefix reports whether b is a lone CR: the start of an
// empty line whose LF has not arrived yet.
func isEmptyLinePrefix(b []byte) bool { return len(b) == 1 && b[0] == '\r' }
