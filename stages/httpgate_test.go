package stages

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/bufpool"
	"github.com/forge/forge-supervisor/conn"
)

// chunkReader returns at most size bytes per Read, so request heads,
// chunk lines and bodies straddle reads at every offset.
type chunkReader struct {
	b    []byte
	size int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.size)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// runGate runs the gate over in, read size bytes at a time, and returns
// how it ended and what it forwarded. A fake server answers every CONNECT
// and upgrade: it switches when accept is set, else refuses. Once the gate
// turns opaque the rest is copied as the engine would.
func runGate(host string, port uint16, in []byte, size int, accept bool) (*httpGate, gateEnd, error, []byte) {
	var out bytes.Buffer
	src := &chunkReader{b: in, size: size}
	log := newAnswers()
	stop := make(chan struct{})
	defer close(stop)
	go fakeServer(log, accept, stop)
	g := &httpGate{
		httpStream: httpStream{src: src, dst: &out, buf: make([]byte, relayBufSize)},
		host:       normHost(host), port: port, answers: log,
	}
	end, err := g.run()
	if end == gateOpaque {
		n, _ := io.Copy(&out, src)
		g.forwarded += n
	}
	return g, end, err, out.Bytes()
}

// fakeServer answers the gate's switching requests as a server would.
func fakeServer(log *answers, accept bool, stop <-chan struct{}) {
	for {
		select {
		case ex := <-log.pending:
			if ex.switched != nil {
				ex.switched <- accept
			}
		case <-stop:
			return
		}
	}
}

const (
	getAllowed = "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
	getEvil    = "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n"
	wsUpgrade  = "GET /ws HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	// wsFrame is a masked client text frame ("Hello", RFC 6455 §5.7).
	wsFrame = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
)

