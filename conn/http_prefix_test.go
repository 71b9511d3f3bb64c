package conn

import (
	"bytes"
	"testing"
)

// TestEmptyLinesBeforeRequest: servers read a request after a few empty
// lines (RFC 9112 §2.2), so the classifier must too — "\r\nGET" hiding
// behind an opaque verdict was an escape to another virtual host.
func TestEmptyLinesBeforeRequest(t *testing.T) {
	const head = "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n"
	for _, prefix := range []string{"\r\n", "\n", "\r\n\r\n", "\n\r\n\n\r\n"} {
		in := []byte(prefix + head)
		if !LooksLikeHTTP(in) {
			t.Errorf("%q: not recognised as HTTP", prefix)
		}
		req, err := ParseHTTPRequest(in)
		if err != nil || req.Host != "evil.test" || req.HeaderLen != len(in) {
			t.Errorf("%q: ParseHTTPRequest = %+v, %v", prefix, req, err)
		}
		s, n, err := Sniff(bytes.NewReader(in), make([]byte, MaxPeek))
		if err != nil || s.Proto != ProtoHTTP || s.Host != "evil.test" || n != len(in) {
			t.Errorf("%q: Sniff = %+v, %d, %v", prefix, s, n, err)
		}
	}
	// Past the limit it is not HTTP at all.
	if in := []byte("\r\n\r\n\r\n\r\n\r\n" + head); LooksLikeHTTP(in) {
		t.Errorf("five empty lines still taken for HTTP")
	}
	// A lone CR or only empty lines so far: wait for more.
	for _, p := range []string{"\r", "\r\n", "\r\n\r"} {
		if !couldBeHTTP([]byte(p)) {
			t.Errorf("%q: gave up on a request that may follow", p)
		}
	}
}
