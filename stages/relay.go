package stages

import (
	"sync"
	"time"

	"github.com/forge/forge-supervisor/conn"
)

// relays is the splice stage: allowed connections relayed, two goroutines
// each, started by the dial stage's workers as soon as the upstream
// answers (a hand-off to a dispatcher goroutine first would put one more
// scheduler round trip before the request reaches the upstream). Their
// number is bounded by admission at accept: MaxConns connections in the
// engine at most. Shutdown cuts live relays and waits for them.
type relays struct {
	mu     sync.Mutex
	active map[*conn.Conn]struct{}
	cut    bool
	live   sync.WaitGroup
}

func newRelays() *relays {
	return &relays{active: make(map[*conn.Conn]struct{})}
}

// start relays c with run in a goroutine of its own, then calls done. A
// connection that arrives after the cut is reset at once; run then sees
// its sockets closed and ends.
func (r *relays) start(c *conn.Conn, run, done func(*conn.Conn)) {
	r.mu.Lock()
	if r.cut {
		abortConn(c)
	}
	r.active[c] = struct{}{}
	r.live.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.live.Done()
		run(c)
		r.mu.Lock()
		delete(r.active, c)
		r.mu.Unlock()
		done(c)
	}()
}

// cutAll resets every live relay and every one started later.
func (r *relays) cutAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut = true
	for c := range r.active {
		abortConn(c)
	}
}

// wait returns when every relay started has ended and been audited.
func (r *relays) wait() { r.live.Wait() }

// closeConn closes both sides after a relay that ended normally.
func closeConn(c *conn.Conn) {
	_ = c.Client.Close()
	if c.Upstream != nil {
		_ = c.Upstream.Close()
	}
}

// abortConn resets both sides (SO_LINGER 0): a relay cut by an error on
// either side or by shutdown must not look like a complete transfer to
// the other side — a truncated response that ends in a FIN could be taken
// for a whole one.
func abortConn(c *conn.Conn) {
	_ = c.Client.SetLinger(0)
	if c.Upstream != nil {
		_ = c.Upstream.SetLinger(0)
	}
	closeConn(c)
}

// relay replays the peeked bytes upstream, then copies both directions
// until each has seen EOF (propagated as a half-close) or one fails (both
// are then closed). It returns when both directions are done.
func (e *Engine) relay(c *conn.Conn) {
	aborted := false
	defer func() {
		if aborted {
			abortConn(c)
			return
		}
		closeConn(c)
	}()
	idle := newIdleClock(e.cfg.IdleTimeout)
	if len(c.Greeting) > 0 {
		_ = c.Client.SetWriteDeadline(time.Now().Add(e.cfg.IdleTimeout))
		if _, err := c.Client.Write(c.Greeting); err != nil {
			aborted = true
			return
		}
	}
	// Cleartext HTTP from the transparent front goes through the request
	// gate, which replays the peeked bytes itself and checks every request
	// on the connection, not only the first.
	// Cleartext HTTP/1.x is gated request by request: transparent
	// connections, and the explicit proxy's absolute-form requests (not its
	// CONNECT tunnels, which have a greeting and carry TLS).
	gated := c.Proto == conn.ProtoHTTP &&
		(c.Front == conn.FrontTransparent || (c.Front == conn.FrontHTTPProxy && c.Greeting == nil))
	if len(c.Peeked) > 0 && !gated {
		_ = c.Upstream.SetWriteDeadline(time.Now().Add(e.cfg.IdleTimeout))
		n, err := c.Upstream.Write(c.Peeked)
		c.BytesUp += int64(n)
		if err != nil {
			aborted = true
			return
		}
	}
	// The server's direction gets a goroutine of its own; the client's
	// runs here, so the request the upstream waits for is written without
	// first waiting for a new goroutine to be scheduled.
	downFailed := make(chan bool, 1)
	var log *conn.Answers
	if gated {
		log = conn.NewAnswers()
	}
	go func() {
		var n int64
		var err error
		if gated {
			n, err = e.answersDown(c, log, idle)
		} else {
			n, err = copyHalf(c.Client, c.Upstream, e.pipes, e.bufs, idle)
		}
		c.BytesDown += n
		if err != nil {
			abortConn(c) // also ends the other direction's copy
			downFailed <- true
			return
		}
		_ = c.Client.CloseWrite()
		downFailed <- false
	}()
	if gated {
		aborted = e.gateUp(c, log, idle)
	} else {
		n, err := copyHalf(c.Upstream, c.Client, e.pipes, e.bufs, idle)
		c.BytesUp += n
		if err != nil {
			abortConn(c)
			aborted = true
		} else {
			_ = c.Upstream.CloseWrite()
		}
	}
	if <-downFailed {
		aborted = true
	}
}
