package stages

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/forge/forge-supervisor/conn"
	"github.com/forge/forge-supervisor/policy"
)

// connectEstablished is the CONNECT success answer, written by the splice
// stage once the upstream is connected.
var connectEstablished = []byte("HTTP/1.1 200 Connection established\r\n\r\n")

// target is the destination a proxy client asked for: a name or an IP.
type target struct {
	name string
	ip   netip.Addr
	port uint16
}

// handshake stage, the explicit proxy's front: the client names its
// destination in an HTTP proxy request (CONNECT or absolute-form) or a
// SOCKS5 CONNECT, all within ClassifyTimeout. It only parses: the target
// becomes c.Dst (an IP) or c.Host with c.Dst's port (a name, which the
// policy stage checks and resolves — see resolve).
func (e *Engine) handshake(_ context.Context, c *conn.Conn) route {
	if ap, ok := c.Client.RemoteAddr().(*net.TCPAddr); ok {
		c.Src = ap.AddrPort()
	}
	// Until the request says otherwise the client is taken for an HTTP
	// proxy client: its denial is a 403, and it is audited as explicit.
	c.Front = conn.FrontHTTPProxy
	start := c.Accepted
	if c.Stamps.OrigDst.After(start) {
		start = c.Stamps.OrigDst
	}
	_ = c.Client.SetDeadline(time.Now().Add(e.cfg.ClassifyTimeout))
	t, err := e.readProxyRequest(c)
	_ = c.Client.SetDeadline(time.Time{})
	c.Stamps.Classify = e.observe("handshake", start)
	if err != nil {
		e.refuse(c, handshakeReason(err), "", true)
		return routeDeny
	}
	if reason := setTarget(c, t); reason != "" {
		e.refuse(c, reason, "", true)
		return routeDeny
	}
	return routePolicy
}

// setTarget records the target on c. An IP is the destination already;
// a name is normalized (and refused when it is no name) and left for the
// policy stage to check and resolve: until then the destination is its
// port alone, so a denial is audited with the port asked for, and a
// denied name is never resolved (its dst_ip stays empty).
func setTarget(c *conn.Conn, t target) (reason string) {
	if t.ip.IsValid() {
		c.Host = ""
		c.Dst = netip.AddrPortFrom(t.ip.Unmap(), t.port)
		return ""
	}
	c.Dst = netip.AddrPortFrom(netip.Addr{}, t.port)
	name, err := policy.NormalizeName(t.name)
	switch {
	case errors.Is(err, policy.ErrIPLiteral):
		// Numeric forms netip does not read ("127.1", "0x7f000001"): a
		// resolver would take them for addresses the policy never saw.
		return policy.ReasonIPLiteral
	case err != nil:
		return policy.ReasonInvalidName
	}
	c.Host = name
	return ""
}

// readProxyRequest reads the client's request into a pooled buffer and
// fills in c's front, protocol, name, greeting and replay bytes.
func (e *Engine) readProxyRequest(c *conn.Conn) (target, error) {
	bp := e.peekBufs.Get()
	defer e.peekBufs.Put(bp)
	buf := *bp
	n, err := readMore(c.Client, buf, 0)
	if err != nil {
		return target{}, err
	}
	if buf[0] == conn.SOCKS5Version {
		return socks5Handshake(c, buf, n)
	}
	return httpProxyRequest(c, buf, n)
}

// readMore reads once more into buf[n:] and returns the new fill. A
// deadline is ErrClassifyTimeout, EOF or a reset ErrClientClosed; bytes
// that came with an error are returned first, the error on the next call.
func readMore(cl *net.TCPConn, buf []byte, n int) (int, error) {
	if n == len(buf) {
		return n, fmt.Errorf("%w: %d-byte peek buffer full", conn.ErrHeaderTooLarge, len(buf))
	}
	m, err := cl.Read(buf[n:])
	n += m
	if m > 0 || err == nil {
		return n, nil
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return n, fmt.Errorf("%w: %v", conn.ErrClassifyTimeout, err)
	}
	return n, fmt.Errorf("%w: %v", conn.ErrClientClosed, err)
}

