package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/forge/forge-supervisor/actors"
	fdns "github.com/forge/forge-supervisor/dns"
	"github.com/forge/forge-supervisor/jail"
	"github.com/forge/forge-supervisor/kverdict"
	"github.com/forge/forge-supervisor/localaddr"
	"github.com/forge/forge-supervisor/nft"
	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
	"github.com/forge/forge-supervisor/stages"
)

// supervise starts everything in order — policy → interception → DNS,
// proxy and health servers → agent — and stops it in reverse: each step
// that starts something returns the function that undoes it. It returns
// the agent's exit status, or an error when the supervisor could not start.
func supervise(cfg Config, argv []string, log *zap.Logger, sink *obs.Sink) (int, error) {
	if len(argv) == 0 {
		return 0, errors.New("no agent command: usage: forge-supervisor [flags] [--] COMMAND [ARGS...]")
	}
	s := newSupervisor(cfg, log, sink)
	pol, err := s.loadPolicy()
	if err != nil {
		return 0, err
	}
	in, undo, err := s.intercept()
	if err != nil {
		return 0, err
	}
	defer undo()
	srv, stop, err := s.startServers(in)
	if err != nil {
		return 0, err
	}
	defer stop()
	reloads := s.watchPolicy(srv)
	s.started(pol, in)
	code, agentErr := s.runAgent(argv, in, srv, reloads)
	// Reverse order: servers stop (draining live connections), then the
	// deferred undo removes the nft table.
	serverErr := srv.stop()
	s.audit.SupervisorStopped(s.stopReason(agentErr, serverErr), code, time.Since(s.start))
	if agentErr != nil {
		return 0, agentErr
	}
	return code, nil
}

// supervisor is what the steps of supervise share: the configuration, the
// policy everybody reads, and the observability every step reports to.
type supervisor struct {
	cfg         Config
	log         *zap.Logger
	sink        *obs.Sink // owns stdout: the supervisor's log and the agent's output
	start       time.Time
	current     atomic.Pointer[policy.Policy]
	metrics     *obs.Metrics
	denials     *obs.Denials
	pathMetrics *kverdict.Metrics
	audit       *obs.Auditor
	health      *obs.Health
}

func newSupervisor(cfg Config, log *zap.Logger, sink *obs.Sink) *supervisor {
	s := &supervisor{cfg: cfg, log: log, sink: sink, start: time.Now(), metrics: obs.NewMetrics(), denials: obs.NewDenials(cfg.DenialsSize)}
	s.metrics.WatchSink(sink)
	s.pathMetrics = kverdict.NewMetrics(s.metrics.Registry)
	s.audit = obs.NewAuditor(log, s.metrics, s.denials, obs.WithSampling(cfg.LogSample), countProxyPath(s.pathMetrics))
	s.health = obs.NewHealth(obs.PartPolicy, obs.PartInterception, obs.PartProxy, obs.PartDNS, obs.PartAgent)
	return s
}

// loadPolicy loads the first policy and checks the agent's seccomp
// profile: fail closed on any error.
func (s *supervisor) loadPolicy() (*policy.Policy, error) {
	pol, err := loadPolicyLogged(s.cfg, s.log)
	if err != nil {
		return nil, err
	}
	s.current.Store(pol)
	s.health.Set(obs.PartPolicy, true, string(pol.Mode()))
	if err := jail.CheckProfile(s.cfg.SeccompPath); err != nil {
		return nil, err
	}
	if err := checkForgeSeccomp(s.cfg); err != nil {
		return nil, err
	}
	return pol, nil
}

// interception is how the agent's traffic reaches the supervisor.
type interception struct {
	mode string // obs.InterceptionKernel or obs.InterceptionFallback
	// explicit: no nft rules; the agent is told of the proxy (fallback).
	explicit bool
	nft      *nft.Config
	// mark exempts the supervisor's own sockets from its nft rules. In the
	// fallback there are no rules, and setting SO_MARK needs CAP_NET_ADMIN
	// or CAP_NET_RAW, which the fallback may not have: 0 there.
	mark      uint32
	kernelLog *nft.LogReader // nil without rules or without nfnetlink_log
}

