package conn

import (
	"fmt"
	"strings"
)

// maxContentLengthDigits keeps a Content-Length below 10^18 < 2^63.
const maxContentLengthDigits = 18

// framingFields collects the headers that decide a request's body
// framing while ParseHTTPRequest reads the head, so the head is read once.
type framingFields struct {
	haveCL  bool
	badCL   bool
	cl      int64
	te      []string // lowercased codings, in order
	upgrade []string // protocols asked for, as sent
}

// add notes one header field (name and trimmed value, already validated).
func (f *framingFields) add(name, value []byte) {
	switch {
	case strings.EqualFold(string(name), "content-length"):
		for v := range strings.SplitSeq(string(value), ",") {
			n, ok := parseContentLength(strings.Trim(v, " \t"))
			if !ok || f.haveCL && n != f.cl {
				f.badCL = true
			}
			f.haveCL, f.cl = true, n
		}
	case strings.EqualFold(string(name), "transfer-encoding"):
		for v := range strings.SplitSeq(string(value), ",") {
			f.te = append(f.te, strings.ToLower(strings.Trim(v, " \t")))
		}
	case strings.EqualFold(string(name), "upgrade"):
		for v := range strings.SplitSeq(string(value), ",") {
			f.upgrade = append(f.upgrade, strings.Trim(v, " \t"))
		}
	}
}

// bodilessMethods define no semantics for a body (RFC 9110 §9.3): GET,
// HEAD, OPTIONS, DELETE and TRACE. A server may ignore the body of such a
// request and read it as the next request (CL.0 smuggling), so a body on
// them is refused rather than guessed at. CONNECT has its own rule.
func bodilessMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "OPTIONS", "DELETE", "TRACE":
		return true
	}
	return false
}

// apply sets req's framing facts and FramingErr, in the order RFC 9112
// §6 judges them.
func (f *framingFields) apply(req *HTTPRequest) {
	req.FramingErr = f.judge(req)
}

func (f *framingFields) judge(req *HTTPRequest) error {
	if len(f.upgrade) > 0 {
		req.Upgrade = f.upgrade[0]
	}
	if f.badCL {
		return malformedHTTP("invalid or conflicting Content-Length")
	}
	if len(f.te) > 0 {
		// RFC 9112 §6.1: TE and CL together, TE in HTTP/1.0 and a final
		// coding other than chunked all make the framing faulty.
		if f.haveCL || req.Version == "HTTP/1.0" || !chunkedLast(f.te) {
			return malformedHTTP("ambiguous Transfer-Encoding %q", strings.Join(f.te, ","))
		}
		req.Chunked = true
	} else if f.haveCL {
		req.ContentLength = f.cl
	}
	hasBody := req.Chunked || req.ContentLength != 0
	if req.Method == "CONNECT" && hasBody {
		// RFC 9110 §9.3.6: a CONNECT request has no content; a body would
		// be read differently by a server that tunnels at once.
		return malformedHTTP("CONNECT with a body")
	}
	if bodilessMethod(req.Method) && hasBody {
		return fmt.Errorf("%w: %s", ErrBodyOnBodilessMethod, req.Method)
	}
	// Any Upgrade header counts, with or without "Connection: upgrade":
	// a lenient server may switch on the Upgrade header alone.
	for _, p := range f.upgrade {
		name, _, _ := strings.Cut(p, "/")
		if !strings.EqualFold(name, "websocket") {
			return fmt.Errorf("%w: %q", ErrUpgradeNotWebSocket, p)
		}
	}
	return nil
}

// Switches reports whether the stream may change protocol after this
// request (a CONNECT, or an Upgrade the framing accepts): what follows is
// for the server's answer to decide.
func (r HTTPRequest) Switches() bool {
	return r.Method == "CONNECT" || r.Upgrade != ""
}

// chunkedLast reports whether a Transfer-Encoding list is well formed and
// ends in chunked, applied exactly once.
func chunkedLast(codings []string) bool {
	for i, c := range codings {
		if !isToken([]byte(c)) || c == "chunked" && i != len(codings)-1 {
			return false
		}
	}
	return codings[len(codings)-1] == "chunked"
}

// parseContentLength accepts 1*DIGIT below 10^18.
func parseContentLength(s string) (int64, bool) {
	if s == "" || len(s) > maxContentLengthDigits {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}