// socks5Handshake answers the greeting (no authentication) and reads the
// CONNECT request. c.Greeting is set as soon as the method is agreed: from
// then on the client waits for a request reply, which is what
// socks5Refusal relies on.
func socks5Handshake(c *conn.Conn, buf []byte, n int) (target, error) {
	c.Front, c.Proto = conn.FrontSOCKS5, conn.ProtoOpaque
	g, err := conn.ParseSOCKS5Greeting(buf[:n])
	for errors.Is(err, conn.ErrNeedMore) {
		if n, err = readMore(c.Client, buf, n); err != nil {
			return target{}, err
		}
		g, err = conn.ParseSOCKS5Greeting(buf[:n])
	}
	if err != nil {
		return target{}, err
	}
	if _, err := c.Client.Write(conn.SOCKS5MethodReply(conn.SOCKS5MethodNoAuth)); err != nil {
		return target{}, fmt.Errorf("socks5 method reply: %w: %v", conn.ErrClientClosed, err)
	}
	c.Greeting = conn.SOCKS5ReplyMessage(conn.SOCKS5Succeeded, netip.AddrPort{})
	req, r, err := conn.ParseSOCKS5Request(buf[g:n])
	for errors.Is(err, conn.ErrNeedMore) {
		if n, err = readMore(c.Client, buf, n); err != nil {
			return target{}, err
		}
		req, r, err = conn.ParseSOCKS5Request(buf[g:n])
	}
	if err != nil {
		return target{}, err
	}
	if end := g + r; end < n {
		// Optimistic data sent before our reply: replayed upstream.
		c.Peeked = append([]byte(nil), buf[end:n]...)
	}
	return target{name: req.Name, ip: req.Addr, port: req.Port}, nil
}

// httpProxyRequest reads an HTTP proxy request head. CONNECT tunnels get
// the "200 Connection established" greeting and replay whatever the client
// pipelined after the head; an absolute-form request is replayed to the
// origin, made to close after one response (see closeAfterResponse).
func httpProxyRequest(c *conn.Conn, buf []byte, n int) (target, error) {
	c.Proto = conn.ProtoHTTP
	req, err := parseProxyHead(buf[:n])
	for errors.Is(err, conn.ErrNeedMore) {
		if n, err = readMore(c.Client, buf, n); err != nil {
			return target{}, err
		}
		req, err = parseProxyHead(buf[:n])
	}
	if err != nil {
		if !conn.LooksLikeHTTP(buf[:n]) {
			c.Proto = conn.ProtoUnknown
		}
		return target{}, err
	}
	c.Host, c.NamePort = req.Host, req.Port
	head, rest := buf[:req.HeaderLen], buf[req.HeaderLen:n]
	switch {
	case req.Method == "CONNECT":
		c.Greeting = connectEstablished
		if len(rest) > 0 {
			c.Peeked = append([]byte(nil), rest...)
		}
	case req.AbsoluteForm:
		if !hasSchemePrefix(req.Target, "http://") {
			return target{}, errProxyScheme
		}
		if req.Port == 0 {
			req.Port = 80
		}
		c.Peeked = append(closeAfterResponse(head), rest...)
	default:
		return target{}, errNotProxyRequest
	}
	return hostTarget(req.Host, req.Port), nil
}

// maxMethodLen is the longest method LooksLikeHTTP knows (CONNECT,
// OPTIONS): a longer first word cannot start a request we serve.
const maxMethodLen = len("CONNECT")

// parseProxyHead is ParseHTTPRequest, except that bytes which can no
// longer begin a request line with a known method are rejected at once:
// the parser judges a line only when it is complete, and a client that
// speaks something else (TLS to the proxy port) would otherwise wait out
// the whole deadline.
func parseProxyHead(b []byte) (conn.HTTPRequest, error) {
	for i, ch := range b {
		if ch == ' ' {
			if !conn.LooksLikeHTTP(b) {
				return conn.HTTPRequest{}, fmt.Errorf("%w: unknown method %q", conn.ErrMalformedHTTP, b[:i])
			}
			break
		}
		if ch < 'A' || ch > 'Z' || i >= maxMethodLen {
			return conn.HTTPRequest{}, fmt.Errorf("%w: %q does not start a request line", conn.ErrMalformedHTTP, b[:i+1])
		}
	}
	return conn.ParseHTTPRequest(b)
}

var (
	errNotProxyRequest = errors.New("origin-form request sent to the proxy")
	errProxyScheme     = errors.New("absolute-form request for a scheme other than http")
)

func hasSchemePrefix(target, prefix string) bool {
	return len(target) >= len(prefix) && strings.EqualFold(target[:len(prefix)], prefix)
}

// hostTarget reads an HTTP authority's host: an IP literal is a
// destination already, anything else a name to resolve.
func hostTarget(host string, port uint16) target {
	if ip, err := netip.ParseAddr(host); err == nil && ip.Zone() == "" {
		return target{ip: ip, port: port}
	}
	return target{name: host, port: port}
}

