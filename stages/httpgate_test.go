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

const (
	getAllowed = "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
	getEvil    = "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n"
	wsUpgrade  = "GET /ws HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	// wsFrame is a masked client text frame ("Hello", RFC 6455 §5.7).
	wsFrame = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
)

// TestHTTPGateIdleTimeout: a client that goes silent between requests is
// cut after the relay's idle timeout, as on the splice path.
func TestHTTPGateIdleTimeout(t *testing.T) {
	client, proxyIn := tcpPair(t)
	proxyOut, sink := tcpPair(t)
	for _, c := range []*net.TCPConn{client, proxyIn, proxyOut, sink} {
		defer c.Close()
	}
	idle := newIdleClock(200 * time.Millisecond)
	g := conn.NewHTTPGate(idleReader{c: proxyIn, idle: idle}, idleWriter{c: proxyOut, idle: idle}, make([]byte, conn.MaxPeek), "allowed.test", 80, conn.NewAnswers())
	io.WriteString(client, getAllowed)
	start := time.Now()
	end, err := g.Run()
	if end != conn.GateFailed || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("end %d err %v, want an idle deadline", end, err)
	}
	if el := time.Since(start); el < 200*time.Millisecond || el > 2*time.Second {
		t.Errorf("cut after %v, want about the 200ms idle timeout", el)
	}
	if g.Forwarded() != int64(len(getAllowed)) {
		t.Errorf("forwarded %d bytes before the cut, want %d", g.Forwarded(), len(getAllowed))
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
		{"oversized chunk line", "", chunkedHead + "1;" + strings.Repeat("e", 4<<10) + "\r\n", ReasonMalformedHTTP, "", 1},
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
					g := conn.NewHTTPGate(idleReader{c: proxyIn, idle: idle}, idleWriter{c: proxyOut, idle: idle}, *bp, "allowed.test", 80, conn.NewAnswers())
					if end, err := g.Run(); end != conn.GateEOF {
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
