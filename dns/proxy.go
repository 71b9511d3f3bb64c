// Package dns is the supervisor's filtering DNS proxy: it answers the
// agent's queries for allowed names by forwarding them upstream, refuses the
// rest, and learns the addresses allowed names resolve to, so the
// connection engine can tell whether a destination IP belongs to a name.
package dns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/miekg/dns"

	"github.com/forge/forge-supervisor/bufpool"
	"github.com/forge/forge-supervisor/localaddr"
	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
)

// Defaults for the zero values of Config.
const (
	// DefaultPort is where the nftables rules redirect the agent's DNS.
	DefaultPort = 15002
	// DefaultTimeout per upstream attempt: a resolver on the same network
	// answers cached names in milliseconds and recursion rarely takes over
	// a second; two seconds leaves room without making clients wait long.
	DefaultTimeout = 2 * time.Second
	// DefaultMinTTL keeps learned addresses at least this long, as Cilium's
	// tofqdns-min-ttl does: clients reuse connections and cached answers
	// well past tiny TTLs, and the address must stay known meanwhile.
	DefaultMinTTL = 60 * time.Second
	// DefaultRateLimit queries per second per client: a package install
	// resolves a few hundred names in bursts; sustained thousands per
	// second are a tunnel, not a build.
	DefaultRateLimit = 500
)

// maxInFlight bounds queries being forwarded at once. Each holds an
// upstream socket; 512 keeps the proxy's descriptors well under the common
// 1024 soft limit alongside the connection engine.
const maxInFlight = 512

// Hooks receive the metric events the Auditor does not count (it counts
// every query it writes a line for); nil hooks are skipped. They are
// called on the query path and must not block.
type Hooks struct {
	// Malformed is called for each packet that is not a valid query.
	Malformed func()
	// RateLimited is called for each query refused by the rate limiter
	// that is not covered by a dns_rate_limited audit line (one line per
	// client and window stands for the first refusal in it).
	RateLimited func()
	// Learned is called with the cache size after an answer was learned.
	Learned func(size int)
	// NonLocal is called for each query (or TCP connection) dropped
	// unanswered because its source is not an address of this host.
	NonLocal func()
	// CacheLookup is called for each answer-cache lookup with its result;
	// CacheSize with the cache's bytes after an answer was stored.
	CacheLookup func(hit bool)
	CacheSize   func(bytes int)
}

// Config configures a Proxy. Zero values take the defaults above.
type Config struct {
	// ListenAddrs are the addresses listened on (UDP and TCP);
	// 127.0.0.1 and ::1 (loopback only) when empty.
	ListenAddrs []string
	Port        uint16   // listen port; 0 picks one free on every listen address
	Upstreams   []string // "ip:port" resolvers, tried in order
	// Policy holds the current policy; it is loaded once per query, so a
	// reload takes effect on the next query. A nil pointer value refuses
	// every query.
	Policy    *atomic.Pointer[policy.Policy]
	DenyRcode int           // rcode of denied queries: dns.RcodeRefused (default) or dns.RcodeNameError
	Timeout   time.Duration // per upstream attempt
	MinTTL    time.Duration // lower bound on learned TTLs
	CacheSize int           // max learned (name, address) pairs
	// AnswerCacheBytes bounds the answer cache (DefaultAnswerCacheBytes
	// when 0, no answer cache when negative).
	AnswerCacheBytes int
	// RateLimit is queries per second per client (DefaultRateLimit when 0,
	// unlimited when negative); RateBurst is the bucket size (2×RateLimit
	// when 0).
	RateLimit float64
	RateBurst int
	// WildcardBudget is the bytes of new names per minute the agent may
	// have resolved under each wildcard rule ("*.example.com"), where it
	// picks the labels and could encode data in them (policy.ExfilGuard):
	// policy.DefaultWildcardBudget when 0, no guard when negative.
	WildcardBudget int
	// MaxLabels and MaxLabelLen are the deprecated fixed caps on names
	// allowed through a wildcard rule; zero (the default) means only the
	// RFC limits (253/63). WildcardBudget is the guard now.
	MaxLabels   int
	MaxLabelLen int
	Mark        uint32 // SO_MARK on upstream sockets; 0 for none
	DryRun      bool   // log denials as would_deny but forward anyway
	Audit       *obs.Auditor
	Log         *zap.Logger
	Hooks       Hooks
	Learner     Learner          // told each learned address; nil for none
	Now         func() time.Time // clock of the cache and rate limiter; time.Now when nil
	// LocalAddrs lists the host's addresses (the interfaces' when nil);
	// queries from any other source are dropped.
	LocalAddrs func() ([]netip.Addr, error)
	// Identify looks up the agent process that sent a query from its
	// source address (see identity.go); nil: no identity. It runs when the
	// policy reads input.process, or always with IdentifyAlways.
	Identify       func(ctx context.Context, overTCP bool, src netip.AddrPort) *policy.Process
	IdentifyAlways bool
}

