package conn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// Reasons the engine gives the gate's denials (stages/reasons.go): the
// gate's tests keep asserting them.
const (
	reasonHostSwitch     = "host_switch"
	reasonHostMismatch   = "host_mismatch"
	reasonMalformedHTTP  = "malformed_http"
	reasonHeaderTooLarge = "header_too_large"
	reasonUpgradeProto   = "upgrade_not_websocket"
	reasonBodyOnBodiless = "body_on_bodiless_method"
)

// gateReason is stages.gateReason: the reason of a gate's denial.
func gateReason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrHostSwitch):
		return reasonHostSwitch
	case errors.Is(err, ErrHostMismatch):
		return reasonHostMismatch
	case errors.Is(err, ErrHeaderTooLarge):
		return reasonHeaderTooLarge
	case errors.Is(err, ErrUpgradeNotWebSocket):
		return reasonUpgradeProto
	case errors.Is(err, ErrBodyOnBodilessMethod):
		return reasonBodyOnBodiless
	default:
		return reasonMalformedHTTP
	}
}

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
func runGate(host string, port uint16, in []byte, size int, accept bool) (*HTTPGate, GateEnd, error, []byte) {
	var out bytes.Buffer
	src := &chunkReader{b: in, size: size}
	log := NewAnswers()
	stop := make(chan struct{})
	defer close(stop)
	go fakeServer(log, accept, stop)
	g := NewHTTPGate(src, &out, make([]byte, 32<<10), host, port, log)
	end, err := g.Run()
	if end == GateOpaque {
		n, _ := io.Copy(&out, src)
		g.forwarded += n
	}
	return g, end, err, out.Bytes()
}

