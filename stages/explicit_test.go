package stages

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/conn"
	"github.com/forge/forge-supervisor/policy"
	"github.com/forge/forge-supervisor/tests/testpki"
)

// fakeLookup stands in for the DNS proxy's Resolve: allowed.test and
// evil.test resolve to worldIP, anything else fails. It records every
// name asked, so tests can prove denied names never reach the resolver.
type fakeLookup struct {
	mu    sync.Mutex
	asked []string
}

func (f *fakeLookup) lookup(_ context.Context, name string) ([]netip.Addr, error) {
	f.mu.Lock()
	f.asked = append(f.asked, name)
	f.mu.Unlock()
	switch name {
	case "allowed.test", "evil.test":
		return []netip.Addr{worldIP}, nil
	}
	return nil, fmt.Errorf("lookup %s: no such host", name)
}

func (f *fakeLookup) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked)
}

// explicitHarness runs an engine with Explicit set. World destinations are
// routed by port to loopback servers, as in newHarness.
type explicitHarness struct {
	*harness
	lookups *fakeLookup
}

func newExplicitHarness(t *testing.T, routes map[uint16]string) *explicitHarness {
	t.Helper()
	return startProxyHarness(t, routes, true)
}

// newSelfProxyHarness runs an engine in kernel mode (transparent front)
// whose every connection originally went to the proxy's own address, as
// an agent using HTTPS_PROXY=http://127.0.0.1:15001 does (issue #18).
func newSelfProxyHarness(t *testing.T, routes map[uint16]string) *explicitHarness {
	t.Helper()
	h := startProxyHarness(t, routes, false)
	h.to(netip.MustParseAddr("127.0.0.1"), h.eng.proxyPort)
	return h
}

// proxyFronts are the two ways an agent reaches the explicit proxy: the
// fallback (no kernel rules) and, in kernel mode, the proxy's own address.
// The explicit-proxy tests run against both.
var proxyFronts = []struct {
	name  string
	start func(*testing.T, map[uint16]string) *explicitHarness
}{
	{"fallback", newExplicitHarness},
	{"kernel mode, own address", newSelfProxyHarness},
}

func startProxyHarness(t *testing.T, routes map[uint16]string, explicit bool) *explicitHarness {
	t.Helper()
	h := &explicitHarness{lookups: &fakeLookup{}}
	h.harness = startHarness(t, routes, func(c *Config) {
		c.Explicit = explicit
		c.Lookup = h.lookups.lookup
		c.DialTimeout = 2 * time.Second
		// Only the address the fake lookup hands out is routed.
		route := c.DialUpstream
		c.DialUpstream = func(ctx context.Context, dst netip.AddrPort) (*net.TCPConn, error) {
			if dst.Addr() != worldIP {
				return nil, syscall.ECONNREFUSED
			}
			return route(ctx, dst)
		}
	})
	return h
}

// onlyEvent waits for the audit event of the test's one connection, lets
// stragglers arrive, and checks there was exactly one, from the explicit
// front.
func (h *explicitHarness) onlyEvent() map[string]any {
	h.t.Helper()
	return h.exactlyEvents(1)[0]
}

func (h *explicitHarness) exactlyEvents(n int) []map[string]any {
	h.t.Helper()
	h.events(n)
	time.Sleep(100 * time.Millisecond)
	ev := h.events(n)
	if len(ev) != n {
		h.t.Fatalf("%d audit events, want %d: %v", len(ev), n, ev)
	}
	for _, e := range ev {
		if e["source"] != "explicit" {
			h.t.Errorf("audit source = %v, want explicit: %v", e["source"], e)
		}
	}
	return ev
}

func checkEvent(t *testing.T, ev map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if ev[k] != v {
			t.Errorf("audit %s = %v, want %v (event %v)", k, ev[k], v, ev)
		}
	}
}

// curl runs curl with a deadline and returns stdout, stderr and the exit
// code.
func curl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", append([]string{"-sS", "--max-time", "10", "--noproxy", ""}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // no proxy variables from the test's environment
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("curl: %v", err)
	}
	return out.String(), errb.String(), code
}

