package conn

import (
	"errors"
	"fmt"
)

// Sentinel errors of the parsers and the sniffer. Callers test them with
// errors.Is; the returned errors wrap them with what exactly was wrong.
var (
	// ErrNeedMore means the bytes seen so far are a valid prefix but do not
	// yet hold a complete ClientHello or HTTP header block.
	ErrNeedMore = errors.New("need more bytes")
	// ErrMalformedClientHello means the bytes cannot be a valid TLS
	// ClientHello (or carry a server name that must never reach policy).
	ErrMalformedClientHello = errors.New("malformed TLS ClientHello")
	// ErrMalformedHTTP means the bytes cannot be a valid HTTP/1.x request
	// head, or the head names its destination ambiguously.
	ErrMalformedHTTP = errors.New("malformed HTTP request")
	// ErrHostMismatch means an absolute-form or CONNECT target and the Host
	// header name different authorities: servers disagree on which one
	// wins (Python's and Node's serve the Host), so neither may be trusted.
	// It wraps ErrMalformedHTTP.
	ErrHostMismatch = fmt.Errorf("%w: request-target and Host name different hosts", ErrMalformedHTTP)
	// ErrUpgradeNotWebSocket means a request asks to switch to a protocol
	// other than WebSocket (h2c, TLS): its frames could name any host.
	ErrUpgradeNotWebSocket = errors.New("upgrade to a protocol other than WebSocket")
	// ErrBodyOnBodilessMethod means a request whose method defines no body
	// semantics (GET, HEAD, OPTIONS, DELETE, TRACE) carries one: a server
	// that ignores such bodies reads it as the next request (CL.0).
	ErrBodyOnBodilessMethod = errors.New("body on a method without body semantics")
	// ErrHeaderTooLarge means the HTTP request line and headers exceed
	// MaxHTTPHeader.
	ErrHeaderTooLarge = errors.New("HTTP request header too large")
	// ErrClassifyTimeout means the read deadline passed while the client had
	// sent only part of a TLS ClientHello or HTTP request head.
	ErrClassifyTimeout = errors.New("classification timed out on a partial request")
	// ErrClientClosed means the client closed its side before
	// classification could finish.
	ErrClientClosed = errors.New("client closed before classification")
)

// Errors of the request gate (HTTPGate) beyond the parser's.
var (
	// ErrHostSwitch means a request on a kept-alive connection named
	// another host (or port) than the one the policy allowed.
	ErrHostSwitch = errors.New("request for another host on the connection")
	// ErrTruncated means the stream ended in the middle of a message.
	ErrTruncated = errors.New("http gate: stream ended in the middle of a message")
)
