package main

import (
	"fmt"
	"sync/atomic"

	"go.uber.org/zap"

	fdns "github.com/forge/forge-supervisor/dns"
	"github.com/forge/forge-supervisor/kverdict"
	"github.com/forge/forge-supervisor/nft"
	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
)

// fastPathRuledOut says why the settings rule the kernel verdict path out
// although FastPath asks for it, "" when nothing does.
func (c Config) fastPathRuledOut() string {
	if c.AuditProcess {
		// The process behind each connection is looked up by the proxy,
		// per connection; the kernel path has no such lookup yet.
		return "FORGE_SUPERVISOR_AUDIT_PROCESS asks for the process of every connection, which only the proxy looks up"
	}
	return ""
}

// fastPathOn: the settings ask for the kernel verdict path and nothing in
// them rules it out. generate reads it too, so a generated container is
// given NET_RAW exactly when its supervisor would use it.
func (c Config) fastPathOn() bool { return c.FastPath && c.fastPathRuledOut() == "" }

// fastPath decides whether the kernel verdict path runs: asked for, the
// raw sockets allowed, and the kernel takes its rules. What cannot is said
// loudly and costs only the fast path: every connection then takes the
// proxy.
func fastPath(cfg Config, nftCfg nft.Config, m *kverdict.Metrics, log *zap.Logger) *nft.FastPath {
	m.Unavailable()
	if !cfg.FastPath {
		return nil
	}
	if off := cfg.fastPathRuledOut(); off != "" {
		log.Warn("fast_path_unavailable", zap.String("error", off), zap.String("effect", "every agent TCP connection takes the proxy"))
		return nil
	}
	// Checked before the probe so the operator reads which capability is
	// missing, not the raw socket's EPERM after the table was installed.
	if err := netRawEffective(); err != nil {
		log.Warn("fast_path_unavailable", zap.Error(err), zap.String("effect", "every agent TCP connection takes the proxy"))
		return nil
	}
	fp, err := nft.ProbeFastPath(nftCfg, kverdict.DefaultQueueNum)
	if err == nil {
		err = kverdict.CheckKernel()
	}
	if err != nil {
		log.Warn("fast_path_unavailable", zap.Error(err), zap.String("effect", "every agent TCP connection takes the proxy"))
		return nil
	}
	return &fp
}

// dnsLearner is the DNS proxy's hook into the fast sets, nil without them.
func dnsLearner(nftCfg nft.Config, l *kverdict.Learner) fdns.Learner {
	if nftCfg.FastPath == nil {
		return nil
	}
	return l
}

// openFastPath binds the verdict worker once the table is in place. When
// that fails (another process holds the queue, no raw sockets), the table
// is replaced by one without the fast path: the supervisor runs on, every
// connection through the proxy.
func openFastPath(cfg Config, nftCfg *nft.Config, current *atomic.Pointer[policy.Policy], names *fdns.Proxy,
	l *kverdict.Learner, audit *obs.Auditor, m *kverdict.Metrics, log *zap.Logger) (*kverdict.Path, error) {
	if nftCfg.FastPath == nil {
		return nil, nil
	}
	p, err := kverdict.Open(kverdict.Config{
		NFT: *nftCfg, Policy: current, Names: names, Learner: l, Audit: audit, Metrics: m, Log: log,
		DryRun: cfg.DryRun, MinTTL: cfg.DNSMinTTL, ClassifyTimeout: cfg.ClassifyTimeout,
	})
	if err != nil {
		log.Warn("fast_path_unavailable", zap.Error(err), zap.String("effect", "every agent TCP connection takes the proxy"))
		nftCfg.FastPath = nil
		if err := nft.Install(*nftCfg); err != nil {
			return nil, fmt.Errorf("reinstall the table without the fast path: %w", err)
		}
		return nil, nil
	}
	log.Info("fast_path_enabled", zap.Bool("native_queue", nftCfg.FastPath.NativeQueue), zap.Uint16("queue", nftCfg.FastPath.QueueNum))
	return p, nil
}

// countProxyPath counts the proxy path's finished connections apart from
// the kernel path's (which count themselves).
func countProxyPath(m *kverdict.Metrics) obs.AuditorOption {
	return obs.WithEgressObserver(func(f obs.Flow) {
		if f.Source == kverdict.SourceKernel {
			return
		}
		decision := obs.DecisionDenied
		switch {
		case f.WouldDeny:
			decision = obs.DecisionWouldDeny
		case f.Allowed:
			decision = obs.DecisionAllowed
		}
		m.ProxyConnection(decision)
	})
}