func needCurl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (.ci/run installs it)")
	}
}

func TestExplicitCurlHTTPProxy(t *testing.T) {
	for _, front := range proxyFronts {
		t.Run(front.name, func(t *testing.T) {
			needCurl(t)
			t.Run("allowed", func(t *testing.T) {
				h := front.start(t, map[uint16]string{80: httpServer(t)})
				out, errs, code := curl(t, "--proxy", "http://"+h.addr, "http://allowed.test/")
				if code != 0 || out != "plain hello from allowed.test" {
					t.Fatalf("curl exit %d, out %q, err %q", code, out, errs)
				}
				checkEvent(t, h.onlyEvent(), map[string]any{"msg": "egress_allowed", "proto": "http", "host": "allowed.test",
					"dst_ip": "198.51.100.1", "dst_port": float64(80), "reason": policy.ReasonAllowedDomain, "rule": "allowed.test"})
			})
			t.Run("denied", func(t *testing.T) {
				h := front.start(t, map[uint16]string{80: httpServer(t)})
				out, errs, code := curl(t, "-w", "%{http_code}", "--proxy", "http://"+h.addr, "http://evil.test/")
				if code != 0 || !strings.HasSuffix(out, "403") || !strings.Contains(out, policy.ReasonNotAllowed) {
					t.Fatalf("curl exit %d, out %q, err %q", code, out, errs)
				}
				checkEvent(t, h.onlyEvent(), map[string]any{"msg": "egress_denied", "host": "evil.test", "reason": policy.ReasonNotAllowed})
				if got := h.lookups.names(); len(got) != 0 {
					t.Errorf("denied name was resolved: %v", got)
				}
			})
		})
	}
}

func TestExplicitCurlCONNECT(t *testing.T) {
	for _, front := range proxyFronts {
		t.Run(front.name, func(t *testing.T) {
			needCurl(t)
			ca, _, _ := testpki.WriteFiles(t, t.TempDir(), "allowed.test")
			t.Run("allowed", func(t *testing.T) {
				h := front.start(t, map[uint16]string{443: tlsServer(t)})
				out, errs, code := curl(t, "--cacert", ca, "--proxy", "http://"+h.addr, "https://allowed.test/")
				if code != 0 || out != "hello from allowed.test" {
					t.Fatalf("curl exit %d, out %q, err %q", code, out, errs)
				}
				ev := h.onlyEvent()
				checkEvent(t, ev, map[string]any{"msg": "egress_allowed", "host": "allowed.test", "dst_ip": "198.51.100.1",
					"dst_port": float64(443), "reason": policy.ReasonAllowedDomain})
				if ev["bytes_up"].(float64) == 0 || ev["bytes_down"].(float64) == 0 {
					t.Errorf("byte counts missing: %v", ev)
				}
				if got := h.lookups.names(); !slices.Equal(got, []string{"allowed.test"}) {
					t.Errorf("lookups = %v, want the proxy to resolve allowed.test once", got)
				}
			})
			t.Run("denied", func(t *testing.T) {
				h := front.start(t, map[uint16]string{443: tlsServer(t)})
				_, errs, code := curl(t, "--cacert", ca, "--proxy", "http://"+h.addr, "https://evil.test/")
				// 56: CURLE_RECV_ERROR, "CONNECT tunnel failed, response 403".
				if code != 56 || !strings.Contains(errs, "403") {
					t.Fatalf("curl exit %d, err %q; want 56 and a 403", code, errs)
				}
				checkEvent(t, h.onlyEvent(), map[string]any{"msg": "egress_denied", "host": "evil.test", "reason": policy.ReasonNotAllowed})
			})
		})
	}
}

