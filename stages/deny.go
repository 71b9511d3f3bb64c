package stages

import (
	"context"
	"fmt"
	"time"

	"github.com/forge/forge-supervisor/conn"
)

// Deny writes are tiny and bounded in time: a client that does not read
// its alert or 403 cannot hold a deny worker for longer than this.
const (
	denyWriteTimeout = time.Second
	// denyLinger is how long we wait for the client to close after our
	// answer, reading (and dropping) what it still sends, so the kernel
	// does not turn our FIN into a reset that destroys the answer.
	denyLinger   = 250 * time.Millisecond
	denyDrainMax = 64 << 10
)

// tlsAccessDenied is a TLS alert record: content type alert (21), record
// version TLS 1.2 (what TLS 1.3 uses on the wire too), length 2, level
// fatal (2), description access_denied (49).
var tlsAccessDenied = []byte{21, 3, 3, 0, 2, 2, 49}

// deny stage: answer in the client's protocol, then close. TLS gets a
// fatal access_denied alert, HTTP a 403 naming the host and the reason,
// anything else a reset (SO_LINGER 0).
func (e *Engine) deny(_ context.Context, c *conn.Conn) route {
	c.Allowed = false
	if c.Upstream != nil {
		// Dialled early (early.go): the upstream goes first; nothing of
		// the client's ever reached it.
		_ = c.Upstream.SetLinger(0)
		_ = c.Upstream.Close()
		c.Upstream = nil
	}
	switch {
	case c.BytesDown > 0:
		// The server already spoke to the client: an alert or a 403 in
		// the middle of its stream would be taken for its own.
		resetClose(c)
	case c.Front == conn.FrontSOCKS5:
		e.answerAndClose(c, socks5Refusal(c))
	case c.Front == conn.FrontHTTPProxy:
		e.answerAndClose(c, forbidden(c))
	case c.Proto == conn.ProtoTLS:
		e.answerAndClose(c, tlsAccessDenied)
	case c.Proto == conn.ProtoHTTP:
		e.answerAndClose(c, forbidden(c))
	default:
		resetClose(c)
	}
	e.finish(c)
	return routeDone
}

// forbidden renders the HTTP answer to a denied connection: 403 when the
// policy (or a malformed request) refused it, 502 when an allowed
// destination could not be resolved or reached — the explicit proxy's
// clients then see an honest gateway error. The host was validated by the
// HTTP parser; it is still stripped of anything but printable ASCII.
func forbidden(c *conn.Conn) []byte {
	host := conn.Printable(c.Host)
	switch {
	case host != "":
	case c.Dst.IsValid():
		host = c.Dst.Addr().String()
	default:
		host = "the requested destination"
	}
	status, verb := "403 Forbidden", "denied"
	if c.Reason == ReasonDialFailed || c.Reason == ReasonDNSFailed {
		status, verb = "502 Bad Gateway", "failed"
	}
	body := fmt.Sprintf("forge-supervisor: egress to %s %s (%s)\n", host, verb, c.Reason)
	return fmt.Appendf(nil, "HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Content-Length: %d\r\nConnection: close\r\nX-Forge-Supervisor: denied\r\n\r\n%s", status, len(body), body)
}

func (e *Engine) answerAndClose(c *conn.Conn, msg []byte) {
	_ = c.Client.SetWriteDeadline(time.Now().Add(denyWriteTimeout))
	if _, err := c.Client.Write(msg); err != nil {
		resetClose(c)
		return
	}
	_ = c.Client.CloseWrite()
	_ = c.Client.SetReadDeadline(time.Now().Add(denyLinger))
	// The drain buffer comes from the relay pool: a flood of denials
	// should not allocate one per connection.
	bp := e.bufs.Get()
	defer e.bufs.Put(bp)
	buf := *bp
	for drained := 0; drained < denyDrainMax; {
		n, err := c.Client.Read(buf)
		drained += n
		if err != nil {
			break
		}
	}
	_ = c.Client.Close()
}

// resetClose closes with SO_LINGER 0: the client sees a reset at once.
func resetClose(c *conn.Conn) {
	_ = c.Client.SetLinger(0)
	_ = c.Client.Close()
}