func TestHTTPGateRules(t *testing.T) {
	longChunkLine := "1;" + strings.Repeat("x", maxChunkLine) + "\r\nA\r\n0\r\n\r\n"
	cases := []struct {
		name    string
		in      string
		end     gateEnd
		reason  string
		rule    string
		forward int // bytes forwarded; -1: all of in
	}{
		{"keep-alive, same host", getAllowed + getAllowed, gateEOF, "", "", -1},
		{"same host differently spelled", getAllowed + "GET / HTTP/1.1\r\nHost: ALLOWED.Test.:80\r\n\r\n", gateEOF, "", "", -1},
		{"second host differs", getAllowed + getEvil, gateDenied, ReasonHostSwitch, "switched_to:evil.test", len(getAllowed)},
		{"second port differs", getAllowed + "GET / HTTP/1.1\r\nHost: allowed.test:8080\r\n\r\n",
			gateDenied, ReasonHostSwitch, "switched_to:allowed.test:8080", len(getAllowed)},
		{"absolute-form second request", getAllowed + "GET http://evil.test/x HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
			gateDenied, ReasonHostSwitch, "switched_to:evil.test", len(getAllowed)},
		{"a Host, then HTTP/1.0 without Host", getAllowed + "GET / HTTP/1.0\r\n\r\n",
			gateDenied, ReasonHostSwitch, "switched_to:<none>", len(getAllowed)},
		{"first request differs from the allowed host", getEvil, gateDenied, ReasonHostSwitch, "switched_to:evil.test", 0},
		{"Content-Length body that looks like a request",
			"POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 35\r\n\r\n" + getEvil + getAllowed, gateEOF, "", "", -1},
		{"identical duplicate Content-Length", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\nabc" + getAllowed,
			gateEOF, "", "", -1},
		{"chunked body with extensions and trailers, then a request",
			"POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n" +
				"5;name=\"v\"\r\nhello\r\na\r\n" + getEvil[:10] + "\r\n0\r\nX-Sum: 1\r\n\r\n" + getAllowed, gateEOF, "", "", -1},
		{"chunked body then another host", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + getEvil,
			gateDenied, ReasonHostSwitch, "switched_to:evil.test", len("POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")},
		{"trailing CRLF after a request", getAllowed + "\r\n", gateEOF, "", "", -1},
		{"CL and TE together", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			gateDenied, ReasonMalformedHTTP, "", 0},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", gateDenied, ReasonMalformedHTTP, "", 0},
		{"TE not ending in chunked", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", gateDenied, ReasonMalformedHTTP, "", 0},
		{"chunked twice", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", gateDenied, ReasonMalformedHTTP, "", 0},
		{"empty TE element", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: ,chunked\r\n\r\n", gateDenied, ReasonMalformedHTTP, "", 0},
		{"conflicting Content-Length", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", gateDenied, ReasonMalformedHTTP, "", 0},
		{"negative Content-Length", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: -1\r\n\r\n", gateDenied, ReasonMalformedHTTP, "", 0},
		{"signed Content-Length", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: +1\r\n\r\nx", gateDenied, ReasonMalformedHTTP, "", 0},
		{"overflowing Content-Length", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 9999999999999999999\r\n\r\n", gateDenied, ReasonMalformedHTTP, "", 0},
		{"empty Content-Length", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length:\r\n\r\n", gateDenied, ReasonMalformedHTTP, "", 0},
		{"oversized chunk line", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n" + longChunkLine,
			gateDenied, ReasonMalformedHTTP, "", len("POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n")},
		{"chunk line with bare LF", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
			gateDenied, ReasonMalformedHTTP, "", len("POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n")},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n",
			gateDenied, ReasonMalformedHTTP, "", len("POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n")},
		{"chunk size not hex", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n 3\r\nabc\r\n",
			gateDenied, ReasonMalformedHTTP, "", len("POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n")},
		{"chunk data longer than its size", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
			gateDenied, ReasonMalformedHTTP, "", len("POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc")},
		{"folded trailer", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n folded\r\n\r\n",
			gateDenied, ReasonMalformedHTTP, "", len("POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")},
		{"malformed second head", getAllowed + "GET / HTTP/1.1\r\nHost : evil.test\r\n\r\n", gateDenied, ReasonMalformedHTTP, "", len(getAllowed)},
		{"duplicate Host in second head", getAllowed + "GET / HTTP/1.1\r\nHost: allowed.test\r\nHost: evil.test\r\n\r\n", gateDenied, ReasonMalformedHTTP, "", len(getAllowed)},
		{"oversized second head", getAllowed + "GET / HTTP/1.1\r\nHost: allowed.test\r\nX: " + strings.Repeat("a", conn.MaxHTTPHeader) + "\r\n\r\n",
			gateDenied, ReasonHeaderTooLarge, "", len(getAllowed)},
		{"WebSocket upgrade, then frames", wsUpgrade + wsFrame + getEvil, gateOpaque, "", "", -1},
		{"refused upgrade, then another host", wsUpgrade + getEvil, gateDenied, ReasonHostSwitch, "switched_to:evil.test", len(wsUpgrade)},
		{"refused upgrade, then the same host", wsUpgrade + getAllowed, gateEOF, "", "", -1},
		{"h2c upgrade", "GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
			gateDenied, ReasonUpgradeProto, "", 0},
		{"CONNECT, then TLS", "CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\n\r\n\x16\x03\x01\x00\x05hello" + getEvil, gateOpaque, "", "", -1},
		{"CONNECT with a body", "CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\nContent-Length: 5\r\n\r\nhello", gateDenied, ReasonMalformedHTTP, "", 0},
		// Issue #11 items 4–6.
		{"absolute-form target ≠ Host", "GET http://allowed.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n", gateDenied, ReasonHostMismatch, "", 0},
		{"CONNECT target ≠ Host", "CONNECT allowed.test:80 HTTP/1.1\r\nHost: denied.test:80\r\n\r\n", gateDenied, ReasonHostMismatch, "", 0},
		{"refused upgrade, then a \\x0c-prefixed request", wsUpgrade + "\x0c" + getEvil, gateDenied, ReasonMalformedHTTP, "", len(wsUpgrade)},
		{"refused upgrade, then a \\x0b-prefixed request", wsUpgrade + "\x0b" + getEvil, gateDenied, ReasonMalformedHTTP, "", len(wsUpgrade)},
		{"refused upgrade, then a \\x85-prefixed request", wsUpgrade + "\x85" + getEvil, gateDenied, ReasonMalformedHTTP, "", len(wsUpgrade)},
		{"refused upgrade, then a frame", wsUpgrade + wsFrame + "\r\n", gateDenied, ReasonMalformedHTTP, "", len(wsUpgrade)},
		{"refused CONNECT, then TLS", "CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\n\r\n\x16\x03\x01\x00\x05hello\n",
			gateDenied, ReasonMalformedHTTP, "", len("CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\n\r\n")},
		{"GET with a body", "GET / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 35\r\n\r\n" + getEvil, gateDenied, ReasonBodyOnBodiless, "", 0},
		{"HEAD with a chunked body", "HEAD / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", gateDenied, ReasonBodyOnBodiless, "", 0},
		{"OPTIONS with a body", "OPTIONS * HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 1\r\n\r\nx", gateDenied, ReasonBodyOnBodiless, "", 0},
		{"DELETE with a body", "DELETE / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 1\r\n\r\nx", gateDenied, ReasonBodyOnBodiless, "", 0},
		{"TRACE with a body", "TRACE / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 1\r\n\r\nx", gateDenied, ReasonBodyOnBodiless, "", 0},
		{"GET with Content-Length 0", "GET / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 0\r\n\r\n" + getAllowed, gateEOF, "", "", -1},
		{"second request a GET with a body", getAllowed + "GET / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 1\r\n\r\nx", gateDenied, ReasonBodyOnBodiless, "", len(getAllowed)},
		{"EOF inside a Content-Length body", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 10\r\n\r\nabc", gateFailed, "", "", -1},
		{"EOF inside a chunk", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", gateFailed, "", "", -1},
		{"EOF inside a head", getAllowed + "GET / HTTP/1.1\r\nHost: allowed.test\r\n", gateFailed, "", "", len(getAllowed)},
	}
	for _, tc := range cases {
		for _, size := range []int{1, 7, 64 << 10} {
			t.Run(fmt.Sprintf("%s/read%d", tc.name, size), func(t *testing.T) {
				// Cases named "refused ..." get a server that refuses
				// their upgrade; every other upgrade is accepted.
				accept := !strings.HasPrefix(tc.name, "refused")
				g, end, err, out := runGate("allowed.test", 80, []byte(tc.in), size, accept)
				if end != tc.end || g.reason != tc.reason || g.rule != tc.rule {
					t.Fatalf("end %d reason %q rule %q (err %v), want end %d reason %q rule %q",
						end, g.reason, g.rule, err, tc.end, tc.reason, tc.rule)
				}
				if tc.end == gateFailed && !errors.Is(err, errTruncated) {
					t.Errorf("err = %v, want errTruncated", err)
				}
				want := tc.forward
				if want < 0 {
					want = len(tc.in)
				}
				if tc.end == gateFailed && tc.forward < 0 {
					// A truncated body is forwarded as far as it came.
					want = len(out)
				}
				if !bytes.Equal(out, []byte(tc.in)[:want]) || g.forwarded != int64(len(out)) {
					t.Errorf("forwarded %d bytes %q (counted %d), want the first %d of the input", len(out), out, g.forwarded, want)
				}
			})
		}
	}
}

// TestHTTPGateNoHost: an HTTP/1.0 connection allowed without a Host (by
// its IP) stays without one.
func TestHTTPGateNoHost(t *testing.T) {
	req10 := "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
	g, end, _, out := runGate("", 80, []byte(req10+req10+getAllowed), 5, false)
	if end != gateDenied || g.reason != ReasonHostSwitch || g.rule != "switched_to:allowed.test" || string(out) != req10+req10 {
		t.Fatalf("end %d reason %q rule %q forwarded %q", end, g.reason, g.rule, out)
	}
}

// TestHTTPGateIdleTimeout: a client that goes silent between requests is
// cut after the relay's idle timeout, as on the splice path.
func TestHTTPGateIdleTimeout(t *testing.T) {
	client, proxyIn := tcpPair(t)
	proxyOut, sink := tcpPair(t)
	for _, c := range []*net.TCPConn{client, proxyIn, proxyOut, sink} {
		defer c.Close()
	}
	idle := newIdleClock(200 * time.Millisecond)
	g := httpGate{host: "allowed.test", port: 80, answers: newAnswers(), httpStream: httpStream{buf: make([]byte, conn.MaxPeek),
		src: idleReader{c: proxyIn, idle: idle}, dst: idleWriter{c: proxyOut, idle: idle}}}
	io.WriteString(client, getAllowed)
	start := time.Now()
	end, err := g.run()
	if end != gateFailed || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("end %d err %v, want an idle deadline", end, err)
	}
	if el := time.Since(start); el < 200*time.Millisecond || el > 2*time.Second {
		t.Errorf("cut after %v, want about the 200ms idle timeout", el)
	}
	if g.forwarded != int64(len(getAllowed)) {
		t.Errorf("forwarded %d bytes before the cut, want %d", g.forwarded, len(getAllowed))
	}
}

// recordingUpstream is an HTTP server that records the Host of every
// request it serves and answers with the body length it read.
type recordingUpstream struct {
	addr  string
	mu    sync.Mutex
	hosts []string
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &recordingUpstream{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.hosts = append(u.hosts, r.Host)
		u.mu.Unlock()
		fmt.Fprintf(w, "host=%s body=%d", r.Host, n)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return u
}

func (u *recordingUpstream) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.hosts...)
}

func dialEngine(t *testing.T, h *harness) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, bufio.NewReader(c)
}

func readBody(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

// expectReset reads until the connection ends and requires a reset.
func expectReset(t *testing.T, br *bufio.Reader) {
	t.Helper()
	_, err := io.Copy(io.Discard, br)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection ended with %v, want a reset", err)
	}
}

func TestHTTPGateKeepAliveSameHost(t *testing.T) {
	up := newRecordingUpstream(t)
	h := newHarness(t, false, map[uint16]string{80: up.addr})
	h.to(worldIP, 80)
	c, br := dialEngine(t, h)
	io.WriteString(c, getAllowed)
	if b := readBody(t, br); b != "host=allowed.test body=0" {
		t.Fatalf("first response %q", b)
	}
	post := "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\n\r\nhello"
	io.WriteString(c, post)
	if b := readBody(t, br); b != "host=allowed.test body=5" {
		t.Fatalf("second response %q", b)
	}
	c.Close()
	ev := h.events(1)
	checkEvent(t, ev[0], map[string]any{"msg": "egress_allowed", "host": "allowed.test", "reason": "allowed_domain",
		"bytes_up": float64(len(getAllowed) + len(post))})
	if len(ev) != 1 {
		t.Errorf("%d audit events, want 1", len(ev))
	}
	if got := up.seen(); len(got) != 2 {
		t.Errorf("upstream saw %v", got)
	}
}

func TestHTTPGateDenials(t *testing.T) {
	chunkedHead := "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n"
	cases := []struct {
		name string
		// first is sent and answered before second is sent; "" skips.
		first, second string
		reason, rule  string
		seen          int // requests the upstream may have served
	}{
		{"host switch on keep-alive", getAllowed, getEvil, ReasonHostSwitch, "switched_to:evil.test", 1},
		{"pipelined host switch", "", getAllowed + getEvil, ReasonHostSwitch, "switched_to:evil.test", 1},
		{"absolute-form host switch", getAllowed, "GET http://evil.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n", ReasonHostSwitch, "switched_to:evil.test", 1},
		{"CL and TE together", "", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ReasonMalformedHTTP, "", 0},
		{"oversized chunk line", "", chunkedHead + "1;" + strings.Repeat("e", maxChunkLine) + "\r\n", ReasonMalformedHTTP, "", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := newRecordingUpstream(t)
			h := newHarness(t, false, map[uint16]string{80: up.addr})
			h.to(worldIP, 80)
			c, br := dialEngine(t, h)
			if tc.first != "" {
				io.WriteString(c, tc.first)
				if b := readBody(t, br); b != "host=allowed.test body=0" {
					t.Fatalf("first response %q", b)
				}
			}
			io.WriteString(c, tc.second)
			if tc.first != "" || tc.seen == 0 {
				expectReset(t, br)
			} else {
				// The pipelined first request may be answered before the reset.
				io.Copy(io.Discard, br)
			}
			ev := h.events(1)
			checkEvent(t, ev[0], map[string]any{"msg": "egress_denied", "host": "allowed.test", "reason": tc.reason, "rule": tc.rule})
			time.Sleep(50 * time.Millisecond)
			if len(h.events(1)) != 1 {
				t.Errorf("more than one audit event: %v", h.events(1))
			}
			for _, host := range up.seen() {
				if host != "allowed.test" {
					t.Errorf("upstream served a request for %q", host)
				}
			}
			if got := up.seen(); len(got) > tc.seen {
				t.Errorf("upstream served %v, at most %d expected", got, tc.seen)
			}
		})
	}
}

// TestHTTPGateDryRun: a dry run lets the host switch through and says so.
func TestHTTPGateDryRun(t *testing.T) {
	up := newRecordingUpstream(t)
	h := newHarness(t, true, map[uint16]string{80: up.addr})
	h.to(worldIP, 80)
	c, br := dialEngine(t, h)
	io.WriteString(c, getAllowed+getEvil)
	readBody(t, br)
	if b := readBody(t, br); b != "host=evil.test body=0" {
		t.Fatalf("dry run blocked the second request: %q", b)
	}
	c.Close()
	checkEvent(t, h.events(1)[0], map[string]any{"msg": "egress_allowed", "would_deny": true,
		"reason": ReasonHostSwitch, "rule": "switched_to:evil.test", "bytes_up": float64(len(getAllowed + getEvil))})
}

func TestHTTPGateBodies(t *testing.T) {
	up := newRecordingUpstream(t)
	h := newHarness(t, false, map[uint16]string{80: up.addr})
	h.to(worldIP, 80)
	c, br := dialEngine(t, h)
	// A Content-Length body holding a request for another host is body.
	smuggled := getEvil
	io.WriteString(c, fmt.Sprintf("POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: %d\r\n\r\n%s", len(smuggled), smuggled))
	if b := readBody(t, br); b != fmt.Sprintf("host=allowed.test body=%d", len(smuggled)) {
		t.Fatalf("CL response %q", b)
	}
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"4;x=y\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Trailer: 1\r\n\r\n")
	if b := readBody(t, br); b != "host=allowed.test body=7" {
		t.Fatalf("chunked response %q", b)
	}
	io.WriteString(c, getAllowed)
	if b := readBody(t, br); b != "host=allowed.test body=0" {
		t.Fatalf("request after bodies: %q", b)
	}
	c.Close()
	checkEvent(t, h.events(1)[0], map[string]any{"msg": "egress_allowed"})
	if got := up.seen(); len(got) != 3 {
		t.Errorf("upstream served %v, want 3 requests for allowed.test", got)
	}
}

// TestHTTPGateHalfClose: a client that half-closes after its request must
// have the FIN reach the upstream (echoUntilEOF answers only then).
func TestHTTPGateHalfClose(t *testing.T) {
	h := newHarness(t, false, map[uint16]string{80: echoUntilEOF(t)})
	h.to(worldIP, 80)
	c, _ := dialEngine(t, h)
	body := bytes.Repeat([]byte("z"), 300<<10)
	req := append([]byte(fmt.Sprintf("POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: %d\r\n\r\n", len(body))), body...)
	go func() {
		c.Write(req)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("got %d", len(req)); string(got) != want {
		t.Fatalf("reply %q, want %q", got, want)
	}
	checkEvent(t, h.events(1)[0], map[string]any{"msg": "egress_allowed", "bytes_up": float64(len(req))})
}

// TestHTTPGateWebSocketUpgrade: after an accepted upgrade the client's
// frames pass opaquely in both directions.
func TestHTTPGateWebSocketUpgrade(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		s, err := ln.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		br := bufio.NewReader(s)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(s, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(s, br) // echo the frames
	}()
	h := newHarness(t, false, map[uint16]string{80: ln.Addr().String()})
	h.to(worldIP, 80)
	c, br := dialEngine(t, h)
	io.WriteString(c, wsUpgrade)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade answer %v %v", resp, err)
	}
	frames := wsFrame + "\x82\x80\x00\x00\x00\x00" + wsFrame
	io.WriteString(c, frames)
	got := make([]byte, len(frames))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != frames {
		t.Fatalf("echo %q, %v", got, err)
	}
	c.Close()
	checkEvent(t, h.events(1)[0], map[string]any{"msg": "egress_allowed", "bytes_up": float64(len(wsUpgrade) + len(frames))})
}

// FuzzHTTPGate feeds arbitrary client streams through the gate. What it
// forwards must be a prefix of the input, and Go's own HTTP server parser,
// reading the forwarded bytes as a server at the destination would, must
// never find a request for another host before the stream turns opaque.
func FuzzHTTPGate(f *testing.F) {
	f.Add([]byte(getAllowed+getEvil), uint8(3))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 35\r\n\r\n"+getEvil+getAllowed), uint8(1))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n"+getEvil), uint8(5))
	f.Add([]byte(wsUpgrade+getEvil), uint8(9))
	f.Add([]byte(wsUpgrade+wsFrame), uint8(64))
	f.Add([]byte("CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\n\r\n\x16\x03\x01"), uint8(2))
	f.Add([]byte(getAllowed+"GET http://evil.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n"), uint8(11))
	f.Fuzz(func(t *testing.T, in []byte, size uint8) {
		g, end, _, out := runGate("allowed.test", 80, in, int(size)+1, size%2 == 0)
		if !bytes.HasPrefix(in, out) || g.forwarded != int64(len(out)) {
			t.Fatalf("forwarded %q (counted %d) is not a prefix of the input", out, g.forwarded)
		}
		br := bufio.NewReader(bytes.NewReader(out))
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			host := req.Host
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			if normHost(host) != "allowed.test" {
				t.Fatalf("a server would serve %q from the forwarded bytes %q (end %d)", req.Host, out, end)
			}
			if req.Header.Get("Upgrade") != "" || req.Method == "CONNECT" {
				return // opaque from here, by design
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
		}
	})
}

// BenchmarkUpload64MiB compares a 64 MiB upload through the gate with the
// splice path, over loopback sockets: client → proxy → sink.
func BenchmarkUpload64MiB(b *testing.B) {
	const size = 64 << 20
	head := fmt.Sprintf("POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: %d\r\n\r\n", size)
	body := make([]byte, 1<<20)
	for _, mode := range []string{"gate", "splice"} {
		b.Run(mode, func(b *testing.B) {
			pipes := bufpool.NewPipes(4)
			defer pipes.Close()
			bufs := bufpool.NewBuffers(relayBufSize)     // the splice path's fallback
			gateBufs := bufpool.NewBuffers(conn.MaxPeek) // the engine's peekBufs
			b.SetBytes(size)
			for b.Loop() {
				client, proxyIn := tcpPair(b)
				proxyOut, sink := tcpPair(b)
				done := make(chan int64, 1)
				go func() {
					n, _ := io.Copy(io.Discard, sink)
					done <- n
				}()
				go func() {
					io.WriteString(client, head)
					for sent := 0; sent < size; sent += len(body) {
						client.Write(body)
					}
					client.CloseWrite()
				}()
				idle := newIdleClock(time.Minute)
				if mode == "gate" {
					bp := gateBufs.Get()
					g := httpGate{host: "allowed.test", port: 80, answers: newAnswers(), httpStream: httpStream{buf: *bp,
						src: idleReader{c: proxyIn, idle: idle}, dst: idleWriter{c: proxyOut, idle: idle}}}
					if end, err := g.run(); end != gateEOF {
						b.Fatalf("gate ended %d: %v", end, err)
					}
					gateBufs.Put(bp)
				} else if _, err := copyHalf(proxyOut, proxyIn, pipes, bufs, idle); err != nil {
					b.Fatal(err)
				}
				proxyOut.CloseWrite()
				if n := <-done; n != int64(len(head)+size) {
					b.Fatalf("sink got %d bytes", n)
				}
				for _, c := range []*net.TCPConn{client, proxyIn, proxyOut, sink} {
					c.Close()
				}
			}
		})
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(tb testing.TB) (*net.TCPConn, *net.TCPConn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	return a.(*net.TCPConn), s.(*net.TCPConn)
}

// TestHTTPGateExplicitProxyKeepAlive: the explicit proxy's absolute-form
// requests are gated too — a second request on the same kept-alive proxy
// connection naming another host never reaches the allowed server.
func TestHTTPGateExplicitProxyKeepAlive(t *testing.T) {
	up := newRecordingUpstream(t)
	h := newExplicitHarness(t, map[uint16]string{80: up.addr})
	c, br := dialEngine(t, h.harness)
	io.WriteString(c, "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
	if body := readBody(t, br); !strings.Contains(body, "host=allowed.test") {
		t.Fatalf("first request: %q", body)
	}
	io.WriteString(c, "GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n")
	io.Copy(io.Discard, br) // the gate resets the connection
	for _, host := range up.seen() {
		if host != "allowed.test" {
			t.Fatalf("upstream served %q through the explicit proxy", host)
		}
	}
	ev := h.onlyEvent()
	if ev["msg"] != "egress_denied" || ev["reason"] != ReasonHostSwitch || ev["source"] != "explicit" {
		t.Errorf("audit = %v", ev)
	}
}
