package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
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
	errNoReply  = errors.New("no upstream answered")
	errShutdown = errors.New("proxy shutting down")
)

// forwarder sends queries to the upstream resolvers, in order, and returns
// the first usable answer.
type forwarder struct {
	upstreams []string
	timeout   time.Duration
	dialer    net.Dialer

	mu     sync.Mutex
	closed bool
	idle   map[string][]*upstreamConn // per upstream, UDP only
	busy   map[*upstreamConn]struct{} // in an exchange: cut at close
}

// upstreamConn is a connected socket to one upstream.
type upstreamConn struct {
	net.Conn
	uses int
}

func newForwarder(upstreams []string, timeout time.Duration, mark uint32) *forwarder {
	idle := make(map[string][]*upstreamConn, len(upstreams))
	for _, up := range upstreams {
		idle[up] = make([]*upstreamConn, 0, maxIdleUDPSockets)
	}
	return &forwarder{
		upstreams: upstreams,
		timeout:   timeout,
		dialer:    net.Dialer{Control: markControl(mark)},
		idle:      idle,
		busy:      make(map[*upstreamConn]struct{}),
	}
}

// conn returns an idle UDP socket to upstream or a new one, with its
// deadline set and registered as busy so close can cut its wait. The
// deadline is set before the socket is registered (under the lock for an
// idle one), so a close that comes later always wins.
func (f *forwarder) conn(network, upstream string, deadline time.Time) (*upstreamConn, error) {
	var c *upstreamConn
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, errShutdown
	}
	if idle := f.idle[upstream]; network == "udp" && len(idle) > 0 {
		c = idle[len(idle)-1]
		idle[len(idle)-1] = nil
		f.idle[upstream] = idle[:len(idle)-1]
		if err := c.SetDeadline(deadline); err != nil {
			f.mu.Unlock()
			c.Close()
			return nil, err
		}
		f.busy[c] = struct{}{}
	}
	f.mu.Unlock()
	if c != nil {
		return c, nil
	}
	d := f.dialer
	d.Deadline = deadline
	nc, err := d.Dial(network, upstream)
	if err != nil {
		return nil, err
	}
	if err := nc.SetDeadline(deadline); err != nil {
		nc.Close()
		return nil, err
	}
	c = &upstreamConn{Conn: nc}
	f.mu.Lock()
	closed := f.closed
	if !closed {
		f.busy[c] = struct{}{}
	}
	f.mu.Unlock()
	if closed {
		nc.Close()
		return nil, errShutdown
	}
	return c, nil
}

// release keeps a UDP socket that ended its exchange cleanly for reuse and
// closes every other.
func (f *forwarder) release(c *upstreamConn, network, upstream string, clean bool) {
	c.uses++
	f.mu.Lock()
	delete(f.busy, c)
	keep := network == "udp" && clean && c.uses < udpSocketUses && !f.closed &&
		len(f.idle[upstream]) < maxIdleUDPSockets
	if keep {
		f.idle[upstream] = append(f.idle[upstream], c)
	}
	f.mu.Unlock()
	if !keep {
		c.Close()
	}
}

// close closes the idle sockets and cuts the waits of busy ones; sockets
// released later are closed then, and no new exchange starts.
func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	for up, idle := range f.idle {
		for _, c := range idle {
			c.Close()
		}
		f.idle[up] = nil
	}
	for c := range f.busy {
		_ = c.SetDeadline(time.Unix(1, 0))
	}
}

// budget is the time one query may spend upstream in total: one attempt
// per upstream plus a TCP retry, never more than maxAnswerTime.
func (f *forwarder) budget() time.Duration {
	return min(f.timeout*time.Duration(len(f.upstreams)+1), maxAnswerTime)
}

