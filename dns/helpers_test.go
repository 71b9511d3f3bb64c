package dns

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
)

// fakePolicy stands in for *policy.Policy: exact names and "*.suffix"
// wildcards, the way the Forge allowlist reads.
type fakePolicy struct {
	mode  policy.Mode
	rules []string
}

func (f *fakePolicy) Mode() policy.Mode { return f.mode }

func (f *fakePolicy) CheckName(name string, _ uint16) policy.Verdict {
	switch f.mode {
	case policy.ModeDenyAll:
		return policy.Verdict{Reason: policy.ReasonDenyAll}
	case policy.ModeDevOpen:
		return policy.Verdict{Allow: true, Reason: policy.ReasonDevOpen}
	}
	for _, r := range f.rules {
		if r == name || (strings.HasPrefix(r, "*.") && strings.HasSuffix(name, r[1:])) {
			return policy.Verdict{Allow: true, Reason: policy.ReasonAllowedDomain, Rule: r}
		}
	}
	return policy.Verdict{Reason: policy.ReasonNotAllowed}
}

func allowlist(rules ...string) *fakePolicy {
	return &fakePolicy{mode: policy.ModeAllowlist, rules: rules}
}

// upstream is a real miekg/dns server on loopback (UDP and TCP on one
// port) that answers with handle and counts the queries it saw.
type upstream struct {
	addr    string
	queries atomic.Int64
	mu      sync.Mutex
	seen    []*dns.Msg // queries as received (IDs included)
}

func (u *upstream) received() []*dns.Msg {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*dns.Msg(nil), u.seen...)
}

// handleFunc answers a query; network is "udp" or "tcp". Returning nil
// sends nothing.
type handleFunc func(network string, q *dns.Msg) *dns.Msg

func startUpstream(t testing.TB, handle handleFunc) *upstream {
	t.Helper()
	var (
		pc  net.PacketConn
		l   net.Listener
		err error
	)
	for range 16 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("upstream: no port free on udp and tcp: %v", err)
	}
	u := &upstream{addr: pc.LocalAddr().String()}
	serve := func(network string) dns.HandlerFunc {
		return func(w dns.ResponseWriter, q *dns.Msg) {
			u.queries.Add(1)
			u.mu.Lock()
			u.seen = append(u.seen, q.Copy())
			u.mu.Unlock()
			if resp := handle(network, q); resp != nil {
				_ = w.WriteMsg(resp)
			}
		}
	}
	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: serve("udp")},
		{Listener: l, Handler: serve("tcp")},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	}
	return u
}

// answer builds a reply to q holding rrs (in zone-file syntax).
func answer(t testing.TB, q *dns.Msg, rrs ...string) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	m.RecursionAvailable = true
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Errorf("bad test RR %q: %v", s, err)
			continue
		}
		m.Answer = append(m.Answer, rr)
	}
	if opt := q.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), opt.Do())
	}
	return m
}

// testProxy is a running proxy with captured logs.
type testProxy struct {
	*Proxy
	logs      *observer.ObservedLogs
	malformed atomic.Int64
	limited   atomic.Int64
	addr      string
}

type proxyOpt func(*Config)

// noAnswerCache turns the answer cache off, for tests of the forwarding
// path itself.
func noAnswerCache(c *Config) { c.AnswerCacheBytes = -1 }

func startProxy(t *testing.T, pol decider, upstreams []string, opts ...proxyOpt) *testProxy {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	tp := &testProxy{logs: logs}
	cfg := Config{
		Upstreams: upstreams,
		Timeout:   300 * time.Millisecond,
		RateLimit: -1,
		Log:       log,
		Audit:     obs.NewAuditor(log, nil, nil),
		Hooks: Hooks{
			Malformed:   func() { tp.malformed.Add(1) },
			RateLimited: func() { tp.limited.Add(1) },
		},
	}
	for _, o := range opts {
		o(&cfg)
	}
	p, err := newProxy(cfg, func() decider {
		if pol == nil {
			return nil
		}
		return pol
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	tp.Proxy = p
	tp.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.Port())))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	waitServing(t, tp.addr)
	return tp
}

// waitServing waits until the proxy answers over TCP (UDP is bound before
// Serve, so only the TCP accept loop can lag).
func waitServing(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("proxy at %s never accepted", addr)
}

// ask sends one query to addr over network and fails the test on a
// transport error.
func ask(t testing.TB, network, addr string, q *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 3 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(q, addr)
	if err != nil && r == nil {
		t.Fatalf("%s query %s to %s: %v", network, q.Question[0].String(), addr, err)
	}
	return r
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	return m
}

// auditLines returns the logged entries with msg. The audit line of a
// query is written after its reply, so it waits briefly for stragglers.
func auditLines(logs *observer.ObservedLogs, msg string) []observer.LoggedEntry {
	settle(logs)
	return logs.FilterMessage(msg).AllUntimed()
}

// waitAuditLines waits (up to 5 s) until at least n lines with msg were
// logged, then settles: audit lines may be written after the answer that
// the test has already read, so a loaded machine can lag them.
func waitAuditLines(logs *observer.ObservedLogs, msg string, n int) []observer.LoggedEntry {
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessage(msg).Len() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return auditLines(logs, msg)
}

// settle waits until no log line has been added for a short while.
func settle(logs *observer.ObservedLogs) {
	last := -1
	for range 100 {
		n := logs.Len()
		if n == last {
			return
		}
		last = n
		time.Sleep(20 * time.Millisecond)
	}
}

// field returns the value of a logged field as a string, int64 or bool.
func field(e observer.LoggedEntry, key string) any {
	m := e.ContextMap()
	return m[key]
}
