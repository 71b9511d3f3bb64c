package actors_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/actors"
)

func TestGroupFirstErrorCancelsRest(t *testing.T) {
	g, _ := actors.NewGroup(context.Background())
	boom := errors.New("listener closed")
	stopped := make(chan struct{})
	g.Go("dns", func(ctx context.Context) error { return boom })
	g.Go("proxy", func(ctx context.Context) error {
		<-ctx.Done()
		close(stopped)
		return nil
	})
	err := g.Wait()
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "dns: ") {
		t.Fatalf("Wait = %v, want dns: %v", err, boom)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("the other actor was not cancelled")
	}
}

func TestGroupCleanStopCancelsRest(t *testing.T) {
	g, ctx := actors.NewGroup(context.Background())
	g.Go("agent", func(ctx context.Context) error { return nil })
	g.Go("health", func(ctx context.Context) error { <-ctx.Done(); return nil })
	if err := g.Wait(); err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
	if ctx.Err() == nil {
		t.Fatal("group context still live after Wait")
	}
}

func TestGroupParentCancel(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	g, _ := actors.NewGroup(parent)
	g.Go("server", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	time.AfterFunc(20*time.Millisecond, cancel)
	if err := g.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
}
