package stages

import (
	"context"
	"sync"
	"time"

	"github.com/forge/forge-supervisor/conn"
)

// spliceStage relays allowed connections, two goroutines each. Their number
// is bounded by admission at accept (MaxConns connections in the engine
// at most). When ctx ends, live relays are cut and awaited.
func (e *Engine) spliceStage(ctx context.Context, in <-chan *conn.Conn) {
	var live sync.WaitGroup
	var mu sync.Mutex
	active := make(map[*conn.Conn]struct{})
	stopCut := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		for c := range active {
			abortConn(c)
		}
	})
	defer stopCut()
	for c := range in {
		mu.Lock()
		if ctx.Err() != nil {
			abortConn(c)
		}
		active[c] = struct{}{}
		mu.Unlock()
		live.Add(1)
		go func() {
			defer live.Done()
			e.relay(c)
			mu.Lock()
			delete(active, c)
			mu.Unlock()
			e.finish(c)
		}()
	}
	live.Wait()
}

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
	upDone := make(chan bool, 1)
	go func() {
		if gated {
			upDone <- e.gateUp(c, idle)
			return
		}
		n, err := copyHalf(c.Upstream, c.Client, e.pipes, e.bufs, idle)
		c.BytesUp += n
		if err != nil {
			abortConn(c) // also ends the other direction's copy
			upDone <- true
			return
		}
		_ = c.Upstream.CloseWrite()
		upDone <- false
	}()
	n, err := copyHalf(c.Client, c.Upstream, e.pipes, e.bufs, idle)
	c.BytesDown = n
	if err != nil {
		abortConn(c)
		aborted = true
	} else {
		_ = c.Client.CloseWrite()
	}
	if <-upDone {
		aborted = true
	}
}
