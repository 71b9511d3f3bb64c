package actors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/jail"
)

const (
	// DefaultGrace is how long a terminating agent gets between SIGTERM and
	// SIGKILL when AgentConfig.Grace is zero (Docker's stop timeout is 10s).
	DefaultGrace = 10 * time.Second
	// signalBuffer is the signal channel's capacity. signal.Notify drops
	// signals when the channel is full; a burst larger than this (say, many
	// SIGWINCH) can lose only duplicates, and a lost SIGCHLD is covered by
	// reapBackstop.
	signalBuffer = 64
	// reapBackstop is how often the loop reaps even without SIGCHLD, so a
	// SIGCHLD dropped by a full channel delays reaping by at most this.
	reapBackstop = time.Second
	// exitStartFailed is returned with the error when the agent never ran,
	// the shell's "cannot execute" status.
	exitStartFailed = 126
)

// forwardedSignals are passed on to the agent's process group.
var forwardedSignals = []os.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH,
}

// AgentConfig says how to run the agent.
type AgentConfig struct {
	Spec jail.Spec
	// Grace is the time between SIGTERM and SIGKILL; 0 means DefaultGrace.
	Grace time.Duration
	// Reload is called on SIGHUP (policy reload), in its own goroutine so a
	// slow reload never delays reaping; an error is logged and the old policy
	// stays. Reloads requested while one runs are coalesced into one. May be nil.
	Reload func() error
	// Log receives lifecycle events; nil discards them.
	Log *zap.Logger
	// OnStart is called with the agent's pid once it is started (e.g. to
	// report readiness). It runs on the signal loop: keep it short. May be nil.
	OnStart func(pid int)
	// ReloadRequests asks for a Reload as SIGHUP does (e.g. from a file
	// watcher), through the same one-at-a-time reloader. May be nil.
	ReloadRequests <-chan struct{}
	// KeepSIGHUP: a SIGHUP that requests a Reload is not forwarded to the
	// agent (one that does not handle HUP would die on every reload). The
	// zero value forwards it, as the other signals are. Without Reload,
	// SIGHUP is always forwarded.
	KeepSIGHUP bool
	// Output says how the agent's stdout and stderr are relayed; the zero
	// value wraps each line in an agent_output record in Log. The agent
	// never inherits the supervisor's own stdout or stderr.
	Output Output
}

// RunAgent starts the jailed agent and runs the PID-1 loop until the agent
// exits, returning its exit code (128+N when killed by signal N).
//
// One goroutine — the caller's — owns signals and reaping:
//   - SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH are
//     forwarded to the agent's process group; SIGHUP also requests Reload
//     (and is kept from the agent with KeepSIGHUP), as does a value on
//     ReloadRequests; after SIGTERM or SIGINT the group gets Grace, then
//     SIGKILL.
//   - The agent's stdout and stderr are pipes relayed as Output says; its
//     last lines are relayed before RunAgent returns.
//   - ctx cancelled (the supervisor is stopping) terminates the agent the same
//     way: SIGTERM, Grace, SIGKILL.
//   - Every terminated child is reaped with wait4(-1): the agent and any
//     orphan reparented to this process, which is PID 1 or else is made a
//     child subreaper. The agent's status is recognised by its pid; os/exec's
//     Wait is never used, so nothing races the reaper for it.
//   - When the agent exits, what remains of its process group is killed.
//
// RunAgent reaps every child of the process, so nothing else in the process
// may start (and wait for) child processes while it runs. The error is
// non-nil only when the agent could not be started (code 126) or the process
// could not become a subreaper.
func RunAgent(ctx context.Context, cfg AgentConfig) (exitCode int, err error) {
	log := cfg.Log
	if log == nil {
		log = zap.NewNop()
	}
	grace := cfg.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	if os.Getpid() != 1 {
		// Orphans of the agent then come to us instead of the real init.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return exitStartFailed, fmt.Errorf("agent: prctl(PR_SET_CHILD_SUBREAPER): %w", err)
		}
	}
	// Subscribe before the agent exists, so none of its signals is missed.
	sigs := make(chan os.Signal, signalBuffer)
	signal.Notify(sigs, append([]os.Signal{syscall.SIGCHLD}, forwardedSignals...)...)
	defer signal.Stop(sigs)

	out := cfg.Output
	if out.Log == nil {
		out.Log = log
	}
	pid, relay, err := startAgent(cfg.Spec, out)
	if err != nil {
		return exitStartFailed, err
	}
	// After the loop: the agent's last lines are relayed before RunAgent
	// returns (and the caller logs agent_exited).
	defer relay.stop()
	// The agent_started audit event is the caller's (OnStart): it owns the
	// schema, and argv may carry secrets that must not reach the log.
	if cfg.OnStart != nil {
		cfg.OnStart(pid)
	}

	r := newReloader(cfg.Reload, log)
	defer r.stop()
	l := &agentLoop{pid: pid, grace: grace, log: log, reload: r, keepHUP: cfg.KeepSIGHUP && cfg.Reload != nil}
	return l.run(ctx, sigs, cfg.ReloadRequests), nil
}

