package conn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxEmptyReads is how many (0, nil) reads in a row Sniff tolerates before
// giving up, as bufio does: a reader that never progresses must not spin.
const maxEmptyReads = 100

// Sniffed is what Sniff found the client speaking and the name it claimed.
type Sniffed struct {
	Proto Proto
	// SNI is the TLS server name as sent ("" when none). SNIIsIP marks an
	// IP literal, which names nothing and must not match domain rules.
	SNI     string
	SNIIsIP bool
	// Host and Port come from an HTTP request (see HTTPRequest).
	Host string
	Port uint16
	// ALPN lists the protocols a TLS client offered, in its order (nil
	// when none). A list, not a joined string: a protocol name may hold
	// any byte, a comma too.
	ALPN []string
}

// Sniff reads from r into buf until it can classify the stream, and
// returns how many bytes it read into buf. Every one of buf[:n] must be
// replayed upstream; nothing past them was consumed. r should carry a read
// deadline set by the caller; len(buf) is normally MaxPeek.
//
//   - First bytes that cannot start a TLS handshake record or a known
//     HTTP/1.x method: ProtoOpaque at once, without waiting for more.
//   - A complete ClientHello: ProtoTLS with SNI (possibly "") and ALPN.
//   - A complete HTTP/1.x request head: ProtoHTTP with Host and Port (of
//     the target when target and Host header disagree; see classify).
//   - Deadline before any byte: ProtoOpaque, nil (server-speaks-first).
//   - Deadline after part of a TLS or HTTP prefix: ErrClassifyTimeout.
//   - EOF before classification: ErrClientClosed.
//   - Malformed input: the parser's error (ErrMalformedClientHello,
//     ErrMalformedHTTP, ErrHeaderTooLarge); a hostile SNI is still
//     reported in s.SNI for the audit log.
//   - A ClientHello or head that does not fit in buf: the parser's
//     malformed / too-large error.
func Sniff(r io.Reader, buf []byte) (s Sniffed, n int, err error) {
	var c classifier
	empty := 0
	for {
		if n == len(buf) {
			return s, n, bufferFull(buf[:n])
		}
		k, rerr := r.Read(buf[n:])
		if k < 0 || k > len(buf)-n {
			return s, n, fmt.Errorf("sniff: reader returned invalid count %d", k)
		}
		n += k
		if k > 0 {
			empty = 0
			done, cerr := c.classify(&s, buf[:n], k)
			if done || cerr != nil {
				return s, n, cerr
			}
		}
		if rerr != nil {
			return endOfInput(s, n, rerr)
		}
		if k == 0 {
			if empty++; empty >= maxEmptyReads {
				return s, n, fmt.Errorf("sniff: %w", io.ErrNoProgress)
			}
		}
	}
}

// classifier decides when the bytes read so far are worth parsing. The
// parsers start from the first byte each time, so calling them after every
// read would cost O(n²) against a client that trickles one byte at a time;
// instead they run only when a parse can finish or fail. Because a prefix
// of a valid stream only ever parses to ErrNeedMore, skipping attempts
// never changes the outcome, only saves work.
type classifier struct {
	tls       helloProgress
	httpLines bool // the request line was complete and valid
}

// classify judges b, of which the last k bytes are new. It reports done
// once s holds a classification, or an error; (false, nil) means read
// more.
func (c *classifier) classify(s *Sniffed, b []byte, k int) (done bool, err error) {
	switch {
	case LooksLikeTLS(b):
		if !c.tls.worthParsing(b) {
			return false, nil
		}
		ch, err := ParseClientHello(b)
		if errors.Is(err, ErrNeedMore) {
			return false, nil
		}
		s.Proto, s.SNI, s.SNIIsIP, s.ALPN = ProtoTLS, ch.ServerName, ch.ServerNameIsIP, ch.ALPN
		return true, err
	case couldBeHTTP(b):
		if !LooksLikeHTTP(b) || !c.httpWorthParsing(b, k) {
			return false, nil // e.g. "GE": wait for the rest of the method
		}
		req, err := ParseHTTPRequest(b)
		if errors.Is(err, ErrNeedMore) {
			c.httpLines = true
			return false, nil
		}
		s.Proto = ProtoHTTP
		if err == nil || errors.Is(err, ErrHostMismatch) {
			// A target and a Host that disagree: the target names the
			// destination the policy judges; the request gate, which
			// judges every head before forwarding it, refuses the
			// mismatch itself.
			s.Host, s.Port = req.Host, req.Port
			return true, nil
		}
		return true, err
	default:
		s.Proto = ProtoOpaque
		return true, nil
	}
}

// httpWorthParsing reports whether the k new bytes at the end of b may let
// ParseHTTPRequest finish: they complete the request line (judged at once,
// so garbage is refused early), end the head with a blank line, or pass
// the size limit.
func (c *classifier) httpWorthParsing(b []byte, k int) bool {
	if len(b) > MaxHTTPHeader {
		return true
	}
	fresh := b[len(b)-k:]
	if !c.httpLines {
		return bytes.IndexByte(fresh, '\n') >= 0
	}
	// A blank line is "\n\n" or "\n\r\n"; look back 2 bytes for its start.
	tail := b[max(0, len(b)-k-2):]
	return bytes.Contains(tail, []byte("\n\n")) || bytes.Contains(tail, []byte("\n\r\n"))
}

// bufferFull is the error for a TLS or HTTP prefix that filled buf
// without completing.
func bufferFull(b []byte) error {
	if LooksLikeTLS(b) {
		return fmt.Errorf("%w: ClientHello does not fit the %d-byte peek buffer", ErrMalformedClientHello, len(b))
	}
	return fmt.Errorf("%w: request head does not fit the %d-byte peek buffer", ErrHeaderTooLarge, len(b))
}

// endOfInput maps a read error that came before classification finished.
func endOfInput(s Sniffed, n int, rerr error) (Sniffed, int, error) {
	var te interface{ Timeout() bool }
	timeout := errors.Is(rerr, os.ErrDeadlineExceeded) || errors.As(rerr, &te) && te.Timeout()
	switch {
	case timeout && n == 0:
		return Sniffed{Proto: ProtoOpaque}, 0, nil
	case timeout:
		return s, n, fmt.Errorf("%w after %d bytes", ErrClassifyTimeout, n)
	case errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF):
		return s, n, fmt.Errorf("%w after %d bytes", ErrClientClosed, n)
	default:
		return s, n, fmt.Errorf("sniff: read after %d bytes: %w", n, rerr)
	}
}
