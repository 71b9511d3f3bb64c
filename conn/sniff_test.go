package conn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sniffSamples are complete first flights with what Sniff must report.
func sniffSamples(t testing.TB) []struct {
	name string
	in   []byte
	want Sniffed
} {
	hellos := goHellos(t)
	return []struct {
		name string
		in   []byte
		want Sniffed
	}{
		{"curl TLS", readTestdata(t, "curl.bin"), Sniffed{Proto: ProtoTLS, SNI: "allowed.test", ALPN: []string{"h2", "http/1.1"}}},
		{"openssl TLS", readTestdata(t, "openssl.bin"), Sniffed{Proto: ProtoTLS, SNI: "openssl.test", ALPN: []string{"h2", "http/1.1"}}},
		{"go classic", hellos["classic"], Sniffed{Proto: ProtoTLS, SNI: "example.test", ALPN: []string{"h2", "http/1.1"}}},
		{"go post-quantum", hellos["post-quantum"], Sniffed{Proto: ProtoTLS, SNI: "pq.example.test", ALPN: []string{"h2"}}},
		{"go over 16 KiB", hellos["large"], Sniffed{Proto: ProtoTLS, SNI: "big.example.test", ALPN: bigALPN(90)}},
		{"go over 16 KiB in 7-byte records", reframe(t, hellos["large"], 7), Sniffed{Proto: ProtoTLS, SNI: "big.example.test", ALPN: bigALPN(90)}},
		{"TLS without SNI", buildHello(alpnExt("h2")), Sniffed{Proto: ProtoTLS, ALPN: []string{"h2"}}},
		{"curl proxy HTTP", readTestdata(t, "curl-proxy.bin"), Sniffed{Proto: ProtoHTTP, Host: "proxied.test", Port: 8080}},
		{"curl CONNECT", readTestdata(t, "curl-connect.bin"), Sniffed{Proto: ProtoHTTP, Host: "tunnel.test", Port: 443}},
		{"HTTP bare LF", []byte("GET / HTTP/1.1\nHost: LF.test\n\n"), Sniffed{Proto: ProtoHTTP, Host: "lf.test"}},
	}
}

func TestSniffTrickled(t *testing.T) {
	for _, tc := range sniffSamples(t) {
		for _, chunk := range []int{1, 3, 7, 4096} {
			r := &trickleReader{data: tc.in, maxChunk: chunk}
			buf := make([]byte, MaxPeek)
			s, n, err := Sniff(r, buf)
			if err != nil {
				t.Fatalf("%s, chunks ≤%d: %v", tc.name, chunk, err)
			}
			if !reflect.DeepEqual(s, tc.want) {
				t.Errorf("%s, chunks ≤%d: got %+v, want %+v", tc.name, chunk, s, tc.want)
			}
			if n != len(tc.in) || !bytes.Equal(buf[:n], tc.in) || len(r.data) != 0 {
				t.Errorf("%s, chunks ≤%d: n = %d of %d, left %d unread", tc.name, chunk, n, len(tc.in), len(r.data))
			}
		}
	}
}

// TestSniffLoopbackSegments sends each sample over real loopback TCP in
// writes of 1–7 bytes with pauses, so the reader sees many segments.
func TestSniffLoopbackSegments(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range sniffSamples(t) {
		t.Run(tc.name, func(t *testing.T) {
			cli, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			srv, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			done := make(chan error, 1)
			go func() {
				step := 1
				if len(tc.in) > 4096 {
					step = 97
				}
				var err error
				for i, k := 0, 0; i < len(tc.in) && err == nil; i, k = i+min(len(tc.in)-i, step+k%7), k+1 {
					_, err = cli.Write(tc.in[i : i+min(len(tc.in)-i, step+k%7)])
					if k%50 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
				done <- err
			}()
			_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, MaxPeek)
			s, n, err := Sniff(srv, buf)
			if werr := <-done; werr != nil {
				t.Fatalf("write: %v", werr)
			}
			if err != nil || !reflect.DeepEqual(s, tc.want) || n != len(tc.in) || !bytes.Equal(buf[:n], tc.in) {
				t.Fatalf("got %+v n=%d err=%v, want %+v n=%d", s, n, err, tc.want, len(tc.in))
			}
		})
	}
}

// pipeSniff runs Sniff on one end of a net.Pipe after writing in to the
// other (then closing it if closeAfter), with a read deadline.
func pipeSniff(t *testing.T, in []byte, closeAfter bool, deadline time.Duration, bufLen int) (Sniffed, int, error, time.Duration) {
	t.Helper()
	cli, srv := net.Pipe()
	defer srv.Close()
	go func() {
		if len(in) > 0 {
			_, _ = cli.Write(in)
		}
		if closeAfter {
			_ = cli.Close()
		}
	}()
	defer cli.Close()
	_ = srv.SetReadDeadline(time.Now().Add(deadline))
	start := time.Now()
	s, n, err := Sniff(srv, make([]byte, bufLen))
	return s, n, err, time.Since(start)
}