// fakeServer answers the gate's switching requests as a server would.
func fakeServer(log *Answers, accept bool, stop <-chan struct{}) {
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
		end     GateEnd
		reason  string
		rule    string
		forward int // bytes forwarded; -1: all of in
	}{
		{"keep-alive, same host", getAllowed + getAllowed, GateEOF, "", "", -1},
		{"same host differently spelled", getAllowed + "GET / HTTP/1.1\r\nHost: ALLOWED.Test.:80\r\n\r\n", GateEOF, "", "", -1},
		{"second host differs", getAllowed + getEvil, GateDenied, reasonHostSwitch, "switched_to:evil.test", len(getAllowed)},
		{"second port differs", getAllowed + "GET / HTTP/1.1\r\nHost: allowed.test:8080\r\n\r\n",
			GateDenied, reasonHostSwitch, "switched_to:allowed.test:8080", len(getAllowed)},
		{"absolute-form second request", getAllowed + "GET http://evil.test/x HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
			GateDenied, reasonHostSwitch, "switched_to:evil.test", len(getAllowed)},
		{"a Host, then HTTP/1.0 without Host", getAllowed + "GET / HTTP/1.0\r\n\r\n",
			GateDenied, reasonHostSwitch, "switched_to:<none>", len(getAllowed)},
		{"first request differs from the allowed host", getEvil, GateDenied, reasonHostSwitch, "switched_to:evil.test", 0},
		{"Content-Length body that looks like a request",
			"POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 35\r\n\r\n" + getEvil + getAllowed, GateEOF, "", "", -1},
		{"identical duplicate Content-Length", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\nabc" + getAllowed,
			GateEOF, "", "", -1},
		{"chunked body with extensions and trailers, then a request",
			"POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n" +
				"5;name=\"v\"\r\nhello\r\na\r\n" + getEvil[:10] + "\r\n0\r\nX-Sum: 1\r\n\r\n" + getAllowed, GateEOF, "", "", -1},
		{"chunked body then another host", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + getEvil,
			GateDenied, reasonHostSwitch, "switched_to:evil.test", len("POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")},
		{"trailing CRLF after a request", getAllowed + "\r\n", GateEOF, "", "", -1},
		{"CL and TE together", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			GateDenied, reasonMalformedHTTP, "", 0},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", GateDenied, reasonMalformedHTTP, "", 0},
		{"TE not ending in chunked", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", GateDenied, reasonMalformedHTTP, "", 0},
		{"chunked twice", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", GateDenied, reasonMalformedHTTP, "", 0},
		{"empty TE element", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: ,chunked\r\n\r\n", GateDenied, reasonMalformedHTTP, "", 0},
		{"conflicting Content-Length", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", GateDenied, reasonMalformedHTTP, "", 0},
		{"negative Content-Length", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: -1\r\n\r\n", GateDenied, reasonMalformedHTTP, "", 0},
		{"signed Content-Length", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: +1\r\n\r\nx", GateDenied, reasonMalformedHTTP, "", 0},
		{"overflowing Content-Length", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 9999999999999999999\r\n\r\n", GateDenied, reasonMalformedHTTP, "", 0},
		{"empty Content-Length", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length:\r\n\r\n", GateDenied, reasonMalformedHTTP, "", 0},
		{"oversized chunk line", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n" + longChunkLine,
			GateDenied, reasonMalformedHTTP, "", len("POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n")},
		{"chunk line with bare LF", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
			GateDenied, reasonMalformedHTTP, "", len("POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n")},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n",
			GateDenied, reasonMalformedHTTP, "", len("POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n")},
		{"chunk size not hex", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n 3\r\nabc\r\n",
			GateDenied, reasonMalformedHTTP, "", len("POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n")},
		{"chunk data longer than its size", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
			GateDenied, reasonMalformedHTTP, "", len("POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc")},
		{"folded trailer", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n folded\r\n\r\n",
			GateDenied, reasonMalformedHTTP, "", len("POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")},
		{"malformed second head", getAllowed + "GET / HTTP/1.1\r\nHost : evil.test\r\n\r\n", GateDenied, reasonMalformedHTTP, "", len(getAllowed)},
		{"duplicate Host in second head", getAllowed + "GET / HTTP/1.1\r\nHost: allowed.test\r\nHost: evil.test\r\n\r\n", GateDenied, reasonMalformedHTTP, "", len(getAllowed)},
		{"oversized second head", getAllowed + "GET / HTTP/1.1\r\nHost: allowed.test\r\nX: " + strings.Repeat("a", MaxHTTPHeader) + "\r\n\r\n",
			GateDenied, reasonHeaderTooLarge, "", len(getAllowed)},
		{"WebSocket upgrade, then frames", wsUpgrade + wsFrame + getEvil, GateOpaque, "", "", -1},
		{"refused upgrade, then another host", wsUpgrade + getEvil, GateDenied, reasonHostSwitch, "switched_to:evil.test", len(wsUpgrade)},
		{"refused upgrade, then the same host", wsUpgrade + getAllowed, GateEOF, "", "", -1},
		{"h2c upgrade", "GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
			GateDenied, reasonUpgradeProto, "", 0},
		{"CONNECT, then TLS", "CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\n\r\n\x16\x03\x01\x00\x05hello" + getEvil, GateOpaque, "", "", -1},
		{"CONNECT with a body", "CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\nContent-Length: 5\r\n\r\nhello", GateDenied, reasonMalformedHTTP, "", 0},
		// Issue #11 items 4–6.
		{"absolute-form target ≠ Host", "GET http://allowed.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n", GateDenied, reasonHostMismatch, "", 0},
		{"CONNECT target ≠ Host", "CONNECT allowed.test:80 HTTP/1.1\r\nHost: denied.test:80\r\n\r\n", GateDenied, reasonHostMismatch, "", 0},
		{"refused upgrade, then a \\x0c-prefixed request", wsUpgrade + "\x0c" + getEvil, GateDenied, reasonMalformedHTTP, "", len(wsUpgrade)},
		{"refused upgrade, then a \\x0b-prefixed request", wsUpgrade + "\x0b" + getEvil, GateDenied, reasonMalformedHTTP, "", len(wsUpgrade)},
		{"refused upgrade, then a \\x85-prefixed request", wsUpgrade + "\x85" + getEvil, GateDenied, reasonMalformedHTTP, "", len(wsUpgrade)},
		{"refused upgrade, then a frame", wsUpgrade + wsFrame + "\r\n", GateDenied, reasonMalformedHTTP, "", len(wsUpgrade)},
		{"refused CONNECT, then TLS", "CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\n\r\n\x16\x03\x01\x00\x05hello\n",
			GateDenied, reasonMalformedHTTP, "", len("CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\n\r\n")},
		{"GET with a body", "GET / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 35\r\n\r\n" + getEvil, GateDenied, reasonBodyOnBodiless, "", 0},
		{"HEAD with a chunked body", "HEAD / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", GateDenied, reasonBodyOnBodiless, "", 0},
		{"OPTIONS with a body", "OPTIONS * HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 1\r\n\r\nx", GateDenied, reasonBodyOnBodiless, "", 0},
		{"DELETE with a body", "DELETE / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 1\r\n\r\nx", GateDenied, reasonBodyOnBodiless, "", 0},
		{"TRACE with a body", "TRACE / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 1\r\n\r\nx", GateDenied, reasonBodyOnBodiless, "", 0},
		{"GET with Content-Length 0", "GET / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 0\r\n\r\n" + getAllowed, GateEOF, "", "", -1},
		{"second request a GET with a body", getAllowed + "GET / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 1\r\n\r\nx", GateDenied, reasonBodyOnBodiless, "", len(getAllowed)},
		{"EOF inside a Content-Length body", "POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 10\r\n\r\nabc", GateFailed, "", "", -1},
		{"EOF inside a chunk", "POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", GateFailed, "", "", -1},
		{"EOF inside a head", getAllowed + "GET / HTTP/1.1\r\nHost: allowed.test\r\n", GateFailed, "", "", len(getAllowed)},
	}
	for _, tc := range cases {
		for _, size := range []int{1, 7, 64 << 10} {
			t.Run(fmt.Sprintf("%s/read%d", tc.name, size), func(t *testing.T) {
				// Cases named "refused ..." get a server that refuses
				// their upgrade; every other upgrade is accepted.
				accept := !strings.HasPrefix(tc.name, "refused")
				g, end, err, out := runGate("allowed.test", 80, []byte(tc.in), size, accept)
				if end != tc.end || gateReason(g.denial) != tc.reason || g.rule != tc.rule {
					t.Fatalf("end %d reason %q rule %q (err %v), want end %d reason %q rule %q",
						end, gateReason(g.denial), g.rule, err, tc.end, tc.reason, tc.rule)
				}
				if tc.end == GateFailed && !errors.Is(err, ErrTruncated) {
					t.Errorf("err = %v, want ErrTruncated", err)
				}
				want := tc.forward
				if want < 0 {
					want = len(tc.in)
				}
				if tc.end == GateFailed && tc.forward < 0 {
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
	if end != GateDenied || gateReason(g.denial) != reasonHostSwitch || g.rule != "switched_to:allowed.test" || string(out) != req10+req10 {
		t.Fatalf("end %d reason %q rule %q forwarded %q", end, gateReason(g.denial), g.rule, out)
	}
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
			if NormHost(host) != "allowed.test" {
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
