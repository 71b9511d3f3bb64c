package main

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/forge/forge-supervisor/actors"
	"github.com/forge/forge-supervisor/jail"
	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
)

// policyReload returns the reload of SIGHUP and of the file watcher: load
// the file (with load), and swap the pointer only when it loaded, then
// call onSwap (may be nil). A broken file keeps the previous policy, which
// the log (policy_reload_failed), the metrics and /readyz's policy detail
// all say.
func policyReload(path string, load func(string) (*policy.Policy, error), current *atomic.Pointer[policy.Policy],
	audit *obs.Auditor, health *obs.Health, onSwap func()) func() error {
	return func() error {
		t := time.Now()
		p, err := load(path)
		if err != nil {
			audit.PolicyReloadFailed(path, err)
			old := current.Load()
			health.Set(obs.PartPolicy, true, fmt.Sprintf("%s; last reload failed, previous policy in force: %v", old.Mode(), err))
			return err
		}
		current.Store(p)
		if onSwap != nil {
			onSwap()
		}
		health.Set(obs.PartPolicy, true, string(p.Mode()))
		audit.PolicyReloaded(obs.PolicyReload{Path: path, Rules: p.RuleCount(), Mode: string(p.Mode()), Duration: time.Since(t)})
		return nil
	}
}

// watchFiles is the actor that watches the policy file (a change requests
// a reload on reloads, served by the agent loop's reloader like SIGHUP)
// and the seccomp profile (a change is checked and logged: it applies to
// the next agent start).
func watchFiles(cfg Config, reloads chan<- struct{}, audit *obs.Auditor, log *zap.Logger) actors.Actor {
	w := actors.Watch{
		Paths: []string{cfg.PolicyPath, cfg.SeccompPath},
		Log:   log,
		OnChange: func(path string) {
			if path == cfg.SeccompPath {
				audit.SeccompProfileChanged(path, jail.CheckProfile(path))
				return
			}
			select {
			case reloads <- struct{}{}:
			default: // one pending request covers this change too
			}
		},
	}
	return func(ctx context.Context) error { return w.Run(ctx) }
}

// agentOutput relays the agent's output into the log sink: agent_output
// records (never sampled, never filtered by the log level), or raw lines.
func agentOutput(mode string, sink *obs.Sink) actors.Output {
	if mode == actors.OutputRaw {
		return actors.Output{Mode: actors.OutputRaw, Stdout: sink.Agent(), Stderr: os.Stderr}
	}
	log, _ := obs.NewLogger(sink.Agent(), "info") // "info" always parses
	return actors.Output{Mode: actors.OutputJSON, Log: log}
}