// closeAfterResponse rewrites a validated absolute-form request head so
// the origin closes the connection after answering it: once relaying
// starts the engine no longer sees requests, so a client reusing the
// connection for another host would have that request sent, unjudged, to
// this origin. The head is re-emitted line by line with CRLF endings; the
// proxy's hop-by-hop headers (Proxy-Connection, Proxy-Authorization,
// Keep-Alive, Connection) are dropped and "Connection: close" added. A
// protocol upgrade (Connection: upgrade, e.g. WebSocket) keeps its headers:
// an upgraded connection belongs to this origin for good.
func closeAfterResponse(head []byte) []byte {
	lines := bytes.Split(bytes.TrimRight(head, "\r\n"), []byte("\n"))
	upgrade := false
	for _, l := range lines[1:] {
		name, value, _ := bytes.Cut(bytes.TrimRight(l, "\r"), []byte(":"))
		if strings.EqualFold(string(name), "connection") && hasToken(string(value), "upgrade") {
			upgrade = true
		}
	}
	out := make([]byte, 0, len(head)+len("Connection: close\r\n"))
	for i, l := range lines {
		l = bytes.TrimRight(l, "\r")
		if i > 0 {
			name, _, _ := bytes.Cut(l, []byte(":"))
			if dropOnForward(string(name), upgrade) {
				continue
			}
		}
		out = append(append(out, l...), '\r', '\n')
	}
	if !upgrade {
		out = append(out, "Connection: close\r\n"...)
	}
	return append(out, '\r', '\n')
}

// dropOnForward: the proxy's own headers always go; connection management
// goes unless the request upgrades. Transfer-Encoding, TE, Trailer and
// Upgrade describe the message itself and stay.
func dropOnForward(name string, upgrade bool) bool {
	switch strings.ToLower(name) {
	case "proxy-connection", "proxy-authorization":
		return true
	case "connection", "keep-alive":
		return !upgrade
	}
	return false
}

// hasToken reports whether a comma-separated header value lists tok.
func hasToken(value, tok string) bool {
	for f := range strings.SplitSeq(value, ",") {
		if strings.EqualFold(strings.TrimSpace(f), tok) {
			return true
		}
	}
	return false
}

// handshakeReason names why a handshake failed.
func handshakeReason(err error) string {
	switch {
	case errors.Is(err, errNotProxyRequest):
		return ReasonNotProxyRequest
	case errors.Is(err, errProxyScheme):
		return ReasonProxyScheme
	case errors.Is(err, conn.ErrSOCKS5NoAcceptableMethod):
		return ReasonSOCKS5NoMethod
	case errors.Is(err, conn.ErrSOCKS5Command):
		return ReasonSOCKS5Command
	case errors.Is(err, conn.ErrSOCKS5AddrType):
		return ReasonSOCKS5AddrType
	case errors.Is(err, conn.ErrMalformedSOCKS5):
		return ReasonMalformedSOCKS5
	default:
		return classifyReason(err)
	}
}

// socks5Refusal is the deny stage's answer to a SOCKS5 client. Before the
// method was agreed (no c.Greeting yet) the only answer the client can
// read is "no acceptable method"; after it, a request reply whose code
// says why (RFC 1928 §6).
func socks5Refusal(c *conn.Conn) []byte {
	if len(c.Greeting) == 0 {
		return conn.SOCKS5MethodReply(conn.SOCKS5MethodNoAcceptable)
	}
	return conn.SOCKS5ReplyMessage(socks5ReplyCode(c.Reason), netip.AddrPort{})
}

// socks5ReplyCode maps a deny reason to a reply code. Reasons of the
// engine's own map to what failed; every other reason is a policy
// decision: "connection not allowed by ruleset".
func socks5ReplyCode(reason string) conn.SOCKS5Reply {
	switch reason {
	case ReasonSOCKS5Command:
		return conn.SOCKS5CommandNotSupported
	case ReasonSOCKS5AddrType:
		return conn.SOCKS5AddrNotSupported
	case ReasonDNSFailed:
		return conn.SOCKS5HostUnreachable
	case ReasonDialFailed:
		return conn.SOCKS5ConnectionRefused
	case ReasonMalformedSOCKS5, ReasonClassifyTimeout, ReasonClientClosed, ReasonHeaderTooLarge,
		ReasonClassifyError, ReasonShutdown:
		return conn.SOCKS5GeneralFailure
	default:
		return conn.SOCKS5NotAllowed
	}
}
