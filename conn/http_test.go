package conn

import (
	"errors"
	"strings"
	"testing"
)

func TestParseHTTPRequest(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want HTTPRequest // HeaderLen is checked against len(in) when in ends the head
	}{
		{"origin-form", "GET /x?y=1 HTTP/1.1\r\nHost: Example.TEST\r\nAccept: */*\r\n\r\n",
			HTTPRequest{Method: "GET", Target: "/x?y=1", Host: "example.test", Version: "HTTP/1.1"}},
		{"origin-form with port", "POST / HTTP/1.1\r\nhOsT:  api.test:8443 \r\n\r\n",
			HTTPRequest{Method: "POST", Target: "/", Host: "api.test", Port: 8443, Version: "HTTP/1.1"}},
		{"bare LF", "GET / HTTP/1.1\nHost: lf.test\n\n",
			HTTPRequest{Method: "GET", Target: "/", Host: "lf.test", Version: "HTTP/1.1"}},
		{"mixed line endings", "GET / HTTP/1.1\r\nHost: lf.test\n\r\n",
			HTTPRequest{Method: "GET", Target: "/", Host: "lf.test", Version: "HTTP/1.1"}},
		{"absolute-form with the same Host", "GET http://Abs.Test:8080/p HTTP/1.1\r\nHost: abs.test:8080\r\n\r\n",
			HTTPRequest{Method: "GET", Target: "http://Abs.Test:8080/p", Host: "abs.test", Port: 8080, AbsoluteForm: true, Version: "HTTP/1.1"}},
		{"absolute-form, Host with the default port", "GET http://abs.test/p HTTP/1.1\r\nHost: abs.test:80\r\n\r\n",
			HTTPRequest{Method: "GET", Target: "http://abs.test/p", Host: "abs.test", AbsoluteForm: true, Version: "HTTP/1.1"}},
		{"absolute-form https no path no Host", "OPTIONS HTTPS://abs.test HTTP/1.1\r\n\r\n",
			HTTPRequest{Method: "OPTIONS", Target: "HTTPS://abs.test", Host: "abs.test", AbsoluteForm: true, Version: "HTTP/1.1"}},
		{"absolute-form query right after host", "GET http://q.test?x=@evil HTTP/1.1\r\n\r\n",
			HTTPRequest{Method: "GET", Target: "http://q.test?x=@evil", Host: "q.test", AbsoluteForm: true, Version: "HTTP/1.1"}},
		{"CONNECT with its Host", "CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\n\r\n",
			HTTPRequest{Method: "CONNECT", Target: "tunnel.test:443", Host: "tunnel.test", Port: 443, Version: "HTTP/1.1"}},
		{"CONNECT with a Host without port", "CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test\r\n\r\n",
			HTTPRequest{Method: "CONNECT", Target: "tunnel.test:443", Host: "tunnel.test", Port: 443, Version: "HTTP/1.1"}},
		{"CONNECT IPv6", "CONNECT [2001:DB8::1]:443 HTTP/1.1\r\n\r\n",
			HTTPRequest{Method: "CONNECT", Target: "[2001:DB8::1]:443", Host: "2001:db8::1", Port: 443, Version: "HTTP/1.1"}},
		{"IPv6 Host header", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n",
			HTTPRequest{Method: "GET", Target: "/", Host: "2001:db8::1", Port: 80, Version: "HTTP/1.1"}},
		{"IPv6 Host header without port", "GET / HTTP/1.1\r\nHost: [2001:db8:0::1]\r\n\r\n",
			HTTPRequest{Method: "GET", Target: "/", Host: "2001:db8::1", Version: "HTTP/1.1"}},
		{"IPv4 host", "GET / HTTP/1.1\r\nHost: 198.51.100.1:80\r\n\r\n",
			HTTPRequest{Method: "GET", Target: "/", Host: "198.51.100.1", Port: 80, Version: "HTTP/1.1"}},
		{"asterisk OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: star.test\r\n\r\n",
			HTTPRequest{Method: "OPTIONS", Target: "*", Host: "star.test", Version: "HTTP/1.1"}},
		{"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n",
			HTTPRequest{Method: "GET", Target: "/", Version: "HTTP/1.0"}},
		{"HTTP/1.0 with Host", "HEAD / HTTP/1.0\r\nHost: old.test\r\n\r\n",
			HTTPRequest{Method: "HEAD", Target: "/", Host: "old.test", Version: "HTTP/1.0"}},
		{"extension method", "PROPFIND /d HTTP/1.1\r\nHost: dav.test\r\n\r\n",
			HTTPRequest{Method: "PROPFIND", Target: "/d", Host: "dav.test", Version: "HTTP/1.1"}},
		{"trailing dot kept", "GET / HTTP/1.1\r\nHost: dot.test.\r\n\r\n",
			HTTPRequest{Method: "GET", Target: "/", Host: "dot.test.", Version: "HTTP/1.1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := "BODY-BYTES"
			got, err := ParseHTTPRequest([]byte(tc.in + body))
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			tc.want.HeaderLen = len(tc.in)
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			for k := 0; k < len(tc.in); k++ {
				if _, err := ParseHTTPRequest([]byte(tc.in[:k])); !errors.Is(err, ErrNeedMore) {
					t.Fatalf("prefix %q: err = %v, want ErrNeedMore", tc.in[:k], err)
				}
			}
		})
	}
}

