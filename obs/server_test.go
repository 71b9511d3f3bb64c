package obs

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"
)

type testServer struct {
	h   *Health
	m   *Metrics
	d   *Denials
	a   *Auditor
	log *syncBuffer
	srv *httptest.Server
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	a, buf, m, d := newTestAuditor(t)
	h := NewHealth(PartPolicy, PartInterception, PartProxy, PartDNS, PartAgent)
	s := NewServer("127.0.0.1:0", h, m, d, nil)
	ts := httptest.NewServer(s.srv.Handler)
	t.Cleanup(ts.Close)
	return &testServer{h: h, m: m, d: d, a: a, log: buf, srv: ts}
}

func (ts *testServer) do(t *testing.T, method, path string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, ts.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

func TestHealthz(t *testing.T) {
	ts := newTestServer(t)
	if code, _, body := ts.do(t, "GET", "/healthz"); code != 503 || string(body) != "not alive\n" {
		t.Fatalf("before SetAlive: %d %q, want 503 \"not alive\"", code, body)
	}
	ts.h.SetAlive(true)
	if code, hdr, body := ts.do(t, "GET", "/healthz"); code != 200 || string(body) != "ok\n" ||
		hdr.Get("X-Content-Type-Options") != "nosniff" || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("alive: %d %q %v, want 200 \"ok\" with hardened headers", code, body, hdr)
	}
	if code, _, body := ts.do(t, "HEAD", "/healthz"); code != 200 || len(body) != 0 {
		t.Fatalf("HEAD: %d %q, want 200 and no body", code, body)
	}
}

func TestReadyzBecomesReady(t *testing.T) {
	ts := newTestServer(t)
	parts := []string{PartPolicy, PartInterception, PartProxy, PartDNS, PartAgent}
	for i, p := range parts {
		code, _, body := ts.do(t, "GET", "/readyz")
		var r Readiness
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("readyz body not JSON: %v: %s", err, body)
		}
		if code != 503 || r.Ready {
			t.Fatalf("with %d/%d parts ready: %d ready=%v, want 503", i, len(parts), code, r.Ready)
		}
		if want := len(parts) - i; len(r.Failing) != want {
			t.Fatalf("failing = %v, want %d parts", r.Failing, want)
		}
		detail := ""
		if p == PartInterception {
			detail = InterceptionFallback
		}
		ts.h.Set(p, true, detail)
	}
	code, _, body := ts.do(t, "GET", "/readyz")
	var r Readiness
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	if code != 200 || !r.Ready || len(r.Failing) != 0 {
		t.Fatalf("all ready: %d %s, want 200 ready", code, body)
	}
	if r.Interception != InterceptionFallback {
		t.Fatalf("interception = %q, want %q reported at the top", r.Interception, InterceptionFallback)
	}
	ts.h.Set(PartDNS, false, "upstream unreachable")
	code, _, body = ts.do(t, "GET", "/readyz")
	if code != 503 || !strings.Contains(string(body), `"failing":["dns"]`) {
		t.Fatalf("after dns failed: %d %s, want 503 naming dns", code, body)
	}
}

func TestReadyzNoPartsIsNotReady(t *testing.T) {
	if NewHealth().Readiness().Ready {
		t.Fatal("a Health with no parts reported ready")
	}
}

func TestDenialsEndpoint(t *testing.T) {
	ts := newTestServer(t)
	for _, sni := range []string{"a.test", "b.test", "c.test"} {
		ts.a.Egress(Flow{Proto: "tls", SNI: sni, DstIP: "198.51.100.3", DstPort: 443, Reason: "domain_not_allowed"})
	}
	tests := []struct {
		query string
		code  int
		snis  []string
	}{
		{"", 200, []string{"c.test", "b.test", "a.test"}},
		{"?limit=2", 200, []string{"c.test", "b.test"}},
		{"?limit=1000000", 200, []string{"c.test", "b.test", "a.test"}},
		{"?limit=0", 400, nil},
		{"?limit=-1", 400, nil},
		{"?limit=abc", 400, nil},
		{"?limit=", 400, nil},
		{"?limit=99999999999999999999999", 400, nil},
	}
	for _, tt := range tests {
		code, hdr, body := ts.do(t, "GET", "/denials"+tt.query)
		if code != tt.code {
			t.Errorf("/denials%s = %d %s, want %d", tt.query, code, body, tt.code)
			continue
		}
		if hdr.Get("Content-Type") != "application/json" {
			t.Errorf("/denials%s content type %q", tt.query, hdr.Get("Content-Type"))
		}
		if tt.code != 200 {
			continue
		}
		var evs []map[string]any
		if err := json.Unmarshal(body, &evs); err != nil {
			t.Fatalf("/denials%s: %v: %s", tt.query, err, body)
		}
		var got []string
		for _, e := range evs {
			got = append(got, e["sni"].(string))
		}
		if strings.Join(got, ",") != strings.Join(tt.snis, ",") {
			t.Errorf("/denials%s = %v, want %v", tt.query, got, tt.snis)
		}
	}
}