func TestExplicitCurlSOCKS5(t *testing.T) {
	for _, front := range proxyFronts {
		t.Run(front.name, func(t *testing.T) {
			needCurl(t)
			ca, _, _ := testpki.WriteFiles(t, t.TempDir(), "allowed.test")
			t.Run("allowed http", func(t *testing.T) {
				h := front.start(t, map[uint16]string{80: httpServer(t)})
				out, errs, code := curl(t, "--socks5-hostname", h.addr, "http://allowed.test/")
				if code != 0 || out != "plain hello from allowed.test" {
					t.Fatalf("curl exit %d, out %q, err %q", code, out, errs)
				}
				checkEvent(t, h.onlyEvent(), map[string]any{"msg": "egress_allowed", "proto": "opaque", "host": "allowed.test",
					"dst_ip": "198.51.100.1", "reason": policy.ReasonAllowedDomain})
			})
			t.Run("allowed https", func(t *testing.T) {
				h := front.start(t, map[uint16]string{443: tlsServer(t)})
				out, errs, code := curl(t, "--cacert", ca, "--socks5-hostname", h.addr, "https://allowed.test/")
				if code != 0 || out != "hello from allowed.test" {
					t.Fatalf("curl exit %d, out %q, err %q", code, out, errs)
				}
				h.onlyEvent()
			})
			t.Run("denied", func(t *testing.T) {
				h := front.start(t, map[uint16]string{80: httpServer(t)})
				_, errs, code := curl(t, "--socks5-hostname", h.addr, "http://evil.test/")
				// 97: CURLE_PROXY; reply code 2 is "not allowed by ruleset".
				if code != 97 || !strings.Contains(errs, "(2)") {
					t.Fatalf("curl exit %d, err %q; want 97 with SOCKS5 reply 2", code, errs)
				}
				checkEvent(t, h.onlyEvent(), map[string]any{"msg": "egress_denied", "host": "evil.test", "reason": policy.ReasonNotAllowed})
			})
			t.Run("IP destination decided by learned name", func(t *testing.T) {
				h := front.start(t, map[uint16]string{7000: httpServer(t)})
				// --socks5 with an IP: no name, so the policy's learned names decide
				// (allowed_tcp allowed.test:7000 and worldIP learned for it).
				out, errs, code := curl(t, "--socks5", h.addr, "http://198.51.100.1:7000/")
				if code != 0 || out != "plain hello from 198.51.100.1:7000" {
					t.Fatalf("curl exit %d, out %q, err %q", code, out, errs)
				}
				checkEvent(t, h.onlyEvent(), map[string]any{"msg": "egress_allowed", "host": "", "dst_ip": "198.51.100.1",
					"reason": policy.ReasonLearnedIP})
			})
		})
	}
}

// Go's own proxy clients: net/http's Transport.Proxy for an HTTP proxy
// (absolute-form for http://, CONNECT for https://) and for SOCKS5.
func TestExplicitGoTransport(t *testing.T) {
	for _, front := range proxyFronts {
		t.Run(front.name, func(t *testing.T) {
			routes := map[uint16]string{80: httpServer(t), 443: tlsServer(t)}
			get := func(t *testing.T, tr *http.Transport, u string) (int, string, error) {
				t.Helper()
				resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(u)
				if err != nil {
					return 0, "", err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b), err
			}
			transport := func(proxy string) *http.Transport {
				pu, err := url.Parse(proxy)
				if err != nil {
					t.Fatal(err)
				}
				return &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: testpki.Pool(t)}}
			}
			t.Run("http proxy", func(t *testing.T) {
				h := front.start(t, routes)
				tr := transport("http://" + h.addr)
				defer tr.CloseIdleConnections()
				for _, c := range []struct {
					url  string
					code int
					body string
				}{
					{"http://allowed.test/", 200, "plain hello from allowed.test"},
					{"https://allowed.test/", 200, "hello from allowed.test"},
					// Same transport: had the first connection been kept alive, Go
					// would send this request down it, to allowed.test's server.
					{"http://evil.test/", 403, "forge-supervisor: egress to evil.test denied (not_in_allowlist)\n"},
				} {
					code, body, err := get(t, tr, c.url)
					if err != nil || code != c.code || body != c.body {
						t.Fatalf("GET %s = %d %q, %v; want %d %q", c.url, code, body, err, c.code, c.body)
					}
				}
				_, _, err := get(t, tr, "https://evil.test/")
				if err == nil || !strings.Contains(err.Error(), "Forbidden") {
					t.Fatalf("CONNECT to evil.test: err %v, want 403 Forbidden", err)
				}
				tr.CloseIdleConnections() // the HTTPS tunnel is audited when it ends
				checkReasons(t, h.exactlyEvents(4), policy.ReasonAllowedDomain, policy.ReasonAllowedDomain, policy.ReasonNotAllowed, policy.ReasonNotAllowed)
			})
			t.Run("socks5", func(t *testing.T) {
				h := front.start(t, routes)
				tr := transport("socks5://" + h.addr)
				defer tr.CloseIdleConnections()
				if code, body, err := get(t, tr, "https://allowed.test/"); err != nil || code != 200 || body != "hello from allowed.test" {
					t.Fatalf("GET via SOCKS5 = %d %q, %v", code, body, err)
				}
				_, _, err := get(t, tr, "http://evil.test/")
				if err == nil || !strings.Contains(err.Error(), "not allowed by ruleset") {
					t.Fatalf("SOCKS5 to evil.test: err %v, want 'not allowed by ruleset'", err)
				}
				tr.CloseIdleConnections()
				checkReasons(t, h.exactlyEvents(2), policy.ReasonAllowedDomain, policy.ReasonNotAllowed)
			})
		})
	}
}

