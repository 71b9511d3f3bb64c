package conn

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// fuzzSeeds are the captures in testdata plus crypto/tls hellos.
func fuzzSeeds(f *testing.F) [][]byte {
	f.Helper()
	var seeds [][]byte
	for _, name := range []string{"curl.bin", "openssl.bin", "curl-http.bin", "curl-proxy.bin", "curl-connect.bin"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	h := goHellos(f)
	seeds = append(seeds, h["classic"], h["post-quantum"], reframe(f, h["classic"], 5),
		buildHello(hostSNI("a.test"), alpnExt("h2")),
		[]byte("GET / HTTP/1.1\nHost: [2001:db8::1]:80\n\n"),
		[]byte("OPTIONS * HTTP/1.0\r\n\r\n"),
		[]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	return seeds
}

func FuzzParseClientHello(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, err := ParseClientHello(b)
		if err != nil {
			if !errors.Is(err, ErrNeedMore) && !errors.Is(err, ErrMalformedClientHello) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if ch.Len <= 0 || ch.Len > len(b) || ch.Len > MaxPeek {
			t.Fatalf("Len %d of %d bytes", ch.Len, len(b))
		}
		if !ch.ServerNameIsIP && checkSNIHostName([]byte(ch.ServerName)) != nil && ch.ServerName != "" {
			t.Fatalf("invalid ServerName %q accepted", ch.ServerName)
		}
		// The bytes after the hello do not matter, and no prefix of it
		// parses to anything but ErrNeedMore.
		again, err := ParseClientHello(b[:ch.Len])
		if err != nil || again.ServerName != ch.ServerName || !slices.Equal(again.ALPN, ch.ALPN) {
			t.Fatalf("re-parse of b[:Len]: %+v %v", again, err)
		}
		for _, k := range []int{0, 1, ch.Len / 3, ch.Len / 2, ch.Len - 1} {
			if p, err := ParseClientHello(b[:k]); !errors.Is(err, ErrNeedMore) {
				t.Fatalf("prefix %d/%d: %+v %v", k, ch.Len, p, err)
			}
		}
	})
}

func FuzzParseHTTPRequest(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := ParseHTTPRequest(b)
		if err != nil {
			if !errors.Is(err, ErrNeedMore) && !errors.Is(err, ErrMalformedHTTP) && !errors.Is(err, ErrHeaderTooLarge) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if req.HeaderLen <= 0 || req.HeaderLen > len(b) || req.HeaderLen > MaxHTTPHeader {
			t.Fatalf("HeaderLen %d of %d", req.HeaderLen, len(b))
		}
		if req.Host == "" && req.Version == "HTTP/1.1" {
			t.Fatalf("HTTP/1.1 request accepted without a host: %+v", req)
		}
		if bytes.ContainsAny([]byte(req.Host), " \t\r\n\x00@/") {
			t.Fatalf("hostile host accepted: %q", req.Host)
		}
		again, err := ParseHTTPRequest(b[:req.HeaderLen])
		if err != nil || again != req {
			t.Fatalf("re-parse of the head: %+v %v", again, err)
		}
		for _, k := range []int{0, 1, req.HeaderLen / 2, req.HeaderLen - 1} {
			if p, err := ParseHTTPRequest(b[:k]); !errors.Is(err, ErrNeedMore) {
				t.Fatalf("prefix %d/%d: %+v %v", k, req.HeaderLen, p, err)
			}
		}
	})
}

func FuzzSniff(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint8(7), uint16(MaxPeek-1))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, bufLen uint16) {
		buf := make([]byte, int(bufLen)+1)
		r := &trickleReader{data: data, maxChunk: int(chunk)%16 + 1}
		s, n, err := Sniff(r, buf)
		if n < 0 || n > len(buf) || n > len(data) {
			t.Fatalf("n = %d, buffer %d, input %d", n, len(buf), len(data))
		}
		if !bytes.Equal(buf[:n], data[:n]) || len(data)-len(r.data) != n {
			t.Fatalf("buf[:%d] is not the %d bytes consumed", n, len(data)-len(r.data))
		}
		if err != nil {
			for _, want := range []error{ErrMalformedClientHello, ErrMalformedHTTP, ErrHeaderTooLarge, ErrClientClosed, io.ErrNoProgress} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("error wraps no expected sentinel: %v", err)
		}
		switch s.Proto {
		case ProtoTLS:
			ch, perr := ParseClientHello(buf[:n])
			if perr != nil || ch.ServerName != s.SNI {
				t.Fatalf("Sniff said SNI %q, parse of buf[:n] says %q %v", s.SNI, ch.ServerName, perr)
			}
		case ProtoHTTP:
			// A target and a Host that disagree still classify, by the
			// target (sniff.go: the request gate refuses the mismatch).
			req, perr := ParseHTTPRequest(buf[:n])
			if (perr != nil && !errors.Is(perr, ErrHostMismatch)) || req.Host != s.Host || req.Port != s.Port {
				t.Fatalf("Sniff said %q:%d, parse of buf[:n] says %+v %v", s.Host, s.Port, req, perr)
			}
		case ProtoOpaque:
			if n == 0 || LooksLikeTLS(buf[:n]) || couldBeHTTP(buf[:n]) {
				t.Fatalf("opaque after %d bytes %q", n, buf[:n])
			}
		default:
			t.Fatalf("no error and proto %v", s.Proto)
		}
	})
}

// FuzzParseHTTPResponse: the response parser never panics, a prefix of a
// complete head only ever needs more, and HeaderLen stays in bounds.
func FuzzParseHTTPResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"))
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseHTTPResponse(b)
		if err != nil {
			return
		}
		if r.HeaderLen <= 0 || r.HeaderLen > len(b) || r.Status < 100 || r.Status > 999 {
			t.Fatalf("response %+v from %d bytes", r, len(b))
		}
		for k := 0; k < r.HeaderLen; k++ {
			if _, err := ParseHTTPResponse(b[:k]); !errors.Is(err, ErrNeedMore) {
				t.Fatalf("prefix of %d bytes: %v", k, err)
			}
		}
	})
}
