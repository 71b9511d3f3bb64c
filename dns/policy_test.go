package dns

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/forge/forge-supervisor/policy"
)

func mustParse(t *testing.T, doc string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("policy %s: %v", doc, err)
	}
	return p
}

// The real policy through New's atomic pointer, and a reload that takes
// effect on the very next query.
func TestRealPolicyAndReload(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	var holder atomic.Pointer[policy.Policy]
	holder.Store(mustParse(t, `{"mode":"allowlist","allowed_domains":["*.allowed.test"]}`))
	p, err := New(Config{Port: 0, Upstreams: []string{up.addr}, Policy: &holder, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.Port())))
	waitServing(t, addr)

	steps := []struct {
		reload string
		qname  string
		rcode  int
	}{
		{"", "www.allowed.test", dns.RcodeSuccess},
		{"", "WWW.Allowed.Test", dns.RcodeSuccess},
		{"", "allowed.test.evil", dns.RcodeRefused},
		{"", "127.1", dns.RcodeRefused},
		{`{"mode":"deny-all"}`, "www.allowed.test", dns.RcodeRefused},
		{`{"mode":"dev-open"}`, "anything.example", dns.RcodeSuccess},
	}
	for _, s := range steps {
		if s.reload != "" {
			holder.Store(mustParse(t, s.reload))
		}
		r := ask(t, "udp", addr, query(s.qname, dns.TypeA))
		if r.Rcode != s.rcode {
			t.Errorf("policy %q, %s: rcode %s, want %s", s.reload, s.qname, dns.RcodeToString[r.Rcode], dns.RcodeToString[s.rcode])
		}
	}
	holder.Store(nil)
	if r := ask(t, "udp", addr, query("www.allowed.test", dns.TypeA)); r.Rcode != dns.RcodeRefused {
		t.Errorf("no policy loaded: rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
}

func TestNewValidatesConfig(t *testing.T) {
	var holder atomic.Pointer[policy.Policy]
	tests := []struct {
		name string
		cfg  Config
	}{
		{"nil policy", Config{Upstreams: []string{"127.0.0.1:53"}}},
		{"no upstream", Config{Policy: &holder}},
		{"bad upstream", Config{Policy: &holder, Upstreams: []string{"resolver.example:53"}}},
		{"bad rcode", Config{Policy: &holder, Upstreams: []string{"127.0.0.1:53"}, DenyRcode: dns.RcodeServerFailure}},
		{"negative cap", Config{Policy: &holder, Upstreams: []string{"127.0.0.1:53"}, MaxLabels: -1}},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); err == nil {
			t.Errorf("%s: New accepted %+v", tt.name, tt.cfg)
		}
	}
}

func TestListenPortInUse(t *testing.T) {
	l, err := net.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := uint16(l.LocalAddr().(*net.UDPAddr).Port)
	var holder atomic.Pointer[policy.Policy]
	p, err := New(Config{Port: port, Upstreams: []string{"127.0.0.1:53"}, Policy: &holder})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(); err == nil {
		t.Fatalf("Listen on a port in use succeeded")
	}
	if err := p.Serve(context.Background()); err == nil {
		t.Error("Serve without sockets succeeded")
	}
}