// checkReasons compares the events' reasons, in any order, with want.
func checkReasons(t *testing.T, ev []map[string]any, want ...string) {
	t.Helper()
	var got []string
	for _, e := range ev {
		r, _ := e["reason"].(string)
		got = append(got, r)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("audit reasons = %v, want %v", got, want)
	}
}

// Raw HTTP proxy requests: each is answered with a 403 naming the exact
// reason, and audited once.
func TestExplicitHTTPDenials(t *testing.T) {
	tests := []struct {
		name, req, reason string
		resolved          []string
	}{
		{"origin-form", "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n", ReasonNotProxyRequest, nil},
		{"absolute https", "GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n", ReasonProxyScheme, nil},
		{"CONNECT to loopback", "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n", policy.ReasonBlockedRange, nil},
		{"CONNECT to metadata", "CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n", policy.ReasonMetadata, nil},
		{"CONNECT numeric name", "CONNECT 127.1:80 HTTP/1.1\r\n\r\n", policy.ReasonIPLiteral, nil},
		{"CONNECT wrong port", "CONNECT allowed.test:22 HTTP/1.1\r\n\r\n", policy.ReasonPortNotAllowed, nil},
		{"CONNECT unknown name", "CONNECT exfil-c2VjcmV0.evil.test:443 HTTP/1.1\r\n\r\n", policy.ReasonNotAllowed, nil},
		{"CONNECT name that does not resolve", "CONNECT x.wild.test:443 HTTP/1.1\r\n\r\n", ReasonDNSFailed, []string{"x.wild.test"}},
		{"CONNECT without port", "CONNECT allowed.test HTTP/1.1\r\n\r\n", ReasonMalformedHTTP, nil},
		{"header injection", "CONNECT allowed.test:443 HTTP/1.1\r\nX: a\rb\r\n\r\n", ReasonMalformedHTTP, nil},
		{"TLS to the proxy port", "\x16\x03\x01\x00\x05hello", ReasonMalformedHTTP, nil},
		{"partial head then silence", "CONNECT allowed.test:443 HTTP/1.1\r\n", ReasonClassifyTimeout, nil},
		{"silence", "", ReasonClassifyTimeout, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newExplicitHarness(t, map[uint16]string{80: httpServer(t), 443: tlsServer(t)})
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tt.req)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no HTTP answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			want := 403
			if tt.reason == ReasonDNSFailed || tt.reason == ReasonDialFailed {
				want = 502 // allowed, but the destination could not be had
			}
			if resp.StatusCode != want || !strings.Contains(string(body), "("+tt.reason+")") {
				t.Fatalf("answer %d %q, want %d naming %s", resp.StatusCode, body, want, tt.reason)
			}
			checkEvent(t, h.onlyEvent(), map[string]any{"msg": "egress_denied", "reason": tt.reason})
			if got := h.lookups.names(); !slices.Equal(got, tt.resolved) {
				t.Errorf("names resolved = %v, want %v", got, tt.resolved)
			}
		})
	}
}