// Proxy is the filtering DNS proxy. It implements dns.Handler and
// policy.Resolver.
type Proxy struct {
	cfg      Config
	log      *zap.Logger
	audit    *obs.Auditor
	current  func() decider
	limits   nameLimits
	guard    *policy.ExfilGuard // nil: no exfiltration guard
	cache    *Cache
	fwd      *forwarder
	limiter  *rateLimiter // nil when unlimited
	local    *localaddr.Set
	answers  *answerCache // nil when off
	flights  flights
	inflight chan struct{}
	qbufs    *bufpool.Buffers // packed queries sent upstream
	abufs    *bufpool.Buffers // upstream answers, relayed in place
	lookups  singleflight.Group

	// life ends when Serve's context does: in-flight upstream exchanges
	// stop with it.
	life    context.Context
	endLife context.CancelFunc
	sockets listeners
	serving atomic.Bool
}

// New validates cfg and returns a Proxy. Call Listen, then Serve.
func New(cfg Config) (*Proxy, error) {
	if cfg.Policy == nil {
		return nil, errors.New("dns: Config.Policy is nil")
	}
	holder := cfg.Policy
	return newProxy(cfg, func() decider {
		if pol := holder.Load(); pol != nil {
			return pol
		}
		return nil
	})
}

// newProxy builds a Proxy that reads its policy through current.
func newProxy(cfg Config, current func() decider) (*Proxy, error) {
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("dns: no upstream resolvers")
	}
	for _, up := range cfg.Upstreams {
		if _, err := parseUpstream(up); err != nil {
			return nil, err
		}
	}
	switch cfg.DenyRcode {
	case 0:
		cfg.DenyRcode = dns.RcodeRefused
	case dns.RcodeRefused, dns.RcodeNameError:
	default:
		return nil, fmt.Errorf("dns: deny rcode %d: want REFUSED (%d) or NXDOMAIN (%d)", cfg.DenyRcode, dns.RcodeRefused, dns.RcodeNameError)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MinTTL == 0 {
		cfg.MinTTL = DefaultMinTTL
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	if cfg.RateBurst <= 0 {
		cfg.RateBurst = max(1, int(2*cfg.RateLimit))
	}
	if cfg.MaxLabels < 0 || cfg.MaxLabelLen < 0 {
		return nil, fmt.Errorf("dns: label caps must not be negative (labels %d, length %d)", cfg.MaxLabels, cfg.MaxLabelLen)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.ListenAddrs) == 0 {
		cfg.ListenAddrs = defaultListenAddrs()
	}
	for _, a := range cfg.ListenAddrs {
		if _, err := netip.ParseAddr(a); err != nil {
			return nil, fmt.Errorf("dns: listen address %q: %w", a, err)
		}
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Audit == nil {
		cfg.Audit = obs.NewAuditor(cfg.Log, nil, nil)
	}
	life, end := context.WithCancel(context.Background())
	p := &Proxy{
		cfg:      cfg,
		log:      cfg.Log.Named("dns"),
		audit:    cfg.Audit,
		current:  current,
		limits:   nameLimits{maxLabels: cfg.MaxLabels, maxLabelLen: cfg.MaxLabelLen},
		guard:    policy.NewExfilGuard(cfg.WildcardBudget, cfg.Now),
		cache:    NewCache(cfg.CacheSize, cfg.MinTTL, cfg.Now),
		fwd:      newForwarder(cfg.Upstreams, cfg.Timeout, cfg.Mark),
		inflight: make(chan struct{}, maxInFlight),
		qbufs:    bufpool.NewBuffers(maxQuerySize),
		abufs:    bufpool.NewBuffers(maxUpstreamMsg),
		local:    localaddr.NewFrom(cfg.LocalAddrs, cfg.Now),
		life:     life,
		endLife:  end,
	}
	if cfg.RateLimit > 0 {
		p.limiter = newRateLimiter(cfg.RateLimit, cfg.RateBurst, cfg.Now)
	}
	switch {
	case cfg.AnswerCacheBytes == 0:
		p.answers = newAnswerCache(DefaultAnswerCacheBytes, cfg.Now)
	case cfg.AnswerCacheBytes > 0:
		p.answers = newAnswerCache(cfg.AnswerCacheBytes, cfg.Now)
	}
	return p, nil
}

// nonLocal counts and logs a query dropped for its source.
func (p *Proxy) nonLocal(from netip.AddrPort) {
	if f := p.cfg.Hooks.NonLocal; f != nil {
		f()
	}
	p.log.Debug("dns: query from a non-local source dropped", zap.Stringer("src", from))
}

// Cache returns the learned name→address cache.
func (p *Proxy) Cache() *Cache { return p.cache }
