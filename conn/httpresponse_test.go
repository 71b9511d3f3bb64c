package conn

import (
	"errors"
	"strings"
	"testing"
)

func TestParseHTTPResponse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want HTTPResponse // HeaderLen is len(in)
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", HTTPResponse{Status: 200, ContentLength: 5, HasLength: true}},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTPResponse{Status: 200, Chunked: true}},
		{"switch", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", HTTPResponse{Status: 101}},
		{"no reason phrase", "HTTP/1.1 204\r\n\r\n", HTTPResponse{Status: 204}},
		{"HTTP/1.0 to the close", "HTTP/1.0 200 OK\r\nServer: x\r\n\r\n", HTTPResponse{Status: 200}},
		{"interim", "HTTP/1.1 100 Continue\r\n\r\n", HTTPResponse{Status: 100}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHTTPResponse([]byte(tc.in + "body"))
			tc.want.HeaderLen = len(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
			for k := 0; k < len(tc.in); k++ {
				if _, err := ParseHTTPResponse([]byte(tc.in[:k])); !errors.Is(err, ErrNeedMore) {
					t.Fatalf("prefix %q: err = %v, want ErrNeedMore", tc.in[:k], err)
				}
			}
		})
	}
	if r, _ := ParseHTTPResponse([]byte("HTTP/1.1 103 Early Hints\r\n\r\n")); !r.Interim() {
		t.Error("103 is not interim")
	}
	if r, _ := ParseHTTPResponse([]byte("HTTP/1.1 101 Switching\r\n\r\n")); r.Interim() {
		t.Error("101 is interim")
	}
}

func TestParseHTTPResponseErrors(t *testing.T) {
	for _, in := range []string{
		"HTTP/2 200\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 099 Low\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"ICY 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 200 OK\r\n folded\r\n\r\n",
	} {
		if _, err := ParseHTTPResponse([]byte(in)); !errors.Is(err, ErrMalformedHTTP) {
			t.Errorf("%q: err = %v, want ErrMalformedHTTP", in, err)
		}
	}
}

// TestHTTPRequestFraming: the framing facts and FramingErr of a head,
// read once by ParseHTTPRequest.
func TestHTTPRequestFraming(t *testing.T) {
	tests := []struct {
		head    string
		length  int64
		chunked bool
		upgrade string
		err     error // nil, ErrMalformedHTTP, ErrUpgradeNotWebSocket, ErrBodyOnBodilessMethod
	}{
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n", 12, false, "", nil},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", 3, false, "", nil},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0, true, "", nil},
		{"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 0, false, "websocket", nil},
		{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 0, false, "", nil},
		{"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n", 0, false, "h2c", ErrUpgradeNotWebSocket},
		{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n", 0, false, "", ErrBodyOnBodilessMethod},
		{"HEAD / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 0, true, "", ErrBodyOnBodilessMethod},
		{"DELETE / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n", 0, false, "", ErrBodyOnBodilessMethod},
		{"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\nContent-Length: 4\r\n\r\n", 0, false, "", ErrMalformedHTTP},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 0, false, "", ErrMalformedHTTP},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 0, false, "", ErrMalformedHTTP},
		{"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 0, false, "", ErrMalformedHTTP},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 0, false, "", ErrMalformedHTTP},
	}
	for _, tc := range tests {
		req, err := ParseHTTPRequest([]byte(tc.head))
		if err != nil {
			t.Fatalf("%q: %v", tc.head, err)
		}
		if tc.err == nil && req.FramingErr != nil || tc.err != nil && !errors.Is(req.FramingErr, tc.err) {
			t.Errorf("%q: FramingErr = %v, want %v", tc.head, req.FramingErr, tc.err)
		}
		if tc.err == nil && (req.ContentLength != tc.length || req.Chunked != tc.chunked) {
			t.Errorf("%q: length %d chunked %v", tc.head, req.ContentLength, req.Chunked)
		}
		if req.Upgrade != tc.upgrade {
			t.Errorf("%q: upgrade %q, want %q", tc.head, req.Upgrade, tc.upgrade)
		}
		if strings.HasPrefix(tc.head, "CONNECT") != (req.Switches() && req.Upgrade == "") {
			t.Errorf("%q: Switches %v", tc.head, req.Switches())
		}
	}
}