// Raw SOCKS5 sessions: each refusal is the reply RFC 1928 prescribes, with
// the exact audit reason.
func TestExplicitSOCKS5Denials(t *testing.T) {
	domain := func(cmd byte, name string, port uint16) []byte {
		return append(append([]byte{5, cmd, 0, 3, byte(len(name))}, name...), byte(port>>8), byte(port))
	}
	noAuth := []byte{5, 1, 0}
	tests := []struct {
		name      string
		greeting  []byte
		request   []byte
		wantReply []byte // after the method reply {5, 0}, or the whole answer when refusing the method
		reason    string
	}{
		{"user/password required", []byte{5, 1, 2}, nil, []byte{5, 0xff}, ReasonSOCKS5NoMethod},
		{"no methods", []byte{5, 0}, nil, []byte{5, 0xff}, ReasonMalformedSOCKS5},
		{"BIND", noAuth, []byte{5, 2, 0, 1, 198, 51, 100, 1, 0, 80}, reply(7), ReasonSOCKS5Command},
		{"UDP ASSOCIATE", noAuth, []byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}, reply(7), ReasonSOCKS5Command},
		{"unknown address type", noAuth, []byte{5, 1, 0, 9, 1, 2}, reply(8), ReasonSOCKS5AddrType},
		{"control byte in name", noAuth, domain(1, "allowed.test\n", 80), reply(1), ReasonMalformedSOCKS5},
		{"loopback", noAuth, []byte{5, 1, 0, 1, 127, 0, 0, 1, 0, 22}, reply(2), policy.ReasonBlockedRange},
		{"IPv4-mapped loopback", noAuth, append(append([]byte{5, 1, 0, 4}, netip.MustParseAddr("::ffff:127.0.0.1").AsSlice()...), 0, 80), reply(2), policy.ReasonBlockedRange},
		{"unknown IP", noAuth, []byte{5, 1, 0, 1, 198, 51, 100, 9, 0, 80}, reply(2), policy.ReasonNoNameForIP},
		{"denied name", noAuth, domain(1, "evil.test", 443), reply(2), policy.ReasonNotAllowed},
		{"IP literal as name", noAuth, domain(1, "0x7f000001", 80), reply(2), policy.ReasonIPLiteral},
		{"name that does not resolve", noAuth, domain(1, "x.wild.test", 443), reply(4), ReasonDNSFailed},
		{"allowed, upstream refuses", noAuth, domain(1, "allowed.test", 443), reply(5), ReasonDialFailed},
		{"request cut short", noAuth, []byte{5, 1, 0, 3, 20, 'a'}, reply(1), ReasonClassifyTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newExplicitHarness(t, nil) // no upstream answers: dials fail
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write(tt.greeting)
			want := tt.wantReply
			if tt.request != nil {
				m := make([]byte, 2)
				if _, err := io.ReadFull(c, m); err != nil || !bytes.Equal(m, []byte{5, 0}) {
					t.Fatalf("method reply % x, %v", m, err)
				}
				c.Write(tt.request)
			}
			got, err := io.ReadAll(c)
			if !bytes.Equal(got, want) {
				t.Fatalf("reply % x (%v), want % x", got, err, want)
			}
			checkEvent(t, h.onlyEvent(), map[string]any{"msg": "egress_denied", "reason": tt.reason})
		})
	}
}

func reply(code byte) []byte { return []byte{5, code, 0, 1, 0, 0, 0, 0, 0, 0} }

