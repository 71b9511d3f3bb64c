// Command forge-supervisor runs as PID 1 in an agent's container and makes
// its egress allowlist a kernel fact. This file turns configuration into
// running actors and nothing else; see docs/architecture.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

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

func main() {
	// The jail mode (the agent's first moments) never returns.
	jail.RunIfJail()
	os.Exit(run(os.Args[1:]))
}

// exitStartup is the status when the supervisor itself cannot start; the
// agent never ran.
const exitStartup = 1

// sinkCloseTimeout is how long the exiting supervisor waits for its last
// log lines to be read; past it they are counted as dropped and it exits.
const sinkCloseTimeout = 5 * time.Second

func run(args []string) int {
	cfg, sub, argv, err := ParseConfig(args, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		configUsage(os.Stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "forge-supervisor: %v\n", err)
		return 2
	}
	switch sub {
	case subGenerate:
		return runGenerate(cfg, argv, os.Stdout, os.Stderr)
	case subCheck, subLint, subSuggest:
		return runTool(cfg, sub, argv, os.Stdin, os.Stdout, os.Stderr)
	case "version":
		fmt.Println("forge-supervisor", version)
		return 0
	case "config":
		b, err := cfg.JSON()
		if err != nil {
			fmt.Fprintf(os.Stderr, "forge-supervisor: %v\n", err)
			return 2
		}
		fmt.Println(string(b))
		return 0
	}
	// One writer owns stdout: whole lines, EAGAIN waited out, bounded.
	sink := obs.NewSink(os.Stdout, 0, os.Stderr)
	defer sink.Close(sinkCloseTimeout)
	log, err := obs.NewLogger(sink, cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "forge-supervisor: %v\n", err)
		return 2
	}
	code, err := supervise(cfg, argv, log, sink)
	if err != nil {
		// One clear line: on stderr for humans, as an event for pipelines.
		log.Error("supervisor_failed", zap.Error(err))
		fmt.Fprintf(os.Stderr, "forge-supervisor: %v\n", err)
		return exitStartup
	}
	return code
}

