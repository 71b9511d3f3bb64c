package dns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/forge/forge-supervisor/bufpool"
)

// maxAnswerTime bounds the whole forwarding of one query, over every
// upstream and the TCP retry: glibc's stub resolver gives up on a server
// after 5 s, so an answer later than that helps no client.
const maxAnswerTime = 5 * time.Second

// maxUpstreamMsg is the largest DNS message (the TCP length prefix is 16
// bits), so any upstream answer fits the read buffer.
const maxUpstreamMsg = 65535

// Upstream UDP sockets are reused: a socket, connect and close per query
// cost more than the rest of the forwarding together. A socket carries at
// most udpSocketUses queries and is then closed, so the source port keeps
// changing and an off-path spoofer is not left with only the 16-bit ID to
// guess for long; at most maxIdleUDPSockets per upstream wait for reuse.
const (
	udpSocketUses     = 64
	maxIdleUDPSockets = 128
)

var (
	errMismatch = errors.New("response does not match the query")
	errNoReply  = errors.New("no upstream answered")
)

// forwarder sends queries to the upstream resolvers, in order, and returns
// the first usable answer.
type forwarder struct {
	upstreams []string
	timeout   time.Duration
	dialer    net.Dialer
	bufs      *bufpool.Buffers // maxUpstreamMsg-sized read buffers

	mu     sync.Mutex
	closed bool
	idle   map[string]chan *upstreamConn // per upstream, UDP only
}

// upstreamConn is a connected socket to one upstream.
type upstreamConn struct {
	net.Conn
	uses int
}

func newForwarder(upstreams []string, timeout time.Duration, mark uint32) *forwarder {
	idle := make(map[string]chan *upstreamConn, len(upstreams))
	for _, up := range upstreams {
		idle[up] = make(chan *upstreamConn, maxIdleUDPSockets)
	}
	return &forwarder{
		upstreams: upstreams,
		timeout:   timeout,
		dialer:    net.Dialer{Control: markControl(mark)},
		bufs:      bufpool.NewBuffers(maxUpstreamMsg),
		idle:      idle,
	}
}

// conn returns an idle UDP socket to upstream or a new one.
func (f *forwarder) conn(ctx context.Context, network, upstream string) (*upstreamConn, error) {
	if network == "udp" {
		select {
		case c := <-f.idle[upstream]:
			return c, nil
		default:
		}
	}
	c, err := f.dialer.DialContext(ctx, network, upstream)
	if err != nil {
		return nil, err
	}
	return &upstreamConn{Conn: c}, nil
}

// release keeps a UDP socket that ended its exchange cleanly for reuse and
// closes every other.
func (f *forwarder) release(c *upstreamConn, network, upstream string, clean bool) {
	c.uses++
	if network == "udp" && clean && c.uses < udpSocketUses {
		f.mu.Lock()
		defer f.mu.Unlock()
		if !f.closed {
			select {
			case f.idle[upstream] <- c:
				return
			default:
			}
		}
	}
	c.Close()
}

// close closes the idle sockets; sockets released later are closed then.
func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, ch := range f.idle {
		for len(ch) > 0 {
			(<-ch).Close()
		}
	}
}

// budget is the time one query may spend upstream in total: one attempt
// per upstream plus a TCP retry, never more than maxAnswerTime.
func (f *forwarder) budget() time.Duration {
	return min(f.timeout*time.Duration(len(f.upstreams)+1), maxAnswerTime)
}

// exchange forwards q and returns the upstream's answer with q's ID. The
// query goes out with a fresh random ID per attempt (the agent's ID never
// leaves the supervisor) and otherwise unchanged, so EDNS0 options and the
// DO bit pass through. An answer that does not match the query's ID and
// question is discarded. A truncated UDP answer is asked again over TCP.
// Upstreams fail over in order on errors, timeouts, SERVFAIL and REFUSED;
// the whole exchange ends within budget(). q is not modified.
func (f *forwarder) exchange(ctx context.Context, q *dns.Msg, overTCP bool) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, f.budget())
	defer cancel()
	wire, err := q.Pack()
	if err != nil {
		return nil, fmt.Errorf("dns: pack query: %w", err)
	}
	var (
		fallback *dns.Msg // a SERVFAIL/REFUSED/truncated answer, if nothing better comes
		lastErr  = errNoReply
	)
	for _, up := range f.upstreams {
		if ctx.Err() != nil {
			break
		}
		network := "udp"
		if overTCP {
			network = "tcp"
		}
		resp, err := f.attempt(ctx, up, network, wire, q)
		if err == nil && resp.Truncated && network == "udp" {
			fallback = resp
			resp, err = f.attempt(ctx, up, "tcp", wire, q)
		}
		if err != nil {
			lastErr = fmt.Errorf("dns: upstream %s: %w", up, err)
			continue
		}
		if resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused {
			fallback = resp
			lastErr = fmt.Errorf("dns: upstream %s: %s", up, dns.RcodeToString[resp.Rcode])
			continue
		}
		resp.Id = q.Id
		return resp, nil
	}
	if fallback != nil {
		fallback.Id = q.Id
		return fallback, nil
	}
	return nil, lastErr
}

// attempt does one round trip with one upstream. Over UDP, packets that do
// not parse or do not match are skipped (a spoofed packet must not end the
// wait for the real one); over TCP, the stream is the upstream's own and a
// bad answer ends the attempt.
func (f *forwarder) attempt(ctx context.Context, upstream, network string, wire []byte, q *dns.Msg) (_ *dns.Msg, err error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	c, err := f.conn(ctx, network, upstream)
	if err != nil {
		return nil, err
	}
	defer func() { f.release(c, network, upstream, err == nil) }()
	// The deadline covers the normal case; AfterFunc ends the wait early
	// when the proxy shuts down.
	if dl, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(dl); err != nil {
			return nil, err
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			err = errors.Join(err, ctx.Err()) // the deadline was cut: not reusable
		}
	}()

	id := uint16(rand.Uint32())
	out := make([]byte, len(wire))
	copy(out, wire)
	out[0], out[1] = byte(id>>8), byte(id)

	co := &dns.Conn{Conn: c.Conn, UDPSize: maxUpstreamMsg} // the raw conn: dns.Conn frames by its type
	if _, err := co.Write(out); err != nil {
		return nil, fmt.Errorf("%s write: %w", network, err)
	}
	bufp := f.bufs.Get()
	defer f.bufs.Put(bufp)
	buf := *bufp
	for {
		n, err := co.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s read: %w", network, ctx.Err())
			}
			return nil, fmt.Errorf("%s read: %w", network, err)
		}
		resp := new(dns.Msg)
		err = resp.Unpack(buf[:n])
		if err == nil && !matches(resp, id, q) {
			err = errMismatch
		}
		if err == nil {
			return resp, nil
		}
		if network == "tcp" {
			return nil, fmt.Errorf("tcp answer: %w", err)
		}
	}
}

// matches reports whether resp answers the query sent with ID id and
// question q.Question[0]. Names compare case-insensitively: resolvers may
// echo a 0x20-randomized spelling.
func matches(resp *dns.Msg, id uint16, q *dns.Msg) bool {
	if resp.Id != id || !resp.Response || resp.Opcode != q.Opcode || len(resp.Question) != 1 {
		return false
	}
	got, want := resp.Question[0], q.Question[0]
	return got.Qtype == want.Qtype && got.Qclass == want.Qclass && strings.EqualFold(got.Name, want.Name)
}