// A SOCKS5 client that sends greeting, request and payload in one write
// (and half-closes) gets its payload replayed upstream after the request.
func TestExplicitSOCKS5OptimisticData(t *testing.T) {
	h := newExplicitHarness(t, map[uint16]string{7000: echoUntilEOF(t)})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := append([]byte{5, 1, 0}, 5, 1, 0, 3, 12)
	msg = append(append(msg, "allowed.test"...), 0x1b, 0x58) // port 7000
	msg = append(msg, bytes.Repeat([]byte("z"), 5000)...)
	c.Write(msg)
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	want := append(append([]byte{5, 0}, reply(0)...), "got 5000"...)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %q (%v), want %q", got, err, want)
	}
	checkEvent(t, h.onlyEvent(), map[string]any{"msg": "egress_allowed", "reason": policy.ReasonAllowedTCP,
		"rule": "allowed_tcp:allowed.test:7000", "bytes_up": float64(5000)})
}

// An absolute-form request is forwarded with the proxy's own headers
// removed and "Connection: close" in place of the client's keep-alive.
func TestExplicitAbsoluteFormRewrite(t *testing.T) {
	type seen struct {
		close    bool
		proxyHdr []string
		target   string
	}
	got := make(chan seen, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var hdr []string
		for k := range r.Header {
			if strings.HasPrefix(k, "Proxy-") || k == "Keep-Alive" {
				hdr = append(hdr, k)
			}
		}
		got <- seen{r.Close, hdr, r.RequestURI}
		io.WriteString(w, "ok")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	h := newExplicitHarness(t, map[uint16]string{80: ln.Addr().String()})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET http://allowed.test/x?y HTTP/1.1\nHost: allowed.test\nProxy-Connection: keep-alive\n"+
		"Proxy-Authorization: Basic c2VjcmV0\nKeep-Alive: 300\nConnection: keep-alive\n\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("status %d, close %v: want 200 and the origin closing", resp.StatusCode, resp.Close)
	}
	if s := <-got; !s.close || len(s.proxyHdr) != 0 || s.target != "http://allowed.test/x?y" {
		t.Fatalf("origin saw %+v: want Connection: close, no proxy headers, the absolute target", s)
	}
	c.Close() // the origin closed; a client does too
	h.onlyEvent()

	// The rewrite itself, byte for byte.
	head := []byte("GET http://allowed.test/x HTTP/1.1\nHost: allowed.test\nProxy-Connection: keep-alive\n" +
		"Proxy-Authorization: Basic c2VjcmV0\nKeep-Alive: 300\nConnection: keep-alive, Keep-Alive\nAccept: */*\n\n")
	want := "GET http://allowed.test/x HTTP/1.1\r\nHost: allowed.test\r\nAccept: */*\r\nConnection: close\r\n\r\n"
	if out := string(closeAfterResponse(head)); out != want {
		t.Fatalf("rewritten head\n%q\nwant\n%q", out, want)
	}
	ws := []byte("GET http://allowed.test/ws HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nProxy-Authorization: x\r\n\r\n")
	wantWS := "GET http://allowed.test/ws HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	if out := string(closeAfterResponse(ws)); out != wantWS {
		t.Fatalf("upgrade head\n%q\nwant\n%q", out, wantWS)
	}
}

// Many concurrent clients of both fronts, allowed and denied: exactly one
// audit event each.
func TestExplicitEveryConnectionAuditedOnce(t *testing.T) {
	h := newExplicitHarness(t, map[uint16]string{80: httpServer(t)})
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
			c.SetDeadline(time.Now().Add(5 * time.Second))
			host := "allowed.test"
			if i%2 == 1 {
				host = "evil.test"
			}
			if i%4 < 2 {
				io.WriteString(c, "GET http://"+host+"/ HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
			} else {
				// Greeting, request and the HTTP request in one write.
				msg := append([]byte{5, 1, 0, 5, 1, 0, 3, byte(len(host))}, host...)
				msg = append(msg, 0, 80)
				c.Write(append(msg, "GET / HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n"...))
			}
			io.ReadAll(c)
		}()
	}
	wg.Wait()
	ev := h.exactlyEvents(n)
	denied := 0
	for _, e := range ev {
		if e["msg"] == "egress_denied" {
			denied++
		}
	}
	if denied != n/2 {
		t.Fatalf("%d denied of %d, want %d", denied, n, n/2)
	}
}