// intercept installs the kernel path, or loudly chooses the explicit
// fallback. The undo it returns removes the nft table.
func (s *supervisor) intercept() (*interception, func(), error) {
	cfg := s.cfg
	in := &interception{mode: obs.InterceptionKernel, nft: &nft.Config{Table: nft.DefaultTable,
		AgentUID: cfg.AgentUID, AgentGID: cfg.AgentGID, ProxyPort: cfg.ProxyPort, DNSPort: cfg.DNSPort,
		HealthPort: cfg.HealthPort, Mark: nft.DefaultMark, LocalPorts: cfg.AllowedLocalPorts,
		InboundPorts: cfg.InboundPorts, AllowMulticast: cfg.AllowMulticast}}
	undo := func() {}
	if err := nft.Probe(*in.nft); err != nil {
		if cfg.RequireKernel {
			return nil, nil, fmt.Errorf("kernel interception unavailable and FORGE_SUPERVISOR_REQUIRE_KERNEL is set: %w", err)
		}
		in.mode, in.explicit = obs.InterceptionFallback, true
		s.audit.InterceptionDegraded(err, fmt.Sprintf("explicit HTTP CONNECT/SOCKS5 proxy on 127.0.0.1:%d", cfg.ProxyPort))
	} else {
		// The log group is bound before the rules exist, so the first
		// denial already has a reader.
		in.kernelLog, in.nft.LogGroup = openKernelLog(s.audit)
		in.nft.FastPath = fastPath(cfg, *in.nft, s.pathMetrics, s.log)
		if err := nft.Install(*in.nft); err != nil {
			if in.kernelLog != nil {
				_ = in.kernelLog.Close()
			}
			return nil, nil, err
		}
		undo = func() {
			if err := nft.Remove(*in.nft); err != nil {
				s.log.Error("nft_remove_failed", zap.Error(err))
			}
		}
		in.mark = in.nft.Mark
	}
	s.health.Set(obs.PartInterception, true, in.mode)
	return in, undo, nil
}

// servers are the supervisor's listeners, running as one actors.Group.
type servers struct {
	group  *actors.Group
	ctx    context.Context // done when the group stops
	cancel context.CancelFunc
	fast   *kverdict.Path // nil without the kernel verdict path
	id     *identity
}

// stop cancels the servers, waits for them to drain, and returns the first
// server's failure.
func (v *servers) stop() error {
	v.cancel()
	return v.group.Wait()
}