// supervise starts everything in order — policy → nft → DNS and proxy →
// health → agent — and stops it in reverse. It returns the agent's exit
// status, or an error when the supervisor could not start.
func supervise(cfg Config, argv []string, log *zap.Logger, sink *obs.Sink) (int, error) {
	if len(argv) == 0 {
		return 0, errors.New("no agent command: usage: forge-supervisor [flags] [--] COMMAND [ARGS...]")
	}
	start := time.Now()
	metrics := obs.NewMetrics()
	metrics.WatchSink(sink)
	denials := obs.NewDenials(cfg.DenialsSize)
	pathMetrics := kverdict.NewMetrics(metrics.Registry)
	audit := obs.NewAuditor(log, metrics, denials, obs.WithSampling(cfg.LogSample), countProxyPath(pathMetrics))
	health := obs.NewHealth(obs.PartPolicy, obs.PartInterception, obs.PartProxy, obs.PartDNS, obs.PartAgent)

	// 1. Policy: fail closed on any error.
	pol, err := loadPolicyLogged(cfg, log)
	if err != nil {
		return 0, err
	}
	var current atomic.Pointer[policy.Policy]
	current.Store(pol)
	health.Set(obs.PartPolicy, true, string(pol.Mode()))
	if err := jail.CheckProfile(cfg.SeccompPath); err != nil {
		return 0, err
	}
	if err := checkForgeSeccomp(cfg); err != nil {
		return 0, err
	}

	// 2. Interception: the kernel path, or loudly the explicit fallback.
	nftCfg := nft.Config{Table: nft.DefaultTable, AgentUID: cfg.AgentUID, AgentGID: cfg.AgentGID,
		ProxyPort: cfg.ProxyPort, DNSPort: cfg.DNSPort, HealthPort: cfg.HealthPort, Mark: nft.DefaultMark,
		LocalPorts: cfg.AllowedLocalPorts, InboundPorts: cfg.InboundPorts, AllowMulticast: cfg.AllowMulticast}
	mode := obs.InterceptionKernel
	var kernelLog *nft.LogReader
	if err := nft.Probe(nftCfg); err != nil {
		if cfg.RequireKernel {
			return 0, fmt.Errorf("kernel interception unavailable and FORGE_SUPERVISOR_REQUIRE_KERNEL is set: %w", err)
		}
		mode = obs.InterceptionFallback
		audit.InterceptionDegraded(err, fmt.Sprintf("explicit HTTP CONNECT/SOCKS5 proxy on 127.0.0.1:%d", cfg.ProxyPort))
	} else {
		// The log group is bound before the rules exist, so the first
		// denial already has a reader.
		kernelLog, nftCfg.LogGroup = openKernelLog(audit)
		nftCfg.FastPath = fastPath(cfg, nftCfg, pathMetrics, log)
		if err := nft.Install(nftCfg); err != nil {
			if kernelLog != nil {
				_ = kernelLog.Close()
			}
			return 0, err
		}
		defer func() {
			if err := nft.Remove(nftCfg); err != nil {
				log.Error("nft_remove_failed", zap.Error(err))
			}
		}()
	}
	explicit := mode == obs.InterceptionFallback
	health.Set(obs.PartInterception, true, mode)
	// The mark exempts the supervisor's own sockets from its nft rules. In
	// the fallback there are no rules, and setting SO_MARK needs
	// CAP_NET_ADMIN or CAP_NET_RAW, which the fallback may not have.
	mark := nftCfg.Mark
	if explicit {
		mark = 0
	}

	// 3. DNS proxy and connection engine, bound before the agent starts so
	// a port in use is a startup error.
	upstreams := cfg.DNSUpstreams
	if len(upstreams) == 0 {
		if upstreams, err = fdns.UpstreamsFromResolvConf("/etc/resolv.conf"); err != nil {
			return 0, err
		}
	}
	dnsMetrics := obs.NewDNSMetrics(metrics)
	cacheHits, cacheMisses := dnsMetrics.CacheLookups.WithLabelValues(obs.CacheHit), dnsMetrics.CacheLookups.WithLabelValues(obs.CacheMiss)
	// Process identity: looked up per connection and query only when the
	// policy reads input.process or the audit asks (FORGE_SUPERVISOR_AUDIT_PROCESS).
	// Without sock_diag it is off, and a policy that needs it denies
	// (process_unknown).
	id, err := newIdentity()
	if err != nil {
		log.Warn("process_identity_unavailable", zap.Error(err))
	}
	defer id.close()
	learner := kverdict.NewLearner()
	ownAddrs := localaddr.New()
	dnsProxy, err := fdns.New(fdns.Config{
		Port: cfg.DNSPort, Upstreams: upstreams, Policy: &current, DenyRcode: denyRcode(cfg.DNSDenyRcode),
		MinTTL: cfg.DNSMinTTL, CacheSize: cfg.DNSCacheSize, RateLimit: cfg.DNSRate, Mark: mark,
		AnswerCacheBytes: answerCacheBytes(cfg.DNSAnswerCacheBytes),
		WildcardBudget:   wildcardBudget(cfg, log), MaxLabels: cfg.DNSWildcardMaxLabels, MaxLabelLen: cfg.DNSWildcardMaxLabelLen,
		DryRun: cfg.DryRun, Audit: audit, Log: log, Learner: dnsLearner(nftCfg, learner),
		Identify: id.dnsHook(), IdentifyAlways: cfg.AuditProcess,
		Hooks: fdns.Hooks{
			Malformed:   metrics.DNSMalformed.Inc,
			RateLimited: metrics.DNSRateLimited.Inc,
			Learned:     func(n int) { metrics.LearnedNames.Set(float64(n)) },
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
	})
	if err != nil {
		return 0, err
	}
	if err := dnsProxy.Listen(); err != nil {
		return 0, err
	}
	var local *stages.LocalPolicy
	if !explicit {
		local = &stages.LocalPolicy{AgentUID: cfg.AgentUID, AllowedPorts: cfg.AllowedLocalPorts, Addrs: ownAddrs}
	}
	engine, err := stages.New(stages.Config{
		Port: cfg.ProxyPort, Policy: &current, Resolver: dnsProxy, Audit: audit, Metrics: metrics, Log: log,
		SelfPorts:       []uint16{cfg.ProxyPort, cfg.DNSPort, cfg.HealthPort},
		ClassifyTimeout: cfg.ClassifyTimeout, DialTimeout: cfg.DialTimeout, IdleTimeout: cfg.IdleTimeout,
		Mark: mark, DryRun: cfg.DryRun, Explicit: explicit, Lookup: dnsProxy.Resolve,
		Identify: id.tcpHook(), IdentifyAlways: cfg.AuditProcess, Local: local,
	})
	if err != nil {
		return 0, err
	}
	if err := engine.Listen(); err != nil {
		return 0, err
	}
	health.Set(obs.PartProxy, true, "")
	health.Set(obs.PartDNS, true, "")
	fast, err := openFastPath(cfg, &nftCfg, &current, dnsProxy, learner, audit, pathMetrics, log)
	if err != nil {
		return 0, err
	}

	// 4. Health, metrics, denials.
	srv := obs.NewServer(fmt.Sprintf(":%d", cfg.HealthPort), health, metrics, denials, log)
	if err := srv.Listen(); err != nil {
		return 0, err
	}

	stopServers, cancelServers := context.WithCancel(context.Background())
	defer cancelServers()
	servers, serversCtx := actors.NewGroup(stopServers)
	servers.Go("dns", dnsProxy.Serve)
	servers.Go("proxy", engine.Serve)
	servers.Go("health", srv.Serve)
	if fast != nil {
		servers.Go("kverdict", fast.Run)
	}
	if !explicit {
		km := metrics.RegisterKernel(func() float64 { n, _ := nft.InboundDropped(nftCfg); return float64(n) })
		if kernelLog != nil {
			servers.Go("kernel-log", func(ctx context.Context) error { return kernelDenials(ctx, kernelLog, audit, km) })
		}
	}
	health.SetAlive(true)

	// 5. The agent, jailed. Its environment learns about the fallback.
	env := os.Environ()
	if explicit {
		env = append(env, proxyEnv(cfg.ProxyPort)...)
	}
	// A reload that swapped the policy also refreshes the fast-path sets.
	var onSwap func()
	if fast != nil {
		onSwap = fast.Reload
	}
	load := func(string) (*policy.Policy, error) { return loadPolicyLogged(cfg, log) }
	reload := policyReload(cfg.PolicyPath, load, &current, audit, health, onSwap)
	reloads := make(chan struct{}, 1)
	if cfg.WatchPolicy {
		servers.Go("watch", watchFiles(cfg, reloads, audit, log))
	}
	audit.SupervisorStarted(obs.SupervisorStarted{
		Version: version, PolicyPath: cfg.PolicyPath, PolicyMode: string(pol.Mode()), Rules: pol.RuleCount(),
		Interception: mode, DryRun: cfg.DryRun, ProxyPort: cfg.ProxyPort, DNSPort: cfg.DNSPort,
		HealthPort: cfg.HealthPort, Startup: time.Since(start),
	})
	var agentPID int
	var agentStart time.Time
	code, err := actors.RunAgent(serversCtx, actors.AgentConfig{
		Spec: jail.Spec{UID: cfg.AgentUID, GID: cfg.AgentGID, Argv: argv, Env: env,
			SeccompPath: cfg.SeccompPath, SeccompLog: cfg.SeccompLog, AllowMulticast: cfg.AllowMulticast},
		Grace:          cfg.Grace,
		Reload:         reload,
		ReloadRequests: reloads,
		KeepSIGHUP:     !cfg.ForwardSIGHUP,
		Output:         agentOutput(cfg.AgentOutput, sink),
		Log:            log,
		OnStart: func(pid int) {
			agentPID, agentStart = pid, time.Now()
			id.setRoot(pid)
			health.Set(obs.PartAgent, true, "running")
			audit.AgentStarted(obs.AgentStarted{PID: pid, Argv0: argv[0], UID: cfg.AgentUID, GID: cfg.AgentGID, Seccomp: true})
		},
	})
	health.Set(obs.PartAgent, false, "exited")
	if err == nil {
		audit.AgentExited(obs.AgentExited{PID: agentPID, ExitCode: code, Signal: signalName(code), Duration: time.Since(agentStart)})
	}

	// Reverse order: servers stop (draining live connections), then the
	// deferred call removes the nft table.
	cancelServers()
	serr := servers.Wait()
	reason := "agent_exited"
	if err != nil {
		reason = "agent_failed"
	} else if serr != nil {
		reason = "server_failed"
		log.Error("server_failed", zap.Error(serr))
	}
	audit.SupervisorStopped(reason, code, time.Since(start))
	if err != nil {
		return 0, err
	}
	return code, nil
}

// signalName names the signal behind a 128+N status, "" otherwise.
func signalName(code int) string {
	if code <= 128 || code > 128+64 {
		return ""
	}
	return unix.SignalName(syscall.Signal(code - 128))
}

// proxyEnv advertises the explicit fallback proxy in every spelling that
// common HTTP clients read.
func proxyEnv(port uint16) []string {
	http := fmt.Sprintf("http://127.0.0.1:%d", port)
	socks := fmt.Sprintf("socks5h://127.0.0.1:%d", port)
	var env []string
	for _, kv := range [][2]string{
		{"HTTP_PROXY", http}, {"HTTPS_PROXY", http}, {"ALL_PROXY", socks}, {"NO_PROXY", "localhost,127.0.0.1,::1"},
	} {
		env = append(env, kv[0]+"="+kv[1], strings.ToLower(kv[0])+"="+kv[1])
	}
	return env
}

// answerCacheBytes maps the setting (0: off) to the DNS proxy's field
// (0: default, negative: off).
func answerCacheBytes(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func denyRcode(name string) int {
	if name == "nxdomain" {
		return 3 // NXDOMAIN
	}
	return 5 // REFUSED
}