// FuzzProxyHead: whatever the client sends, a head the proxy accepts as
// absolute-form is rewritten into a head that parses to the same request,
// ends where it says, carries no proxy credentials, and closes unless it
// upgrades.
func FuzzProxyHead(f *testing.F) {
	for _, name := range []string{"curl-proxy.bin", "curl-connect.bin", "curl-http.bin"} {
		b, err := os.ReadFile(filepath.Join("..", "conn", "testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("GET http://a.test/ HTTP/1.0\nProxy-Authorization: x\nConnection: upgrade\nUpgrade: websocket\n\nbody"))
	f.Add([]byte("\x16\x03\x01\x02\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := parseProxyHead(b)
		if err != nil || !req.AbsoluteForm {
			return
		}
		out := closeAfterResponse(b[:req.HeaderLen])
		again, err := conn.ParseHTTPRequest(out)
		if err != nil {
			t.Fatalf("rewritten head %q does not parse: %v", out, err)
		}
		if again.Method != req.Method || again.Target != req.Target || again.Host != req.Host ||
			again.Port != req.Port || !again.AbsoluteForm || again.HeaderLen != len(out) {
			t.Fatalf("rewrite changed the request: %+v → %+v", req, again)
		}
		lower := strings.ToLower(string(out))
		if strings.Contains(lower, "\nproxy-authorization:") || strings.Contains(lower, "\nproxy-connection:") {
			t.Fatalf("proxy headers forwarded: %q", out)
		}
		upgrade := false
		for _, l := range strings.Split(lower, "\r\n") {
			if v, ok := strings.CutPrefix(l, "connection:"); ok && hasToken(v, "upgrade") {
				upgrade = true
			}
		}
		if !upgrade && !strings.HasSuffix(string(out), "\r\nConnection: close\r\n\r\n") {
			t.Fatalf("no Connection: close in %q", out)
		}
	})
}

// TestExplicitDenialNamesTarget: a denied proxy request is audited with
// the target the client asked for — the name in host, the port in
// dst_port, an IP target in dst_ip. A denied name is never resolved, so
// its dst_ip stays empty.
func TestExplicitDenialNamesTarget(t *testing.T) {
	tests := []struct {
		name string
		req  []byte
		want map[string]any
	}{
		{"CONNECT unknown name", []byte("CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n"),
			map[string]any{"reason": policy.ReasonNotAllowed, "host": "evil.test", "dst_ip": "", "dst_port": float64(443), "source": "explicit"}},
		{"CONNECT wrong port", []byte("CONNECT allowed.test:22 HTTP/1.1\r\n\r\n"),
			map[string]any{"reason": policy.ReasonPortNotAllowed, "host": "allowed.test", "dst_ip": "", "dst_port": float64(22)}},
		{"CONNECT metadata IP", []byte("CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n"),
			map[string]any{"reason": policy.ReasonMetadata, "dst_ip": "169.254.169.254", "dst_port": float64(80)}},
		{"absolute-form unknown name", []byte("GET http://evil.test:8080/x HTTP/1.1\r\nHost: evil.test:8080\r\n\r\n"),
			map[string]any{"reason": policy.ReasonNotAllowed, "host": "evil.test", "dst_port": float64(8080)}},
		{"SOCKS5 unknown name", append([]byte{5, 1, 0, 5, 1, 0, 3, 9}, append([]byte("evil.test"), 1, 187)...),
			map[string]any{"reason": policy.ReasonNotAllowed, "host": "evil.test", "dst_ip": "", "dst_port": float64(443)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newExplicitHarness(t, nil)
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(tt.req)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, c)
			ev := h.onlyEvent()
			checkEvent(t, ev, map[string]any{"msg": "egress_denied"})
			checkEvent(t, ev, tt.want)
		})
	}
}