// startServers binds the DNS proxy, the connection engine, the kernel
// verdict path and the health server before the agent starts (so a port
// in use is a startup error), then runs them. The cleanup it returns
// cancels them and releases the process-identity lookup.
func (s *supervisor) startServers(in *interception) (*servers, func(), error) {
	cfg := s.cfg
	upstreams := cfg.DNSUpstreams
	if len(upstreams) == 0 {
		var err error
		if upstreams, err = fdns.UpstreamsFromResolvConf("/etc/resolv.conf"); err != nil {
			return nil, nil, err
		}
	}
	// Process identity: looked up per connection and query only when the
	// policy reads input.process or the audit asks (FORGE_SUPERVISOR_AUDIT_PROCESS).
	// Without sock_diag it is off, and a policy that needs it denies
	// (process_unknown).
	id, err := newIdentity()
	if err != nil {
		s.log.Warn("process_identity_unavailable", zap.Error(err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cleanup := func() {
		cancel()
		id.close()
	}
	fail := func(err error) (*servers, func(), error) {
		cleanup()
		return nil, nil, err
	}
	learner := kverdict.NewLearner()
	dnsProxy, err := fdns.New(s.dnsConfig(in, upstreams, id, learner))
	if err != nil {
		return fail(err)
	}
	if err := dnsProxy.Listen(); err != nil {
		return fail(err)
	}
	var local *stages.LocalPolicy
	if !in.explicit {
		local = &stages.LocalPolicy{AgentUID: cfg.AgentUID, AllowedPorts: cfg.AllowedLocalPorts, Addrs: localaddr.New()}
	}
	engine, err := stages.New(stages.Config{
		Port: cfg.ProxyPort, Policy: &s.current, Resolver: dnsProxy, Audit: s.audit, Metrics: s.metrics, Log: s.log,
		SelfPorts:       []uint16{cfg.ProxyPort, cfg.DNSPort, cfg.HealthPort},
		ClassifyTimeout: cfg.ClassifyTimeout, DialTimeout: cfg.DialTimeout, IdleTimeout: cfg.IdleTimeout,
		Mark: in.mark, DryRun: cfg.DryRun, Explicit: in.explicit, Lookup: dnsProxy.Resolve,
		Identify: id.tcpHook(), IdentifyAlways: cfg.AuditProcess, Local: local,
	})
	if err != nil {
		return fail(err)
	}
	if err := engine.Listen(); err != nil {
		return fail(err)
	}
	s.health.Set(obs.PartProxy, true, "")
	s.health.Set(obs.PartDNS, true, "")
	fast, err := openFastPath(cfg, in.nft, &s.current, dnsProxy, learner, s.audit, s.pathMetrics, s.log)
	if err != nil {
		return fail(err)
	}
	srv := obs.NewServer(fmt.Sprintf(":%d", cfg.HealthPort), s.health, s.metrics, s.denials, s.log)
	if err := srv.Listen(); err != nil {
		return fail(err)
	}

	group, groupCtx := actors.NewGroup(ctx)
	group.Go("dns", dnsProxy.Serve)
	group.Go("proxy", engine.Serve)
	group.Go("health", srv.Serve)
	if fast != nil {
		group.Go("kverdict", fast.Run)
	}
	if !in.explicit {
		km := s.metrics.RegisterKernel(func() float64 { n, _ := nft.InboundDropped(*in.nft); return float64(n) })
		if in.kernelLog != nil {
			group.Go("kernel-log", func(ctx context.Context) error { return kernelDenials(ctx, in.kernelLog, s.audit, km) })
		}
	}
	s.health.SetAlive(true)
	return &servers{group: group, ctx: groupCtx, cancel: cancel, fast: fast, id: id}, cleanup, nil
}

// dnsConfig is the DNS proxy's configuration.
func (s *supervisor) dnsConfig(in *interception, upstreams []string, id *identity, learner *kverdict.Learner) fdns.Config {
	cfg := s.cfg
	dnsMetrics := obs.NewDNSMetrics(s.metrics)
	cacheHits, cacheMisses := dnsMetrics.CacheLookups.WithLabelValues(obs.CacheHit), dnsMetrics.CacheLookups.WithLabelValues(obs.CacheMiss)
	return fdns.Config{
		Port: cfg.DNSPort, Upstreams: upstreams, Policy: &s.current, DenyRcode: denyRcode(cfg.DNSDenyRcode),
		MinTTL: cfg.DNSMinTTL, CacheSize: cfg.DNSCacheSize, RateLimit: cfg.DNSRate, Mark: in.mark,
		AnswerCacheBytes: answerCacheBytes(cfg.DNSAnswerCacheBytes),
		WildcardBudget:   wildcardBudget(cfg, s.log), MaxLabels: cfg.DNSWildcardMaxLabels, MaxLabelLen: cfg.DNSWildcardMaxLabelLen,
		DryRun: cfg.DryRun, Audit: s.audit, Log: s.log, Learner: dnsLearner(*in.nft, learner),
		Identify: id.dnsHook(), IdentifyAlways: cfg.AuditProcess,
		Hooks: fdns.Hooks{
			Malformed:   s.metrics.DNSMalformed.Inc,
			RateLimited: s.metrics.DNSRateLimited.Inc,
			Learned:     func(n int) { s.metrics.LearnedNames.Set(float64(n)) },
			NonLocal:    dnsMetrics.NonLocal.Inc,
			CacheLookup: func(hit bool) {
				if hit {
					cacheHits.Inc()
				} else {
					cacheMisses.Inc()
				}
			},
			CacheSize: func(n int) { dnsMetrics.CacheBytes.Set(float64(n)) },
		},
	}
}

// watchPolicy starts the file watcher (FORGE_SUPERVISOR_WATCH_POLICY) on
// the server group; its reload requests are served by the agent loop, like
// SIGHUP.
func (s *supervisor) watchPolicy(srv *servers) chan struct{} {
	reloads := make(chan struct{}, 1)
	if s.cfg.WatchPolicy {
		srv.group.Go("watch", watchFiles(s.cfg, reloads, s.audit, s.log))
	}
	return reloads
}

// started writes supervisor_started: everything the agent relies on is up.
func (s *supervisor) started(pol *policy.Policy, in *interception) {
	cfg := s.cfg
	s.audit.SupervisorStarted(obs.SupervisorStarted{
		Version: version, PolicyPath: cfg.PolicyPath, PolicyMode: string(pol.Mode()), Rules: pol.RuleCount(),
		Interception: in.mode, DryRun: cfg.DryRun, ProxyPort: cfg.ProxyPort, DNSPort: cfg.DNSPort,
		HealthPort: cfg.HealthPort, Startup: time.Since(s.start),
	})
}

// runAgent runs the jailed agent until it exits or a server fails, and
// serves policy reloads (SIGHUP, the watcher) meanwhile. Its environment
// learns about the fallback proxy.
func (s *supervisor) runAgent(argv []string, in *interception, srv *servers, reloads chan struct{}) (int, error) {
	cfg := s.cfg
	env := os.Environ()
	if in.explicit {
		env = append(env, proxyEnv(cfg.ProxyPort)...)
	}
	// A reload that swapped the policy also refreshes the fast-path sets.
	var onSwap func()
	if srv.fast != nil {
		onSwap = srv.fast.Reload
	}
	load := func(string) (*policy.Policy, error) { return loadPolicyLogged(cfg, s.log) }
	reload := policyReload(cfg.PolicyPath, load, &s.current, s.audit, s.health, onSwap)
	var agentPID int
	var agentStart time.Time
	code, err := actors.RunAgent(srv.ctx, actors.AgentConfig{
		Spec: jail.Spec{UID: cfg.AgentUID, GID: cfg.AgentGID, Argv: argv, Env: env,
			SeccompPath: cfg.SeccompPath, SeccompLog: cfg.SeccompLog, AllowMulticast: cfg.AllowMulticast},
		Grace:          cfg.Grace,
		Reload:         reload,
		ReloadRequests: reloads,
		KeepSIGHUP:     !cfg.ForwardSIGHUP,
		Output:         agentOutput(cfg.AgentOutput, s.sink),
		Log:            s.log,
		OnStart: func(pid int) {
			agentPID, agentStart = pid, time.Now()
			srv.id.setRoot(pid)
			s.health.Set(obs.PartAgent, true, "running")
			s.audit.AgentStarted(obs.AgentStarted{PID: pid, Argv0: argv[0], UID: cfg.AgentUID, GID: cfg.AgentGID, Seccomp: true})
		},
	})
	s.health.Set(obs.PartAgent, false, "exited")
	if err == nil {
		s.audit.AgentExited(obs.AgentExited{PID: agentPID, ExitCode: code, Signal: signalName(code), Duration: time.Since(agentStart)})
	}
	return code, err
}

// stopReason is supervisor_stopped's reason.
func (s *supervisor) stopReason(agentErr, serverErr error) string {
	switch {
	case agentErr != nil:
		return "agent_failed"
	case serverErr != nil:
		s.log.Error("server_failed", zap.Error(serverErr))
		return "server_failed"
	}
	return "agent_exited"
}