// TestDenialsEndpointMatchesLog: a denial served by /denials has the same
// fields and values as its log line.
func TestDenialsEndpointMatchesLog(t *testing.T) {
	ts := newTestServer(t)
	ts.a.Egress(Flow{Proto: "http", Host: "evil.test", SrcPort: 51000, DstIP: "198.51.100.3", DstPort: 80,
		Reason: "domain_not_allowed", Duration: 3 * time.Millisecond, Source: "transparent"})
	ts.a.DNS(DNSQuery{QName: "evil.test.", QType: "AAAA", Rcode: "REFUSED", Reason: "domain_not_allowed"})
	_, _, body := ts.do(t, "GET", "/denials")
	var served []map[string]any
	if err := json.Unmarshal(body, &served); err != nil {
		t.Fatal(err)
	}
	lines := ts.log.lines(t)
	if len(served) != 2 || len(lines) != 2 {
		t.Fatalf("served %d, logged %d; want 2 and 2", len(served), len(lines))
	}
	for i, line := range lines {
		delete(line, "level")
		assertSameObject(t, line["msg"].(string), line, served[len(served)-1-i])
	}
}

func TestMethodsOtherThanGetRejected(t *testing.T) {
	ts := newTestServer(t)
	for _, path := range []string{"/healthz", "/readyz", "/denials", "/metrics"} {
		for _, method := range []string{"POST", "PUT", "DELETE", "PATCH"} {
			code, hdr, _ := ts.do(t, method, path)
			if code != http.StatusMethodNotAllowed || !strings.Contains(hdr.Get("Allow"), "GET") {
				t.Errorf("%s %s = %d Allow=%q, want 405 with Allow GET", method, path, code, hdr.Get("Allow"))
			}
		}
	}
	for _, path := range []string{"/", "/env", "/debug/pprof/", "/healthz/x"} {
		if code, _, _ := ts.do(t, "GET", path); code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, code)
		}
	}
}

func TestMetricsScrapePassesPromtool(t *testing.T) {
	ts := newTestServer(t)
	ts.a.Egress(Flow{Allowed: true, Proto: "tls", SNI: "ok.test", Reason: "domain_allowed", BytesUp: 10, BytesDown: 20})
	ts.a.Egress(Flow{Proto: "http", Host: "evil.test", Reason: "domain_not_allowed"})
	ts.a.DNS(DNSQuery{Allowed: true, QName: "ok.test.", QType: "A", Reason: "domain_allowed"})
	ts.a.DNS(DNSQuery{QName: "evil.test.", QType: "A", Reason: "domain_not_allowed"})
	ts.a.DNSRateLimited(DNSQuery{QName: "x.test.", QType: "A"})
	ts.m.StageLatency.WithLabelValues("classify").Observe(0.00002)
	ts.m.QueueDepth.WithLabelValues("dial").Set(3)
	ts.m.SetInterception(InterceptionKernel)

	code, _, body := ts.do(t, "GET", "/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`forge_supervisor_connections_total{decision="allowed",proto="tls",reason="domain_allowed"} 1`,
		`forge_supervisor_connections_total{decision="denied",proto="http",reason="domain_not_allowed"} 1`,
		`forge_supervisor_bytes_total{direction="down"} 20`,
		`forge_supervisor_dns_queries_total{decision="rate_limited",qtype="A"} 1`,
		`forge_supervisor_dns_rate_limited_total 1`,
		`forge_supervisor_stage_duration_seconds_bucket{stage="classify",le="2.5e-05"} 1`,
		`forge_supervisor_stage_queue_depth{stage="dial"} 3`,
		`forge_supervisor_interception_mode{mode="kernel"} 1`,
		`forge_supervisor_interception_mode{mode="fallback"} 0`,
		`forge_supervisor_policy_reloads_total{result="error"} 0`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("scrape lacks %q", want)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus): skipping the lint of the scrape")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestServerListenServeShutdown(t *testing.T) {
	h := NewHealth(PartPolicy)
	h.SetAlive(true)
	s := NewServer("127.0.0.1:0", h, NewMetrics(), NewDenials(4), nil)
	if err := s.Serve(context.Background()); err == nil {
		t.Fatal("Serve before Listen succeeded")
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	// A second server on the same port must fail at Listen: port in use is a
	// startup error.
	busy := NewServer(s.Addr().String(), h, nil, nil, nil)
	if err := busy.Listen(); err == nil || !strings.Contains(err.Error(), s.Addr().String()) {
		t.Fatalf("Listen on a busy port = %v, want an error naming the address", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	// The client keeps its connection alive: an idle keep-alive connection
	// must not hold up shutdown.
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + s.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz = %d", resp.StatusCode)
	}
	start := time.Now()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel = %v, want nil", err)
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("shutdown with an idle keep-alive connection took %v", el)
		}
	case <-time.After(shutdownTimeout + 2*time.Second):
		t.Fatal("Serve did not return after ctx was cancelled")
	}
	if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		t.Fatal("port still accepting after shutdown")
	}
}

func TestServerHardening(t *testing.T) {
	s := NewServer("127.0.0.1:0", NewHealth(), nil, nil, nil)
	if s.srv.ReadHeaderTimeout <= 0 || s.srv.ReadTimeout <= 0 || s.srv.WriteTimeout <= 0 ||
		s.srv.IdleTimeout <= 0 || s.srv.MaxHeaderBytes != maxHeaderBytes {
		t.Fatalf("server limits not set: %+v", s.srv)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	// Oversized headers are refused before any handler runs.
	req, _ := http.NewRequest("GET", "http://"+s.Addr().String()+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB header = %d, want 431", resp.StatusCode)
	}
	// Without metrics and denials those endpoints do not exist.
	for _, p := range []string{"/metrics", "/denials"} {
		resp, err := http.Get("http://" + s.Addr().String() + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("%s without backing = %d, want 404", p, resp.StatusCode)
		}
	}
}
