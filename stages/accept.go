package stages

import (
	"context"
	"errors"
	"net"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/conn"
)

// Accept backoff when the process runs out of file descriptors: wait,
// doubling up to a cap, instead of spinning on EMFILE.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// acceptLoop accepts until ctx ends (the listener is closed then). It takes
// an admission token before each accept: with MaxConns connections inside
// the engine it stops accepting, and further clients wait in the kernel's
// accept queue — backpressure, not failure. Sending to the entry stage also blocks
// when the first stage is busy.
func (e *Engine) acceptLoop(ctx context.Context, ln *net.TCPListener) error {
	backoff := time.Duration(0)
	for {
		select {
		case e.admitted <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := ln.AcceptTCP()
		if err != nil {
			<-e.admitted
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if isResourceExhausted(err) {
				backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
				e.cfg.Log.Warn("accept_backoff", zap.Error(err), zap.Duration("backoff", backoff))
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return nil
				}
				continue
			}
			// Transient per-connection errors (ECONNABORTED...) are
			// already retried by the net package; anything else is
			// logged and retried once after a short pause.
			e.cfg.Log.Warn("accept_error", zap.Error(err))
			time.Sleep(acceptBackoffMin)
			continue
		}
		backoff = 0
		cc := &conn.Conn{ID: e.nextID.Add(1), Accepted: time.Now(), Client: c}
		if e.cfg.Metrics != nil {
			e.cfg.Metrics.Active.Inc()
		}
		e.queues[e.entry] <- cc
	}
}

func isResourceExhausted(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) ||
		errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM)
}
