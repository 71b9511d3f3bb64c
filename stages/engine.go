// Package stages is the connection engine: an accepted connection moves
// through a table of stages, each a bounded pool of workers reading one
// inbound channel. A stage is a plain function of one connection that
// returns where the connection goes next; the runner (run.go) does the
// routing:
//
//	accept ─▶ classify ─▶ policy ─▶ dial ─▶ relay ─▶ audit
//	  │          │  └─▶ handshake ─┘│       │
//	  └(fallback)┴──────────────────┴───────┴──▶ deny ─▶ audit
//
// classify finds the original destination and reads the client's first
// bytes; a request to the proxy's own address (and every connection of the
// fallback front) takes the handshake stage instead, which reads an
// explicit-proxy request. policy owns the verdict (verdict.go); dial
// connects and starts the relay; deny answers in the client's protocol.
//
// Channels are bounded: a full channel blocks the stage before it and, at
// the end of the line, the accept loop — backpressure instead of an
// unbounded goroutine per connection. The relay is the one step without a
// pool: a dial worker starts a connection's relay (a goroutine pair)
// itself, and admission at accept bounds the relays to MaxConns. Every
// connection ends with exactly one audit event, written by the relay or
// the deny stage.
//
// Shutdown drains: the accept loops stop when the context ends; then each
// stage's input is closed once every stage before it is done (a stage only
// routes forward); live relays are cut at once and awaited.
package stages

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/forge/forge-supervisor/bufpool"
	"github.com/forge/forge-supervisor/conn"
	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
)

// Config is everything the engine needs. Zero durations and sizes take the
// defaults below.
type Config struct {
	// ListenAddrs are the transparent proxy's listen addresses. The nft
	// redirect in the OUTPUT hook rewrites to loopback, so the default is
	// 127.0.0.1 and ::1 at Port: never reachable from outside the pod.
	ListenAddrs []string
	Port        uint16

	Policy   *atomic.Pointer[policy.Policy]
	Resolver policy.Resolver // learned DNS answers; nil: no learned-IP allow
	Audit    *obs.Auditor
	Metrics  *obs.Metrics // nil: no metrics
	Log      *zap.Logger

	// OrigDst finds a connection's original destination; conn.OriginalDst
	// by default. Tests and the explicit proxy replace it.
	OrigDst func(*net.TCPConn) (netip.AddrPort, error)
	// Explicit selects the fallback front: instead of origdst and classify,
	// a handshake stage reads an HTTP proxy (CONNECT / absolute-form) or
	// SOCKS5 request, and Lookup resolves the name it asks for.
	Explicit bool
	Lookup   func(ctx context.Context, name string) ([]netip.Addr, error)

	// DialUpstream replaces the marked dialer when set (tests route an
	// original destination to local servers through it).
	DialUpstream func(ctx context.Context, dst netip.AddrPort) (*net.TCPConn, error)
	// SelfPorts are the supervisor's own listening ports: a connection
	// whose original destination is one of them on a local address is a
	// loop.
	SelfPorts []uint16
	// Local decides connections to this host's own addresses by the
	// listener's owner (local.go); nil: no local decisions.
	Local *LocalPolicy

	ClassifyTimeout time.Duration // wait for the client's first bytes
	DialTimeout     time.Duration
	IdleTimeout     time.Duration
	Mark            uint32 // SO_MARK of upstream sockets (exempt from nft)
	DryRun          bool   // decide and log, but let denied traffic pass

	// Identify looks up the agent process behind a connection from its
	// 4-tuple as the client's socket sees it (see identity.go); nil: no
	// identity. It runs when the policy reads input.process, or always
	// with IdentifyAlways (the audit asks for it).
	Identify       func(ctx context.Context, src, dst netip.AddrPort) *policy.Process
	IdentifyAlways bool

	Workers   Workers
	QueueLen  int // capacity of each inter-stage channel
	MaxConns  int // connections inside the engine at once (queued or relaying)
	PipesIdle int // idle splice pipes kept
}

// Workers sizes each stage's pool. OrigDst is kept for configurations
// that set it; the original destination is read by the classify workers
// (one getsockopt: a hop of its own bought nothing).
type Workers struct {
	OrigDst, Classify, Handshake, Policy, Dial, Deny int
}

// Defaults. Classify and dial workers mostly wait on the network (a silent
// client for ClassifyTimeout, a slow upstream for DialTimeout), so their
// pools are wide; origdst is one getsockopt and stays narrow.
const (
	DefaultClassifyTimeout = time.Second
	DefaultDialTimeout     = 5 * time.Second
	DefaultIdleTimeout     = 10 * time.Minute
	DefaultQueueLen        = 256
	DefaultMaxConns        = 16384
	DefaultPipesIdle       = 1024
	// relayBufSize is the fallback copy buffer when no pipe can be had.
	relayBufSize = 32 << 10
)

// Handshake serves explicit-proxy requests made to the proxy's own address
// in kernel mode (in the fallback, the classify pool serves them).
var defaultWorkers = Workers{OrigDst: 4, Classify: 1024, Handshake: 64, Policy: 256, Dial: 512, Deny: 256}

