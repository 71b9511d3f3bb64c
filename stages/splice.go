package stages

import (
	"context"
	"sync"
	"time"

	"github.com/forge/forge-supervisor/conn"
)

// spliceStage relays allowed connections. Each relay holds one of MaxConns
// slots for its lifetime; when all are taken the stage stops reading its
// input, which pushes back through dial, policy, classify, origdst and
// finally accept. When ctx ends, live relays are cut and awaited.
func (e *Engine) spliceStage(ctx context.Context, in <-chan *conn.Conn) {
	slots := make(chan struct{}, e.cfg.MaxConns)
	var live sync.WaitGroup
	var mu sync.Mutex
	active := make(map[*conn.Conn]struct{})
	stopCut := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		for c := range active {
			cutConn(c)
		}
	})
	defer stopCut()
	for c := range in {
		slots <- struct{}{}
		mu.Lock()
		if ctx.Err() != nil {
			cutConn(c)
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
			<-slots
			e.finish(c)
		}()
	}
	live.Wait()
}

// cutConn closes both sides of a live relay, ending both copy loops.
func cutConn(c *conn.Conn) {
	_ = c.Client.Close()
	if c.Upstream != nil {
		_ = c.Upstream.Close()
	}
}

// relay replays the peeked bytes upstream, then copies both directions
// until each has seen EOF (propagated as a half-close) or one fails (both
// are then closed). It returns when both directions are done.
func (e *Engine) relay(c *conn.Conn) {
	defer cutConn(c)
	idle := newIdleClock(e.cfg.IdleTimeout)
	if len(c.Greeting) > 0 {
		_ = c.Client.SetWriteDeadline(time.Now().Add(e.cfg.IdleTimeout))
		if _, err := c.Client.Write(c.Greeting); err != nil {
			return
		}
	}
	if len(c.Peeked) > 0 {
		_ = c.Upstream.SetWriteDeadline(time.Now().Add(e.cfg.IdleTimeout))
		n, err := c.Upstream.Write(c.Peeked)
		c.BytesUp += int64(n)
		if err != nil {
			return
		}
	}
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		n, err := copyHalf(c.Upstream, c.Client, e.pipes, e.bufs, idle)
		c.BytesUp += n
		if err != nil {
			cutConn(c)
			return
		}
		_ = c.Upstream.CloseWrite()
	}()
	n, err := copyHalf(c.Client, c.Upstream, e.pipes, e.bufs, idle)
	c.BytesDown = n
	if err != nil {
		cutConn(c)
	} else {
		_ = c.Client.CloseWrite()
	}
	<-upDone
}
