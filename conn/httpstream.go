package conn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

const (
	// maxChunkLine bounds a chunk-size line with its extensions. Chunk
	// extensions are practically unused; Node.js caps them at 16 KiB per
	// message and nginx at its 1 KiB line buffer, so 4 KiB never cuts off a
	// real client yet a line is never buffered beyond the gate's buffer.
	maxChunkLine = 4 << 10
	// maxChunkSizeDigits keeps a chunk size below 2^60: never an overflow.
	maxChunkSizeDigits = 15
)

var (
	// errTruncated: the stream ended in the middle of a message.
	errTruncated = ErrTruncated
	// errBadChunking: chunked framing that strict and lenient parsers
	// would read differently.
	errBadChunking = errors.New("http gate: malformed chunked framing")
)

// httpStream is one direction of a cleartext HTTP/1.x connection read
// through buf: messages are parsed where they start and bodies forwarded
// in large reads, so memory stays bounded by len(buf). The request gate
// (client → server) and the answer tracker (server → client) share it.
type httpStream struct {
	src io.Reader
	dst io.Writer
	buf []byte // len(buf) > MaxHTTPHeader

	r, w int   // unconsumed bytes are buf[r:w]
	rerr error // read error held back until buf is drained

	forwarded int64

	// direct, when set, moves up to n body bytes from the source socket
	// to the destination without passing through buf (splice(2)); it is
	// used for large Content-Length bodies once buf is drained.
	direct func(n int64) (int64, error)
}

// directBodyMin is the body remainder from which direct is worth a pipe:
// below it one buffered read is cheaper than the splice round trips.
const directBodyMin = 64 << 10

// pending returns the bytes read but not yet forwarded.
func (s *httpStream) pending() []byte { return s.buf[s.r:s.w] }

// fill reads more bytes into buf, moving the unconsumed ones to its front
// when the end is reached.
func (s *httpStream) fill() error {
	if s.rerr != nil {
		return s.rerr
	}
	if s.r == s.w {
		s.r, s.w = 0, 0
	} else if s.w == len(s.buf) {
		s.w = copy(s.buf, s.buf[s.r:s.w])
		s.r = 0
	}
	if s.w == len(s.buf) {
		return fmt.Errorf("http gate: %w: buffer full", ErrHeaderTooLarge)
	}
	n, err := s.src.Read(s.buf[s.w:])
	s.w += n
	if err != nil {
		if n > 0 {
			s.rerr = err
			return nil
		}
		return err
	}
	return nil
}

// fillOrTruncated is fill inside a message: EOF there is errTruncated.
func (s *httpStream) fillOrTruncated() error {
	err := s.fill()
	if errors.Is(err, io.EOF) {
		return errTruncated
	}
	return err
}

// forward writes the next n unconsumed bytes on.
func (s *httpStream) forward(n int) error {
	if n == 0 {
		return nil
	}
	k, err := s.dst.Write(s.buf[s.r : s.r+n])
	s.forwarded += int64(k)
	s.r += k
	if err != nil {
		return fmt.Errorf("http gate: write: %w", err)
	}
	return nil
}

// nextHead waits for a complete message head and returns what parse made
// of it; parse is ParseHTTPRequest or ParseHTTPResponse. At a
// clean end of stream (nothing but line endings left, which are
// forwarded: clients may send a CRLF after a body, RFC 9112 §2.2) it
// returns io.EOF; a stream cut inside a head is errTruncated.
func nextHead[T any](s *httpStream, parse func([]byte) (T, error)) (T, error) {
	var zero T
	grew := true
	for {
		pending := s.pending()
		// A head can only complete, or a line fail, once a new LF arrived
		// or the size limit was crossed; reparsing on every read would let
		// a peer trickling bytes cost O(n²).
		if len(pending) > 0 && grew {
			m, err := parse(pending)
			if !errors.Is(err, ErrNeedMore) {
				return m, err
			}
		}
		before := s.w - s.r
		if err := s.fill(); err != nil {
			if !errors.Is(err, io.EOF) {
				return zero, err
			}
			if len(bytes.Trim(s.pending(), "\r\n")) > 0 {
				return zero, errTruncated
			}
			if err := s.forward(s.w - s.r); err != nil {
				return zero, err
			}
			return zero, io.EOF
		}
		fresh := s.buf[s.r+before : s.w]
		grew = bytes.IndexByte(fresh, '\n') >= 0 || s.w-s.r > MaxHTTPHeader
	}
}