// exchange forwards query (a packed query; its ID bytes are overwritten)
// and returns the upstream's answer as wire bytes, in buf when it fits
// (buf must hold maxUpstreamMsg bytes), with its parse. The query goes out
// with a fresh random ID per attempt (the agent's ID never leaves the
// supervisor) and otherwise unchanged, so EDNS0 options and the DO bit pass
// through; the answer carries that random ID, so callers must write the
// agent's back. An answer that does not match the query's ID and question,
// or is malformed, is discarded. A truncated UDP answer is asked again
// over TCP. Upstreams fail over in order on errors, timeouts, SERVFAIL and
// REFUSED (the last upstream's SERVFAIL or REFUSED is the answer); the
// whole exchange ends within budget(), or when ctx ends or
// the forwarder closes. rrs is scratch space for the answer's index.
func (f *forwarder) exchange(ctx context.Context, query []byte, overTCP bool, buf []byte, rrs []rrRef) ([]byte, wireAnswer, error) {
	end := time.Now().Add(f.budget())
	var (
		fallback  []byte // a SERVFAIL/REFUSED/truncated answer, if nothing better comes
		fallbackA wireAnswer
		lastErr   = errNoReply
	)
	network := "udp"
	if overTCP {
		network = "tcp"
	}
	for i, up := range f.upstreams {
		if ctx.Err() != nil || !time.Now().Before(end) {
			break
		}
		last := i == len(f.upstreams)-1
		msg, a, err := f.attempt(up, network, query, buf, rrs, end)
		if err == nil && a.truncated && network == "udp" {
			fallback, fallbackA = append([]byte(nil), msg...), a
			msg, a, err = f.attempt(up, "tcp", query, buf, rrs, end)
		}
		if err != nil {
			lastErr = fmt.Errorf("dns: upstream %s: %w", up, err)
			continue
		}
		if (a.rcode == rcodeServFail || a.rcode == rcodeRefused) && !last {
			fallback, fallbackA = append([]byte(nil), msg...), a
			lastErr = fmt.Errorf("dns: upstream %s: %s", up, rcodeString(a.rcode))
			continue
		}
		return msg, a, nil
	}
	if fallback != nil {
		// Re-parse the copy so the record index points into it.
		a, err := parseAnswer(fallback, fallback, rrs)
		if err != nil {
			return nil, wireAnswer{}, fmt.Errorf("dns: fallback answer: %w", err)
		}
		a.truncated = fallbackA.truncated
		return fallback, a, nil
	}
	return nil, wireAnswer{}, lastErr
}

// Rcodes the forwarder fails over on (RFC 1035).
const (
	rcodeServFail = 2
	rcodeRefused  = 5
)

// attempt does one round trip with one upstream. Over UDP, packets that do
// not parse or do not match are skipped (a spoofed packet must not end the
// wait for the real one); over TCP, the stream is the upstream's own and a
// bad answer ends the attempt.
func (f *forwarder) attempt(upstream, network string, query, buf []byte, rrs []rrRef, end time.Time) (msg []byte, a wireAnswer, err error) {
	deadline := time.Now().Add(f.timeout)
	if end.Before(deadline) {
		deadline = end
	}
	c, err := f.conn(network, upstream, deadline)
	if err != nil {
		return nil, wireAnswer{}, err
	}
	defer func() { f.release(c, network, upstream, err == nil) }()

	id := uint16(rand.Uint32())
	binary.BigEndian.PutUint16(query, id)
	if network == "udp" {
		return f.attemptUDP(c, query, buf, rrs)
	}
	return f.attemptTCP(c, query, buf, rrs)
}

func (f *forwarder) attemptUDP(c *upstreamConn, query, buf []byte, rrs []rrRef) ([]byte, wireAnswer, error) {
	if _, err := c.Write(query); err != nil {
		return nil, wireAnswer{}, fmt.Errorf("udp write: %w", err)
	}
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, wireAnswer{}, fmt.Errorf("udp read: %w", err)
		}
		if a, err := parseAnswer(buf[:n], query, rrs); err == nil {
			return buf[:n], a, nil
		}
	}
}

func (f *forwarder) attemptTCP(c *upstreamConn, query, buf []byte, rrs []rrRef) ([]byte, wireAnswer, error) {
	framed := make([]byte, 2+len(query))
	binary.BigEndian.PutUint16(framed, uint16(len(query)))
	copy(framed[2:], query)
	if _, err := c.Write(framed); err != nil {
		return nil, wireAnswer{}, fmt.Errorf("tcp write: %w", err)
	}
	var prefix [2]byte
	if _, err := io.ReadFull(c, prefix[:]); err != nil {
		return nil, wireAnswer{}, fmt.Errorf("tcp read: %w", err)
	}
	n := int(binary.BigEndian.Uint16(prefix[:]))
	if _, err := io.ReadFull(c, buf[:n]); err != nil {
		return nil, wireAnswer{}, fmt.Errorf("tcp read: %w", err)
	}
	a, err := parseAnswer(buf[:n], query, rrs)
	if err != nil {
		return nil, wireAnswer{}, fmt.Errorf("tcp answer: %w", err)
	}
	return buf[:n], a, nil
}
