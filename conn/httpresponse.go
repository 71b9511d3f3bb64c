package conn

import (
	"fmt"
	"strings"
)

// HTTPResponse is what the request gate needs from an HTTP/1.x response
// head: whether the server switched protocols, and how the body is
// framed, so the next response can be found.
type HTTPResponse struct {
	Status int
	// ContentLength is the body length a Content-Length header gives;
	// HasLength says there was one.
	ContentLength int64
	HasLength     bool
	// Chunked says Transfer-Encoding ends in chunked.
	Chunked bool
	// HeaderLen is the length of the response head, blank line included.
	HeaderLen int
}

// Interim reports a 1xx answer other than 101: another head follows for
// the same request.
func (r HTTPResponse) Interim() bool { return r.Status >= 100 && r.Status < 200 && r.Status != 101 }

// ParseHTTPResponse parses the HTTP/1.x response head at the start of b
// (RFC 9112 §4). Like ParseHTTPRequest it returns ErrNeedMore until the
// blank line, ErrHeaderTooLarge past MaxHTTPHeader, and an error wrapping
// ErrMalformedHTTP for anything else it cannot read — including framing
// it cannot follow (Content-Length and Transfer-Encoding together,
// conflicting lengths). A caller that cannot follow the responses must
// stop trusting where the next one starts.
func ParseHTTPResponse(b []byte) (HTTPResponse, error) {
	var resp HTTPResponse
	line, pos, err := nextHTTPLine(b, 0)
	if err != nil {
		return resp, err
	}
	if resp.Status, err = parseStatusLine(line); err != nil {
		return resp, err
	}
	var f framingFields
	for {
		line, pos, err = nextHTTPLine(b, pos)
		if err != nil {
			return resp, err
		}
		if len(line) == 0 {
			break
		}
		name, value, err := splitHeaderField(line)
		if err != nil {
			return resp, err
		}
		f.add(name, value)
	}
	resp.HeaderLen = pos
	switch {
	case f.badCL:
		return resp, malformedHTTP("response with invalid or conflicting Content-Length")
	case len(f.te) > 0 && (f.haveCL || !chunkedLast(f.te)):
		return resp, malformedHTTP("response with ambiguous Transfer-Encoding %q", strings.Join(f.te, ","))
	case len(f.te) > 0:
		resp.Chunked = true
	case f.haveCL:
		resp.ContentLength, resp.HasLength = f.cl, true
	}
	return resp, nil
}

// parseStatusLine reads "HTTP/1.x SP 3DIGIT [SP reason]".
func parseStatusLine(line []byte) (int, error) {
	version, rest, ok := strings.Cut(string(line), " ")
	if !ok || version != "HTTP/1.1" && version != "HTTP/1.0" {
		return 0, malformedHTTP("status line %q", clipLine(line))
	}
	code, _, _ := strings.Cut(rest, " ")
	if len(code) != 3 {
		return 0, malformedHTTP("status code %q", code)
	}
	n := 0
	for i := 0; i < 3; i++ {
		if code[i] < '0' || code[i] > '9' {
			return 0, malformedHTTP("status code %q", code)
		}
		n = n*10 + int(code[i]-'0')
	}
	if n < 100 {
		return 0, malformedHTTP("status code %d", n)
	}
	return n, nil
}

func clipLine(b []byte) string {
	if len(b) > 40 {
		return fmt.Sprintf("%s...", b[:40])
	}
	return string(b)
}
