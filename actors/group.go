// Package actors holds the supervisor's long-lived goroutines: each owns its
// state and talks to the others by channels. Group runs them under one
// context; RunAgent is the PID-1 actor that runs the jailed agent.
package actors

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
)

// Actor is a long-lived goroutine body. It runs until ctx is cancelled or it
// fails; it must return promptly once ctx is done.
type Actor func(ctx context.Context) error

// Group supervises actors: the first one to return — with an error, or with
// nil while the group is still running (a server has no business stopping on
// its own, and the agent's exit ends the supervisor) — cancels all the others.
// Wait returns the first error.
type Group struct {
	eg     *errgroup.Group
	ctx    context.Context
	cancel context.CancelFunc
}

// NewGroup returns a group whose actors run under a child of parent, and
// that child context.
func NewGroup(parent context.Context) (*Group, context.Context) {
	ctx, cancel := context.WithCancel(parent)
	eg, ctx := errgroup.WithContext(ctx)
	return &Group{eg: eg, ctx: ctx, cancel: cancel}, ctx
}

// Go starts actor in its own goroutine; name prefixes its error.
func (g *Group) Go(name string, actor Actor) {
	g.eg.Go(func() error {
		defer g.cancel()
		if err := actor(g.ctx); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// Wait blocks until every actor has returned and returns the first error
// (nil when they all stopped cleanly).
func (g *Group) Wait() error {
	defer g.cancel()
	return g.eg.Wait()
}
