// Package kverdict is the kernel verdict path: agent connections to
// destinations the policy already knows (addresses the DNS proxy learned
// for allowed names, addresses allowed outright) go straight to the
// destination instead of through the proxy, and the kernel holds each
// flow's first payload until this package has judged it.
//
//   - At the SYN, nft (nft/fastpath.go) looks (address, port) up in the
//     fast sets: a miss is redirected to the proxy exactly as without the
//     fast path; a hit in an open set is marked allowed (no userspace at
//     all); a hit in a tls set is marked pending.
//   - The first payload of a pending flow is queued (NFQUEUE, no bypass).
//     The worker holds segments until conn's sniffer classifies them, asks
//     policy.Decide with the SNI↔IP check (the proxy's decision call), and
//     answers with NF_REPEAT and a proposal mark that a rule copies into
//     the ct mark: allowed (the kernel forwards the rest) or denied (the
//     client and the server get resets; the server never saw a byte).
//   - Conntrack events give each allowed flow its one audit line, with
//     bytes and duration, when it ends.
//   - A heartbeat element keeps the fast path open only while the worker
//     runs: killed or stalled, new flows fall back to the (dead) proxy and
//     pending ones are reset.
package kverdict

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/nft"
	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
)

// DefaultQueueNum is the NFQUEUE number of the verdict worker.
const DefaultQueueNum = 15003

// Config wires the kernel path to the rest of the supervisor.
type Config struct {
	NFT     nft.Config // the installed table (its FastPath set)
	Policy  *atomic.Pointer[policy.Policy]
	Names   Names    // the DNS proxy: learned cache and fresh lookups
	Learner *Learner // the DNS proxy's hook into the set writer
	Audit   *obs.Auditor
	Metrics *Metrics
	Log     *zap.Logger
	DryRun  bool
	MinTTL  time.Duration // lowest element timeout (the DNS proxy's minimum TTL)
	// ClassifyTimeout bounds how long a first payload may take to classify.
	ClassifyTimeout time.Duration
}

// Path is a running kernel verdict path.
type Path struct {
	cfg  Config
	q    *queue
	rst  *resetter
	sets *setWriter
	ct   ctSockets
	beat atomic.Int64
	acct error
}

// Open binds the queue and opens the sockets, in the calling thread's
// network namespace, so every failure is a startup error the caller can
// turn into "fast path off" before any flow depends on it.
func Open(cfg Config) (*Path, error) {
	if cfg.NFT.FastPath == nil {
		return nil, errors.New("kverdict: the nft config has no fast path")
	}
	if cfg.Policy == nil || cfg.Names == nil || cfg.Learner == nil || cfg.Audit == nil || cfg.Metrics == nil || cfg.Log == nil {
		return nil, errors.New("kverdict: Config needs Policy, Names, Audit, Metrics and Log")
	}
	if cfg.ClassifyTimeout <= 0 {
		cfg.ClassifyTimeout = time.Second
	}
	p := &Path{cfg: cfg}
	p.beat.Store(time.Now().UnixNano())
	var err error
	if p.q, err = openQueue(cfg.NFT.FastPath.QueueNum); err != nil {
		return nil, err
	}
	if p.rst, err = openResetter(cfg.NFT.Mark); err != nil {
		p.q.close()
		return nil, err
	}
	if p.ct, err = openCtSockets(cfg.Log); err != nil {
		p.q.close()
		p.rst.close()
		return nil, err
	}
	sets, err := nft.OpenFastSets(cfg.NFT)
	if err != nil {
		p.q.close()
		p.rst.close()
		p.ct.close()
		return nil, fmt.Errorf("kverdict: %w", err)
	}
	p.acct = enableAccounting()
	p.sets = &setWriter{cfg: &p.cfg, sets: sets, m: cfg.Metrics, beat: &p.beat,
		learnCh: cfg.Learner.ch, reload: make(chan struct{}, 1), expiry: make(map[elemKey]time.Time)}
	// The sets and the heartbeat are in place before Open returns: a
	// connection the agent makes right after it starts takes the fast
	// path, not the proxy. (Until Run, nothing reads the queue, and a
	// queued packet waits there: within aliveTTL Run has begun.)
	p.sets.start()
	return p, nil
}

// Learner is the DNS proxy's hook (dns.Learner): it queues each learned
// address for the set writer and never blocks.
type Learner struct{ ch chan learned }

// NewLearner returns a Learner with room for learnBacklog answers.
func NewLearner() *Learner { return &Learner{ch: make(chan learned, learnBacklog)} }

// Learned queues name→ip for ttl; when the backlog is full the answer is
// dropped, which costs that destination the fast path, never safety.
func (l *Learner) Learned(name string, ip netip.Addr, ttl time.Duration) {
	select {
	case l.ch <- learned{name: name, ip: ip, ttl: ttl}:
	default:
	}
}

// Reload rebuilds the fast sets for the policy now current.
func (p *Path) Reload() {
	select {
	case p.sets.reload <- struct{}{}:
	default:
	}
}

// Run serves until ctx ends: the worker (with the conntrack auditor on
// its thread) and the set writer. On return the heartbeat element is gone; the caller removes
// the table.
func (p *Path) Run(ctx context.Context) error {
	logAccounting(p.cfg.Log, p.acct)
	p.cfg.Metrics.available.Set(1)
	defer p.cfg.Metrics.available.Set(0)
	rec := newRecords()
	w := &worker{cfg: &p.cfg, q: p.q, rst: p.rst, rec: rec, m: p.cfg.Metrics, flows: make(map[flowKey]*flow), pending: make(map[flowKey]*flow),
		beat: &p.beat, async: make(chan asyncResult, maxAsync), slots: make(chan struct{}, maxAsync)}
	w.aud = &auditor{cfg: &p.cfg, rec: rec, m: p.cfg.Metrics, ended: newEndedFlows(), socks: p.ct, getBuf: make([]byte, 8192)}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("kverdict: eventfd: %w", err)
	}
	w.wakeFD = wake
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer unix.Close(wake)
		defer p.q.close()
		defer p.rst.close()
		defer p.ct.close()
		return w.run(gctx)
	})
	g.Go(func() error { return p.sets.run(gctx) })
	return g.Wait()
}