// startAgent starts the jail child with its stdout and stderr on the
// relay's pipes, and gives up os/exec's handle on it: the reaper alone
// collects its status.
func startAgent(spec jail.Spec, out Output) (int, *relay, error) {
	cmd, err := jail.Command(spec)
	if err != nil {
		return 0, nil, fmt.Errorf("agent: %w", err)
	}
	stdoutW, stderrW, relay, err := startRelay(out)
	if err != nil {
		for _, f := range cmd.ExtraFiles {
			f.Close()
		}
		return 0, nil, fmt.Errorf("agent: %w", err)
	}
	// Not the supervisor's own: an agent sharing the log's file
	// description could forge, split or (O_NONBLOCK) suppress audit lines.
	cmd.Stdout, cmd.Stderr = stdoutW, stderrW
	err = cmd.Start()
	for _, f := range cmd.ExtraFiles {
		f.Close() // the child holds its own copy of the jail config
	}
	stdoutW.Close() // the child holds its own copies of the write ends
	stderrW.Close()
	if err != nil {
		relay.stop()
		return 0, nil, fmt.Errorf("agent: start jail: %w", err)
	}
	pid := cmd.Process.Pid
	if err := cmd.Process.Release(); err != nil {
		relay.stop()
		return 0, nil, fmt.Errorf("agent: release process handle: %w", err)
	}
	return pid, relay, nil
}

// agentLoop is the state owned by the signal-and-reap goroutine.
type agentLoop struct {
	pid     int // also the process group id: the jail child calls setsid
	grace   time.Duration
	log     *zap.Logger
	reload  *reloader
	keepHUP bool // SIGHUP reloads only

	killTimer *time.Timer // non-nil once termination has begun
}

func (l *agentLoop) run(ctx context.Context, sigs <-chan os.Signal, reloads <-chan struct{}) int {
	done := ctx.Done()
	backstop := time.NewTicker(reapBackstop)
	defer backstop.Stop()
	defer func() {
		if l.killTimer != nil {
			l.killTimer.Stop()
		}
	}()
	var killC <-chan time.Time
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGCHLD {
				if code, exited := l.reap(); exited {
					return code
				}
				continue
			}
			if sig == syscall.SIGHUP {
				l.reload.request()
				if l.keepHUP {
					continue
				}
			}
			l.signalGroup(sig.(syscall.Signal))
			if sig == syscall.SIGTERM || sig == syscall.SIGINT {
				killC = l.startGrace(killC)
			}
		case <-reloads:
			l.reload.request()
		case <-backstop.C:
			if code, exited := l.reap(); exited {
				return code
			}
		case <-done:
			done = nil // cancellation is acted on once
			l.log.Info("agent_terminating", zap.String("reason", "supervisor stopping"), zap.Error(context.Cause(ctx)))
			l.signalGroup(syscall.SIGTERM)
			killC = l.startGrace(killC)
		case <-killC:
			killC = nil
			l.log.Warn("agent_killed", zap.Duration("grace", l.grace), zap.String("reason", "still running after the grace period"))
			l.signalGroup(syscall.SIGKILL)
		}
	}
}

// startGrace arms the SIGKILL timer once; later SIGTERMs do not extend it.
func (l *agentLoop) startGrace(killC <-chan time.Time) <-chan time.Time {
	if l.killTimer != nil {
		return killC
	}
	l.killTimer = time.NewTimer(l.grace)
	return l.killTimer.C
}

// reap collects terminated children; when the agent is among them it kills
// the rest of the agent's group, and returns the agent's exit code.
func (l *agentLoop) reap() (int, bool) {
	r, err := reapAll(l.pid)
	if err != nil {
		l.log.Error("reap_failed", zap.Error(err))
	}
	if !r.agentExited {
		return 0, false
	}
	// agent_exited is the caller's audit event (it knows the schema).
	code := exitCode(r.agentStatus)
	// Nothing of the agent outlives it: its helpers left in the group go too.
	l.signalGroup(syscall.SIGKILL)
	if _, err := reapAll(l.pid); err != nil {
		l.log.Error("reap_failed", zap.Error(err))
	}
	return code, true
}

// signalGroup sends sig to the agent's process group. ESRCH (the group is
// gone) is expected near exit and not an error.
func (l *agentLoop) signalGroup(sig syscall.Signal) {
	err := unix.Kill(-l.pid, sig)
	if err == nil || errors.Is(err, unix.ESRCH) {
		return
	}
	l.log.Error("signal_forward_failed", zap.String("signal", unix.SignalName(sig)), zap.Int("pgid", l.pid), zap.Error(err))
}

// reloader runs Reload requests one at a time on its own goroutine, which
// ends in stop.
type reloader struct {
	fn   func() error
	log  *zap.Logger
	reqs chan struct{}
	wg   sync.WaitGroup
}

func newReloader(fn func() error, log *zap.Logger) *reloader {
	r := &reloader{fn: fn, log: log, reqs: make(chan struct{}, 1)}
	if fn == nil {
		return r
	}
	r.wg.Add(1)
	go r.serve()
	return r
}

func (r *reloader) serve() {
	defer r.wg.Done()
	// Reload itself writes policy_reloaded / policy_reload_failed: one
	// line per reload, in the audit schema.
	for range r.reqs {
		_ = r.fn()
	}
}

// request asks for a reload; one already pending absorbs it.
func (r *reloader) request() {
	if r.fn == nil {
		r.log.Info("policy_reload_skipped", zap.String("reason", "no reload function"))
		return
	}
	select {
	case r.reqs <- struct{}{}:
	default:
	}
}

// stop ends the reload goroutine after any reload in progress.
func (r *reloader) stop() {
	close(r.reqs)
	r.wg.Wait()
}