// body forwards a message body framed by chunked or length.
func (s *httpStream) body(chunked bool, length int64) error {
	if chunked {
		return s.chunkedBody()
	}
	return s.fixedBody(length)
}

// fixedBody forwards exactly n body bytes.
func (s *httpStream) fixedBody(n int64) error {
	for n > 0 {
		if s.r == s.w && s.direct != nil && s.rerr == nil && n >= directBodyMin {
			k, err := s.direct(n)
			s.forwarded += k
			n -= k
			switch {
			case err != nil:
				return err
			case k == 0:
				return errTruncated
			}
			continue
		}
		if s.r == s.w {
			if err := s.fillOrTruncated(); err != nil {
				return err
			}
		}
		k := int(min(int64(s.w-s.r), n))
		if err := s.forward(k); err != nil {
			return err
		}
		n -= int64(k)
	}
	return nil
}

// line returns the length of the CRLF-terminated line at buf[r:], CRLF
// included, reading more as needed; ok is false when no line ends within
// limit bytes or a bare LF ends it. Chunked framing is parsed strictly:
// a bare LF is where lenient and strict parsers disagree on boundaries.
func (s *httpStream) line(limit int) (n int, ok bool, err error) {
	scanned := 0
	for {
		if i := bytes.IndexByte(s.buf[s.r+scanned:s.w], '\n'); i >= 0 {
			end := scanned + i + 1
			if end > limit || end < 2 || s.buf[s.r+end-2] != '\r' {
				return 0, false, nil
			}
			return end, true, nil
		}
		scanned = s.w - s.r
		if scanned >= limit {
			return 0, false, nil
		}
		if err := s.fillOrTruncated(); err != nil {
			return 0, false, err
		}
	}
}

// chunkedBody forwards a chunked body (RFC 9112 §7.1): size lines with
// optional extensions, data, and trailer fields after the last chunk.
func (s *httpStream) chunkedBody() error {
	for {
		n, ok, err := s.line(maxChunkLine)
		if err != nil {
			return err
		}
		if !ok {
			return errBadChunking
		}
		size, ok := parseChunkSize(s.buf[s.r : s.r+n-2])
		if !ok {
			return errBadChunking
		}
		if err := s.forward(n); err != nil {
			return err
		}
		if size == 0 {
			return s.trailers()
		}
		if err := s.fixedBody(size); err != nil {
			return err
		}
		for s.w-s.r < 2 {
			if err := s.fillOrTruncated(); err != nil {
				return err
			}
		}
		if s.buf[s.r] != '\r' || s.buf[s.r+1] != '\n' {
			return errBadChunking
		}
		if err := s.forward(2); err != nil {
			return err
		}
	}
}

// parseChunkSize parses "1*HEXDIG [ ; extensions ]". Extensions are passed
// on unread but must be visible ASCII, space or tab.
func parseChunkSize(line []byte) (int64, bool) {
	digits, ext, hasExt := bytes.Cut(line, []byte{';'})
	if len(digits) == 0 || len(digits) > maxChunkSizeDigits {
		return 0, false
	}
	var n int64
	for _, ch := range digits {
		var d byte
		switch {
		case '0' <= ch && ch <= '9':
			d = ch - '0'
		case 'a' <= ch && ch <= 'f':
			d = ch - 'a' + 10
		case 'A' <= ch && ch <= 'F':
			d = ch - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	if hasExt {
		for _, ch := range ext {
			if ch < ' ' && ch != '\t' || ch == 0x7f {
				return 0, false
			}
		}
	}
	return n, true
}

// trailers forwards the trailer section after the last chunk, up to and
// including the empty line, within MaxHTTPHeader bytes in all.
func (s *httpStream) trailers() error {
	budget := MaxHTTPHeader
	for {
		n, ok, err := s.line(min(budget, len(s.buf)))
		if err != nil {
			return err
		}
		if !ok {
			return errBadChunking
		}
		field := s.buf[s.r : s.r+n-2]
		if len(field) > 0 && !validTrailer(field) {
			return errBadChunking
		}
		if err := s.forward(n); err != nil {
			return err
		}
		if len(field) == 0 {
			return nil
		}
		budget -= n
	}
}

// validTrailer accepts "token: value" without control bytes (no folding).
func validTrailer(field []byte) bool {
	name, value, ok := bytes.Cut(field, []byte{':'})
	if !ok || !isToken(name) {
		return false
	}
	for _, ch := range value {
		if ch < ' ' && ch != '\t' || ch == 0x7f {
			return false
		}
	}
	return true
}