func TestSniffOutcomes(t *testing.T) {
	hello := buildHello(hostSNI("a.test"))
	const deadline = 150 * time.Millisecond
	tests := []struct {
		name       string
		in         []byte
		closeAfter bool
		bufLen     int
		wantProto  Proto
		wantSNI    string
		wantErr    error
		reason     string
		quick      bool // must not wait for the deadline
	}{
		{"server speaks first: nothing sent", nil, false, MaxPeek, ProtoOpaque, "", nil, "", false},
		{"SSH banner is opaque at once", []byte("SSH-2.0-OpenSSH_9.2\r\n"), false, MaxPeek, ProtoOpaque, "", nil, "", true},
		{"h2c prior knowledge is opaque", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), false, MaxPeek, ProtoOpaque, "", nil, "", true},
		{"lowercase method is opaque", []byte("get / HTTP/1.1\r\n"), false, MaxPeek, ProtoOpaque, "", nil, "", true},
		{"0x16 then non-TLS is opaque", []byte{0x16, 0x41}, false, MaxPeek, ProtoOpaque, "", nil, "", true},
		{"partial TLS times out", hello[:20], false, MaxPeek, ProtoUnknown, "", ErrClassifyTimeout, "after 20 bytes", false},
		{"partial HTTP times out", []byte("GET / HTTP/1.1\r\nHost: a"), false, MaxPeek, ProtoUnknown, "", ErrClassifyTimeout, "after 23 bytes", false},
		{"partial method times out", []byte("CONN"), false, MaxPeek, ProtoUnknown, "", ErrClassifyTimeout, "after 4 bytes", false},
		{"EOF before anything", nil, true, MaxPeek, ProtoUnknown, "", ErrClientClosed, "after 0 bytes", true},
		{"EOF mid hello", hello[:30], true, MaxPeek, ProtoUnknown, "", ErrClientClosed, "after 30 bytes", true},
		{"hostile SNI reported with error", buildHello(hostSNI("a.test\r\nX")), false, MaxPeek, ProtoTLS, "a.test\r\nX", ErrMalformedClientHello, "byte 0x0d", true},
		{"ServerHello refused before its record completes", []byte{22, 3, 1, 0, 100, 2, 0}, false, MaxPeek, ProtoTLS, "", ErrMalformedClientHello, "handshake type 2", true},
		{"TLS alert record", []byte{21, 3, 3, 0, 2, 2, 40}, false, MaxPeek, ProtoOpaque, "", nil, "", true},
		{"malformed HTTP", []byte("GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n"), false, MaxPeek, ProtoHTTP, "", ErrMalformedHTTP, "control byte", true},
		{"hello larger than buffer", hello, false, 64, ProtoUnknown, "", ErrMalformedClientHello, "does not fit the 64-byte peek buffer", true},
		{"head larger than buffer", []byte("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"), false, 16, ProtoUnknown, "", ErrHeaderTooLarge, "does not fit the 16-byte", true},
		{"head over MaxHTTPHeader", []byte("GET / HTTP/1.1\r\nX: " + strings.Repeat("y", MaxHTTPHeader)), false, MaxPeek, ProtoHTTP, "", ErrHeaderTooLarge, "no end of header", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, n, err, took := pipeSniff(t, tc.in, tc.closeAfter, deadline, tc.bufLen)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && (!errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.reason)) {
				t.Fatalf("err = %v, want %v with %q", err, tc.wantErr, tc.reason)
			}
			if s.Proto != tc.wantProto || s.SNI != tc.wantSNI {
				t.Errorf("got %+v, want proto %v SNI %q", s, tc.wantProto, tc.wantSNI)
			}
			if n > tc.bufLen || n > len(tc.in) {
				t.Errorf("n = %d, buffer %d, input %d", n, tc.bufLen, len(tc.in))
			}
			if tc.quick && took >= deadline {
				t.Errorf("took %v: waited for the deadline", took)
			}
		})
	}
}

type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

func TestSniffNoProgress(t *testing.T) {
	_, _, err := Sniff(stuckReader{}, make([]byte, 16))
	if !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("err = %v, want io.ErrNoProgress", err)
	}
}

func BenchmarkSniff(b *testing.B) {
	hellos := goHellos(b)
	inputs := []struct {
		name string
		in   []byte
	}{
		{"curl-tls", readTestdata(b, "curl.bin")},
		{"go-post-quantum", hellos["post-quantum"]},
		{"go-large-7-byte-reads", hellos["large"]},
		{"curl-http", readTestdata(b, "curl-http.bin")},
	}
	buf := make([]byte, MaxPeek)
	for _, in := range inputs {
		chunk := 1 << 20
		if strings.Contains(in.name, "7-byte") {
			chunk = 7
		}
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var r io.Reader = bytes.NewReader(in.in)
				if chunk < len(in.in) {
					r = &trickleReader{data: in.in, maxChunk: chunk}
				}
				if _, _, err := Sniff(r, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSniffTrickleIsLinear feeds worst-case streams one byte per read: a
// 32 KiB ClientHello in 7-byte records (≈56 KiB) and a 16 KiB head of
// tiny header lines. Re-parsing from the start after every read would be
// quadratic (billions of steps); Sniff must finish quickly.
func TestSniffTrickleIsLinear(t *testing.T) {
	msg := append([]byte{1, 0, 0x7f, 0xfc}, make([]byte, 0x7ffc)...) // zero body: malformed at the end
	head := "GET / HTTP/1.1\r\nHost: a.test\r\n" + strings.Repeat("a:\n", (MaxHTTPHeader-40)/3) + "\r\n"
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"TLS", frameRecords(msg, 7), ErrMalformedClientHello},
		{"HTTP", []byte(head), nil},
	}
	for _, tc := range tests {
		start := time.Now()
		_, n, err := Sniff(&trickleReader{data: tc.in, maxChunk: 1}, make([]byte, MaxPeek))
		took := time.Since(start)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) || n != len(tc.in) {
			t.Fatalf("%s: n=%d of %d err=%v, want %v", tc.name, n, len(tc.in), err, tc.want)
		}
		if took > 2*time.Second {
			t.Errorf("%s: %d one-byte reads took %v", tc.name, len(tc.in), took)
		}
		t.Logf("%s: %d one-byte reads in %v", tc.name, len(tc.in), took)
	}
}
