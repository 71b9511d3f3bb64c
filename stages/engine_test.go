package stages

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/internal/testkit"
	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
	"github.com/forge/forge-supervisor/tests/testpki"
)

// World addresses the fake original destinations point at. They are only
// names here: DialUpstream routes them to loopback servers.
var (
	worldIP    = netip.MustParseAddr("198.51.100.1")
	strangerIP = netip.MustParseAddr("198.51.100.9")
)

const testPolicy = `{"profile":"standard","mode":"allowlist",
 "allowed_domains":["allowed.test","*.wild.test"],"tool_domains":[],"all_domains":["allowed.test","*.wild.test"],
 "allowed_tcp":["allowed.test:7000"]}`

// fakeResolver says allowed.test and x.wild.test resolve to worldIP.
type fakeResolver struct{}

func (fakeResolver) Resolves(_ context.Context, name string, ip netip.Addr) bool {
	return ip == worldIP && (name == "allowed.test" || strings.HasSuffix(name, ".wild.test"))
}

func (fakeResolver) NamesFor(ip netip.Addr) []string {
	if ip == worldIP {
		return []string{"allowed.test"}
	}
	return nil
}

// harness runs an engine whose every connection "originally" went to dst,
// with upstream dials routed by port to loopback servers.
type harness struct {
	t      *testing.T
	eng    *Engine
	addr   string
	logs   *testkit.Log
	routes map[uint16]string // dst port → loopback server address
	dst    atomic.Pointer[netip.AddrPort]
}

func newHarness(t *testing.T, dryRun bool, routes map[uint16]string) *harness {
	t.Helper()
	return startHarness(t, routes, func(c *Config) { c.DryRun = dryRun })
}

// startHarness runs an engine on 127.0.0.1 with the test policy, the
// fake resolver and upstream dials routed by port to routes; tweak adjusts
// the configuration before the engine is built.
func startHarness(t *testing.T, routes map[uint16]string, tweak func(*Config)) *harness {
	t.Helper()
	p, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	var holder atomic.Pointer[policy.Policy]
	holder.Store(p)
	logs := &testkit.Log{}
	log, err := obs.NewLogger(logs, "info")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, logs: logs, routes: routes}
	cfg := Config{
		ListenAddrs: []string{"127.0.0.1"},
		Port:        0,
		Policy:      &holder,
		Resolver:    fakeResolver{},
		Audit:       obs.NewAuditor(log, obs.NewMetrics(), obs.NewDenials(16)),
		Metrics:     obs.NewMetrics(),
		Log:         log,
		OrigDst: func(*net.TCPConn) (netip.AddrPort, error) {
			if d := h.dst.Load(); d != nil {
				return *d, nil
			}
			return netip.AddrPort{}, errors.New("no route")
		},
		DialUpstream: func(ctx context.Context, dst netip.AddrPort) (*net.TCPConn, error) {
			a, ok := h.routes[dst.Port()]
			if !ok {
				return nil, syscall.ECONNREFUSED
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", a)
			if err != nil {
				return nil, err
			}
			return c.(*net.TCPConn), nil
		},
		SelfPorts:       []uint16{15001, 15002, 15000},
		ClassifyTimeout: 300 * time.Millisecond,
		IdleTimeout:     5 * time.Second,
		Workers:         Workers{OrigDst: 2, Classify: 8, Policy: 4, Dial: 4, Deny: 4},
		QueueLen:        8,
		MaxConns:        64,
	}
	tweak(&cfg)
	eng, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Port 0: let the kernel choose.
	eng.cfg.Port = 0
	if err := eng.Listen(); err != nil {
		t.Fatal(err)
	}
	h.eng, h.addr = eng, eng.Addrs()[0].String()
	testkit.Serve(t, eng.Serve)
	return h
}

func (h *harness) to(ip netip.Addr, port uint16) {
	d := netip.AddrPortFrom(ip, port)
	h.dst.Store(&d)
}