func TestParseHTTPRequestErrors(t *testing.T) {
	long := "GET / HTTP/1.1\r\nHost: big.test\r\nX: " + strings.Repeat("a", MaxHTTPHeader) + "\r\n\r\n"
	tests := []struct {
		name   string
		in     string
		target error
		reason string
	}{
		{"duplicate Host", "GET / HTTP/1.1\r\nHost: a.test\r\nhost: a.test\r\n\r\n", ErrMalformedHTTP, "duplicate Host"},
		{"conflicting Host", "GET / HTTP/1.1\r\nHost: a.test\r\nHOST: b.test\r\n\r\n", ErrMalformedHTTP, "duplicate Host"},
		{"folded Host", "GET / HTTP/1.1\r\nHost:\r\n a.test\r\n\r\n", ErrMalformedHTTP, "obsolete line folding"},
		{"folded other header", "GET / HTTP/1.1\r\nHost: a.test\r\nX: 1\r\n\t2\r\n\r\n", ErrMalformedHTTP, "obsolete line folding"},
		{"missing Host on 1.1", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", ErrMalformedHTTP, "without Host"},
		{"empty Host on 1.1", "GET / HTTP/1.1\r\nHost: \r\n\r\n", ErrMalformedHTTP, "without Host"},
		{"space in Host", "GET / HTTP/1.1\r\nHost: a .test\r\n\r\n", ErrMalformedHTTP, "byte 0x20 at offset 1"},
		{"control byte in Host", "GET / HTTP/1.1\r\nHost: a\x01.test\r\n\r\n", ErrMalformedHTTP, "control byte 0x01"},
		{"NUL in Host", "GET / HTTP/1.1\r\nHost: a\x00.test\r\n\r\n", ErrMalformedHTTP, "NUL at offset"},
		{"bare CR", "GET / HTTP/1.1\r\nHost: a.test\rX: y\r\n\r\n", ErrMalformedHTTP, "bare CR"},
		{"userinfo in Host", "GET / HTTP/1.1\r\nHost: allowed.test@evil.test\r\n\r\n", ErrMalformedHTTP, "userinfo"},
		{"userinfo in absolute-form", "GET http://allowed.test@evil.test/ HTTP/1.1\r\n\r\n", ErrMalformedHTTP, "userinfo"},
		{"bad Host even when target wins", "GET http://a.test/ HTTP/1.1\r\nHost: a b\r\n\r\n", ErrMalformedHTTP, "Host header"},
		{"port zero", "GET / HTTP/1.1\r\nHost: a.test:0\r\n\r\n", ErrMalformedHTTP, "port 0 out of range"},
		{"port too big", "GET / HTTP/1.1\r\nHost: a.test:65536\r\n\r\n", ErrMalformedHTTP, "port 65536 out of range"},
		{"port not numeric", "GET / HTTP/1.1\r\nHost: a.test:80x\r\n\r\n", ErrMalformedHTTP, `bad port "80x"`},
		{"empty port", "GET / HTTP/1.1\r\nHost: a.test:\r\n\r\n", ErrMalformedHTTP, `bad port ""`},
		{"signed port", "GET / HTTP/1.1\r\nHost: a.test:+80\r\n\r\n", ErrMalformedHTTP, `bad port "+80"`},
		{"unbracketed IPv6", "GET / HTTP/1.1\r\nHost: 2001:db8::1\r\n\r\n", ErrMalformedHTTP, "bad port"},
		{"IPv6 zone", "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", ErrMalformedHTTP, "bad IPv6 literal"},
		{"IPv4 in brackets", "GET / HTTP/1.1\r\nHost: [192.0.2.1]\r\n\r\n", ErrMalformedHTTP, "bad IPv6 literal"},
		{"junk after IPv6", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", ErrMalformedHTTP, "junk after IPv6"},
		// Issue #11 item 4: servers that prefer the Host (Python, Node) would
		// serve the Host while the policy judged the target.
		{"absolute-form target ≠ Host", "GET http://allowed.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n", ErrHostMismatch, "different hosts"},
		{"absolute-form port ≠ Host port", "GET http://allowed.test:8080/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n", ErrHostMismatch, "different hosts"},
		{"absolute-form, empty Host", "GET http://allowed.test/ HTTP/1.1\r\nHost:\r\n\r\n", ErrHostMismatch, "different hosts"},
		{"CONNECT target ≠ Host", "CONNECT tunnel.test:443 HTTP/1.1\r\nHost: decoy.test:443\r\n\r\n", ErrHostMismatch, "different hosts"},
		{"CONNECT port ≠ Host port", "CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:80\r\n\r\n", ErrHostMismatch, "different hosts"},
		{"CONNECT without port", "CONNECT tunnel.test HTTP/1.1\r\n\r\n", ErrMalformedHTTP, "has no port"},
		{"CONNECT origin-form", "CONNECT / HTTP/1.1\r\nHost: a.test\r\n\r\n", ErrMalformedHTTP, "byte 0x2f"},
		{"asterisk with GET", "GET * HTTP/1.1\r\nHost: a.test\r\n\r\n", ErrMalformedHTTP, "asterisk-form target with method GET"},
		{"unknown scheme", "GET ftp://a.test/ HTTP/1.1\r\n\r\n", ErrMalformedHTTP, `scheme "ftp"`},
		{"relative target", "GET a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n", ErrMalformedHTTP, "no known form"},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", ErrMalformedHTTP, `version "HTTP/2.0"`},
		{"lowercase version", "GET / http/1.1\r\n\r\n", ErrMalformedHTTP, `version "http/1.1"`},
		{"double space", "GET  / HTTP/1.1\r\n\r\n", ErrMalformedHTTP, `version "/ HTTP/1.1"`},
		{"no version", "GET /\r\n\r\n", ErrMalformedHTTP, "no HTTP version"},
		{"method not a token", "G(T / HTTP/1.1\r\n\r\n", ErrMalformedHTTP, "not a token"},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a.test\r\n\r\n", ErrMalformedHTTP, `header name "Host " is not a token`},
		{"header without colon", "GET / HTTP/1.1\r\nHost a.test\r\n\r\n", ErrMalformedHTTP, "without colon"},
		{"non-ASCII target", "GET /\xff HTTP/1.1\r\n\r\n", ErrMalformedHTTP, "byte 0xff"},
		{"oversized head", long, ErrHeaderTooLarge, "head exceeds 16384 bytes"},
		{"oversized without end", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", MaxHTTPHeader), ErrHeaderTooLarge, "no end of header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseHTTPRequest([]byte(tc.in))
			if !errors.Is(err, tc.target) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("err = %v, want %v with %q", err, tc.target, tc.reason)
			}
		})
	}
}