func (c *Config) setDefaults() {
	if c.Port == 0 {
		c.Port = 15001
	}
	if len(c.ListenAddrs) == 0 {
		c.ListenAddrs = []string{"127.0.0.1", "::1"}
	}
	if c.OrigDst == nil {
		c.OrigDst = conn.OriginalDst
	}
	if c.ClassifyTimeout <= 0 {
		c.ClassifyTimeout = DefaultClassifyTimeout
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.QueueLen <= 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	// Never admit more connections than there are file descriptors for:
	// past the budget, clients wait in the kernel's accept queue
	// (backpressure) instead of failing with EMFILE — and the health server
	// and DNS proxy keep the descriptors they need.
	c.MaxConns = connBudget(c.MaxConns)
	if c.PipesIdle <= 0 {
		c.PipesIdle = DefaultPipesIdle
	}
	// Idle pipes count against the same budget as live relays.
	c.PipesIdle = min(c.PipesIdle, c.MaxConns)
	w := &c.Workers
	for _, p := range []struct {
		v *int
		d int
	}{
		{&w.OrigDst, defaultWorkers.OrigDst}, {&w.Classify, defaultWorkers.Classify}, {&w.Handshake, defaultWorkers.Handshake},
		{&w.Policy, defaultWorkers.Policy}, {&w.Dial, defaultWorkers.Dial}, {&w.Deny, defaultWorkers.Deny},
	} {
		if *p.v <= 0 {
			*p.v = p.d
		}
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	c.Local = c.Local.withDefaults()
}

// Engine is the transparent proxy. Build it with New, bind with Listen,
// run with Serve.
type Engine struct {
	cfg       Config
	listeners []*net.TCPListener
	pipes     *bufpool.Pipes
	bufs      *bufpool.Buffers // relay fallback buffers
	peekBufs  *bufpool.Buffers // classification scratch, conn.MaxPeek each
	nextID    atomic.Uint64
	// proxyPort is the port the listeners are bound to: a connection to
	// it on a local address is an explicit-proxy request.
	proxyPort uint16
	// admitted holds one token per connection inside the engine, taken
	// before accept(2) and returned when the connection is audited.
	admitted chan struct{}

	// queues are the stages' inputs, by route; entry is where accepted
	// connections go (classify, or handshake for the fallback front).
	queues [routeDone]chan *conn.Conn
	entry  route
	// live is the relay registry (the relay step), set up by Serve.
	live *relays
}

// New checks cfg and returns an engine that is not yet listening.
func New(cfg Config) (*Engine, error) {
	cfg.setDefaults()
	if cfg.Policy == nil || cfg.Policy.Load() == nil {
		return nil, fmt.Errorf("stages: no policy loaded")
	}
	if cfg.Audit == nil {
		return nil, fmt.Errorf("stages: no auditor")
	}
	e := &Engine{
		cfg:      cfg,
		pipes:    bufpool.NewPipes(cfg.PipesIdle),
		bufs:     bufpool.NewBuffers(relayBufSize),
		peekBufs: bufpool.NewBuffers(conn.MaxPeek),
		admitted: make(chan struct{}, cfg.MaxConns),
		entry:    routeClassify,
		live:     newRelays(),
	}
	if cfg.Explicit {
		e.entry = routeHandshake
	}
	for i := range e.queues {
		e.queues[i] = make(chan *conn.Conn, cfg.QueueLen)
	}
	if e.cfg.DialUpstream == nil {
		e.cfg.DialUpstream = e.dialMarked
	}
	return e, nil
}

// Listen binds the proxy's listeners, so that a port in use is a startup
// error reported before the agent starts.
func (e *Engine) Listen() error {
	for _, a := range e.cfg.ListenAddrs {
		addr := net.JoinHostPort(a, fmt.Sprint(e.cfg.Port))
		network := "tcp4"
		if ip, err := netip.ParseAddr(a); err == nil && ip.Is6() && !ip.Is4In6() {
			network = "tcp6"
		}
		// No TCP keepalive on accepted sockets: the client is a process
		// on this host (the redirect goes to loopback), so the kernel
		// reports its end with a FIN or RST and probes would find nothing
		// more; Go's default would cost four setsockopt calls per
		// connection. Upstream sockets keep the default, which also keeps
		// idle flows alive through NATs on the way.
		lc := net.ListenConfig{KeepAlive: -1}
		ln, err := lc.Listen(context.Background(), network, addr)
		if err != nil {
			e.closeListeners()
			return fmt.Errorf("stages: listen %s: %w", addr, err)
		}
		e.listeners = append(e.listeners, ln.(*net.TCPListener))
	}
	if len(e.listeners) > 0 {
		e.proxyPort = uint16(e.listeners[0].Addr().(*net.TCPAddr).Port)
	}
	return nil
}

// Addrs returns the bound listener addresses.
func (e *Engine) Addrs() []net.Addr {
	out := make([]net.Addr, 0, len(e.listeners))
	for _, l := range e.listeners {
		out = append(out, l.Addr())
	}
	return out
}

func (e *Engine) closeListeners() {
	for _, l := range e.listeners {
		_ = l.Close()
	}
}
