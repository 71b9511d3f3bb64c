package stages

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/forge/forge-supervisor/conn"
)

// route says where a connection goes after a stage: the index of the next
// stage in the table, or routeDone once it was handed on for good (a relay
// started, or it was audited). A stage only routes forward, which is what
// lets shutdown close the inputs in table order.
type route uint8

const (
	routeClassify route = iota
	routeHandshake
	routePolicy
	routeDial
	routeDeny
	routeDone
)

// stage is one row of the engine's table: adding a stage is one row and
// one route constant.
type stage struct {
	name    string
	workers int
	run     func(context.Context, *conn.Conn) route
}

// table lists the stages in route order.
func (e *Engine) table() [routeDone]stage {
	w := e.cfg.Workers
	handshakeWorkers := w.Handshake
	if e.cfg.Explicit {
		// The fallback front: every connection starts with a handshake.
		handshakeWorkers = w.Classify
	}
	return [routeDone]stage{
		routeClassify:  {"classify", w.Classify, e.classify},
		routeHandshake: {"handshake", handshakeWorkers, e.handshake},
		routePolicy:    {"policy", w.Policy, e.decide},
		routeDial:      {"dial", w.Dial, e.dial},
		routeDeny:      {"deny", w.Deny, e.deny},
	}
}

// Serve runs the pipeline until ctx ends, then drains it and returns once
// every connection has ended and been audited.
func (e *Engine) Serve(ctx context.Context) error {
	if len(e.listeners) == 0 {
		return fmt.Errorf("stages: Serve before Listen")
	}
	var g errgroup.Group
	var accepting sync.WaitGroup
	for _, ln := range e.listeners {
		accepting.Add(1)
		g.Go(func() error {
			defer accepting.Done()
			return e.acceptLoop(ctx, ln)
		})
	}
	g.Go(func() error { return e.closeOnDone(ctx) })
	table := e.table()
	var done [routeDone]sync.WaitGroup
	for r, st := range table {
		for range st.workers {
			done[r].Add(1)
			g.Go(func() error {
				defer done[r].Done()
				e.stageWorker(ctx, route(r), st)
				return nil
			})
		}
	}
	g.Go(func() error {
		e.drain(&accepting, &done)
		return nil
	})
	g.Go(func() error { return e.cutOnDone(ctx) })
	if e.cfg.Metrics != nil {
		stop := make(chan struct{})
		defer close(stop)
		go e.reportQueues(stop, table)
	}
	err := g.Wait()
	e.pipes.Close()
	return err
}

// stageWorker runs one stage's function for each connection of its input
// and routes the connection on.
func (e *Engine) stageWorker(ctx context.Context, r route, st stage) {
	for c := range e.queues[r] {
		next := st.run(ctx, c)
		if next == routeDone {
			continue
		}
		if next <= r {
			// A stage routing backwards would break the drain order; it
			// is a bug, and the connection is denied rather than lost.
			e.cfg.Log.Error("stage_routed_backwards", zap.String("stage", st.name), zap.Uint8("next", uint8(next)))
			c.Reason = ReasonClassifyError
			next = routeDeny
			if r == routeDeny {
				e.finish(c)
				continue
			}
		}
		e.queues[next] <- c
	}
}

// drain closes the stages' inputs in table order once accepting has
// ended: when stage r's input closes, every stage that could route to it
// is done. After the dial stage, the live relays are awaited.
func (e *Engine) drain(accepting *sync.WaitGroup, done *[routeDone]sync.WaitGroup) {
	accepting.Wait()
	for r := range e.queues {
		if r > 0 {
			done[r-1].Wait()
		}
		close(e.queues[r])
	}
	done[routeDeny].Wait()
	e.live.wait()
}

// closeOnDone closes the listeners when ctx ends, which ends the accept
// loops.
func (e *Engine) closeOnDone(ctx context.Context) error {
	<-ctx.Done()
	e.closeListeners()
	return nil
}

// cutOnDone cuts the live relays at shutdown, and every relay the
// draining pipeline starts later.
func (e *Engine) cutOnDone(ctx context.Context) error {
	<-ctx.Done()
	e.live.cutAll()
	return nil
}

// reportQueues samples the stages' input depths into the queue-depth
// gauge.
func (e *Engine) reportQueues(stop <-chan struct{}, table [routeDone]stage) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		for r, st := range table {
			e.cfg.Metrics.QueueDepth.WithLabelValues(st.name).Set(float64(len(e.queues[r])))
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// observe records how long a connection spent in a stage.
func (e *Engine) observe(stage string, since time.Time) time.Time {
	now := time.Now()
	if e.cfg.Metrics != nil {
		e.cfg.Metrics.StageLatency.WithLabelValues(stage).Observe(now.Sub(since).Seconds())
	}
	return now
}