func TestParseHTTPRequestCaptures(t *testing.T) {
	tests := []struct {
		file, host string
		port       uint16 // 0: any non-zero (curl-http.bin has a random port)
		abs        bool
	}{
		{"curl-http.bin", "allowed.test", 0, false},
		{"curl-proxy.bin", "proxied.test", 8080, true},
		{"curl-connect.bin", "tunnel.test", 443, false},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw := readTestdata(t, tc.file)
			req, err := ParseHTTPRequest(raw)
			if err != nil {
				t.Fatal(err)
			}
			if req.Host != tc.host || req.AbsoluteForm != tc.abs || req.HeaderLen != len(raw) ||
				(tc.port != 0 && req.Port != tc.port) || req.Port == 0 {
				t.Errorf("got %+v", req)
			}
		})
	}
}

func TestLooksLikeHTTP(t *testing.T) {
	tests := []struct {
		in         string
		want, pref bool
	}{
		{"GET / HTTP/1.1", true, true},
		{"CONNECT a:1 HTTP/1.1", true, true},
		{"TRACE ", true, true},
		{"GE", false, true},
		{"DELETE", false, true},
		{"GET/", false, false},
		{"get / HTTP/1.1", false, false},
		{"PRI * HTTP/2.0\r\n", false, false},
		{"PROPFIND / HTTP/1.1", false, false},
		{"", false, false},
	}
	for _, tc := range tests {
		if got := LooksLikeHTTP([]byte(tc.in)); got != tc.want {
			t.Errorf("LooksLikeHTTP(%q) = %v, want %v", tc.in, got, tc.want)
		}
		if got := couldBeHTTP([]byte(tc.in)); got != tc.pref {
			t.Errorf("couldBeHTTP(%q) = %v, want %v", tc.in, got, tc.pref)
		}
	}
}