// event waits for the n-th audit event and returns it.
func (h *harness) events(n int) []map[string]any {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var ev []map[string]any
		for _, l := range h.logs.Lines(h.t) {
			if m, _ := l["msg"].(string); strings.HasPrefix(m, "egress_") {
				ev = append(ev, l)
			}
		}
		if len(ev) >= n {
			return ev
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("timed out waiting for %d audit events; log:\n%s", n, h.logs.String())
	return nil
}

func tlsServer(t *testing.T) string {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{testpki.Cert(t, "allowed.test", "x.wild.test", "evil.test")}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from "+r.Host)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func httpServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "plain hello from "+r.Host)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// echoUntilEOF reads the whole request until the client half-closes, then
// answers with its length: it only works if FIN is propagated.
func echoUntilEOF(t *testing.T) string {
	t.Helper()
	return testkit.Listen(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		io.WriteString(c, "got "+strconv.Itoa(len(b)))
	})
}

func TestTLSAllowedCompletesHandshake(t *testing.T) {
	h := newHarness(t, false, map[uint16]string{443: tlsServer(t)})
	h.to(worldIP, 443)
	c, err := tls.Dial("tcp", h.addr, &tls.Config{ServerName: "allowed.test", RootCAs: testpki.Pool(t), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("TLS through the engine: %v", err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	c.Close()
	if !strings.Contains(string(body), "hello from allowed.test") {
		t.Fatalf("body = %q", body)
	}
	ev := h.events(1)[0]
	want := map[string]any{"msg": "egress_allowed", "proto": "tls", "sni": "allowed.test", "reason": "allowed_domain", "rule": "allowed.test", "dst_ip": "198.51.100.1"}
	for k, v := range want {
		if ev[k] != v {
			t.Errorf("audit %s = %v, want %v (event %v)", k, ev[k], v, ev)
		}
	}
	if ev["bytes_up"].(float64) == 0 || ev["bytes_down"].(float64) == 0 {
		t.Errorf("byte counts missing: %v", ev)
	}
	// The offered protocols are a JSON array, as offered.
	if alpn, ok := ev["alpn"].([]any); !ok || len(alpn) != 1 || alpn[0] != "http/1.1" {
		t.Errorf("audit alpn = %#v, want [\"http/1.1\"]", ev["alpn"])
	}
}

func TestTLSDeniedGetsAccessDeniedAlert(t *testing.T) {
	h := newHarness(t, false, map[uint16]string{443: tlsServer(t)})
	h.to(worldIP, 443)
	_, err := tls.Dial("tcp", h.addr, &tls.Config{ServerName: "evil.test", RootCAs: testpki.Pool(t)})
	if err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("err = %v, want a TLS access_denied alert", err)
	}
	ev := h.events(1)[0]
	if ev["msg"] != "egress_denied" || ev["reason"] != policy.ReasonNotAllowed || ev["sni"] != "evil.test" {
		t.Errorf("audit = %v", ev)
	}
}

func TestHTTPAllowedAndDenied(t *testing.T) {
	h := newHarness(t, false, map[uint16]string{80: httpServer(t)})
	h.to(worldIP, 80)
	get := func(host string) (*http.Response, string) {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("GET %s: %v", host, err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get("allowed.test")
	if resp.StatusCode != 200 || !strings.Contains(body, "plain hello from allowed.test") {
		t.Fatalf("allowed: %d %q", resp.StatusCode, body)
	}
	resp, body = get("evil.test")
	if resp.StatusCode != 403 || !strings.Contains(body, "evil.test") || !strings.Contains(body, policy.ReasonNotAllowed) {
		t.Fatalf("denied: %d %q", resp.StatusCode, body)
	}
	// Host naming another port than the destination is denied.
	resp, _ = get("allowed.test:8080")
	if resp.StatusCode != 403 {
		t.Fatalf("host port mismatch: %d", resp.StatusCode)
	}
	// Events are written as connections end, not as they start.
	reasons := map[string]bool{}
	for _, e := range h.events(3) {
		reasons[e["msg"].(string)+"/"+e["reason"].(string)] = true
	}
	for _, want := range []string{"egress_allowed/allowed_domain", "egress_denied/" + policy.ReasonNotAllowed, "egress_denied/" + ReasonHostPort} {
		if !reasons[want] {
			t.Errorf("missing audit event %s; got %v", want, reasons)
		}
	}
}

func TestOpaqueToUnknownIPIsReset(t *testing.T) {
	h := newHarness(t, false, map[uint16]string{7000: echoUntilEOF(t)})
	h.to(strangerIP, 7000)
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "\x00\x01binary")
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read err = %v, want connection reset", err)
	}
	if ev := h.events(1)[0]; ev["reason"] != policy.ReasonNoNameForIP || ev["proto"] != "opaque" {
		t.Errorf("audit = %v", ev)
	}
}

func TestOpaqueLearnedIPRelaysWithHalfClose(t *testing.T) {
	h := newHarness(t, false, map[uint16]string{7000: echoUntilEOF(t)})
	h.to(worldIP, 7000) // learned for allowed.test, which allowed_tcp opens on 7000
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := bytes.Repeat([]byte{0xAB}, 1<<20)
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "got 1048576" {
		t.Fatalf("reply = %q: the half-close did not reach the upstream", got)
	}
	ev := h.events(1)[0]
	if ev["reason"] != policy.ReasonLearnedIP || ev["bytes_up"].(float64) != 1<<20 {
		t.Errorf("audit = %v", ev)
	}
}

func TestLoopToOwnPortIsDenied(t *testing.T) {
	h := newHarness(t, false, nil)
	h.to(netip.MustParseAddr("127.0.0.1"), 15001)
	// The reset may even beat connect(2) back on loopback.
	if c, err := net.Dial("tcp", h.addr); err == nil {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		if err == nil {
			t.Fatal("loop connection was served")
		}
	}
	if ev := h.events(1)[0]; ev["reason"] != ReasonLoop {
		t.Errorf("audit = %v", ev)
	}
}

func TestDryRunLetsDeniedThroughAndSaysSo(t *testing.T) {
	h := newHarness(t, true, map[uint16]string{80: httpServer(t)})
	h.to(worldIP, 80)
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("dry run blocked: %v %v", resp, err)
	}
	c.Close() // the relay ends (and is audited) when both sides have closed
	ev := h.events(1)[0]
	if ev["would_deny"] != true || ev["reason"] != policy.ReasonNotAllowed {
		t.Errorf("audit = %v", ev)
	}
}

func TestSilentClientIsOpaqueAfterDeadline(t *testing.T) {
	h := newHarness(t, false, nil)
	h.to(strangerIP, 5432)
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if err == nil {
		t.Fatal("silent client to an unknown IP was served")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("took %v: classification deadline not applied", el)
	}
	if ev := h.events(1)[0]; ev["proto"] != "opaque" || ev["reason"] != policy.ReasonNoNameForIP {
		t.Errorf("audit = %v", ev)
	}
}

func TestEveryConnectionAuditedOnce(t *testing.T) {
	h := newHarness(t, false, map[uint16]string{80: httpServer(t)})
	h.to(worldIP, 80)
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				return
			}
			defer c.Close()
			host := "allowed.test"
			if i%2 == 1 {
				host = "evil.test"
			}
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
			io.ReadAll(c)
		}()
	}
	wg.Wait()
	time.Sleep(200 * time.Millisecond)
	if ev := h.events(n); len(ev) != n {
		t.Fatalf("%d audit events for %d connections", len(ev), n)
	}
}

// TestUpstreamResetReachesClientAsReset: a response cut by an upstream
// reset must not end in a FIN at the agent, or a truncated transfer would
// look complete.
func TestUpstreamResetReachesClientAsReset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Read(make([]byte, 4096))
		c.Write(bytes.Repeat([]byte("x"), 32<<10))
		time.Sleep(50 * time.Millisecond)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	h := newHarness(t, false, map[uint16]string{7000: ln.Addr().String()})
	h.to(worldIP, 7000)
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "\x00opaque request")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read ended with %v, want a reset", err)
	}
	if ev := h.events(1)[0]; ev["msg"] != "egress_allowed" || ev["bytes_down"].(float64) == 0 {
		t.Errorf("audit = %v", ev)
	}
}
