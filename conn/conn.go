// Package conn holds the record of one intercepted connection and the
// parsers that name its destination: original-destination lookup, the TLS
// ClientHello and HTTP/1.x request parsers, and the peek-and-replay sniffer.
//
// conn imports no other package of this project.
package conn

import (
	"net"
	"net/netip"
	"time"
)

// Proto is what classification found the client speaking.
type Proto uint8

const (
	// ProtoUnknown means classification has not run (or failed before it
	// could tell).
	ProtoUnknown Proto = iota
	// ProtoTLS is a TLS ClientHello.
	ProtoTLS
	// ProtoHTTP is an HTTP/1.x request.
	ProtoHTTP
	// ProtoOpaque is anything else, including a client that sent nothing
	// within the classification deadline (server-speaks-first protocols).
	ProtoOpaque
)

// String returns the name used in audit events and metric labels.
func (p Proto) String() string {
	switch p {
	case ProtoTLS:
		return "tls"
	case ProtoHTTP:
		return "http"
	case ProtoOpaque:
		return "opaque"
	default:
		return "unknown"
	}
}

// Front says how a connection reached the supervisor, which decides how a
// denial is answered.
type Front uint8

const (
	// FrontTransparent: redirected by the kernel; the client believes it
	// talks to the destination.
	FrontTransparent Front = iota
	// FrontHTTPProxy: the client asked an explicit HTTP proxy (CONNECT or
	// an absolute-form request).
	FrontHTTPProxy
	// FrontSOCKS5: the client asked an explicit SOCKS5 proxy.
	FrontSOCKS5
)

// Conn is one intercepted client connection on its way through the stages.
//
// Ownership: a stage worker owns a Conn while its stage function runs and
// hands it on by returning where it goes next; it must not touch it
// afterwards. Once relaying starts, the relay owns it: the goroutine of
// the client's direction writes BytesUp and (the request gate) the
// verdict; the goroutine of the server's direction writes only BytesDown,
// which the relay reads after that goroutine has ended; the relay
// registry may close or reset both sockets at shutdown but touches no
// field. The audit event is written once both directions have ended.
type Conn struct {
	ID       uint64
	Accepted time.Time

	// Client is the agent's side; Upstream is set by the dial stage.
	Client   *net.TCPConn
	Upstream *net.TCPConn

	// Src is the agent's address; Dst the original destination it asked for.
	Src netip.AddrPort
	Dst netip.AddrPort

	Front Front

	// Greeting is written to the client once the upstream is connected and
	// before relaying (the explicit proxy's "200 Connection established" or
	// SOCKS5 success reply); nil for transparent connections.
	Greeting []byte

	// Peeked holds every byte read from Client during classification. They
	// are written upstream before relaying starts.
	Peeked []byte

	// What classification found.
	Proto Proto
	SNI   string
	Host  string
	ALPN  []string
	// NamePort is the port named in an HTTP Host header or absolute-form
	// target (0 when none was given).
	NamePort uint16

	// Decision. Allowed false is deny: the zero value never lets a
	// connection through.
	Allowed   bool
	WouldDeny bool // dry run: the policy denied, the connection went through
	// Local: the destination is this host's own; the decision was made by
	// the listener's owner, not the policy (stages/local.go).
	Local  bool
	Reason string
	Rule   string

	BytesUp   int64
	BytesDown int64

	// Owner is the agent process that opened the connection, set by the
	// decide stage when process identity is on; nil otherwise.
	Owner *Owner

	// Stamps records when each stage finished, for latency histograms.
	Stamps Stamps
}

// Owner is the identity of the process behind a connection, as audited.
type Owner struct {
	PID     int
	Exe     string
	Unknown string // why the owner could not be identified; "" when it was
}

// Name is the destination name the client claimed: SNI for TLS, the HTTP
// Host (or absolute-form target) for HTTP, empty otherwise.
func (c *Conn) Name() string {
	if c.SNI != "" {
		return c.SNI
	}
	return c.Host
}

// Stamps are monotonic times at which a Conn left each stage.
type Stamps struct {
	OrigDst  time.Time
	Classify time.Time
	Policy   time.Time
	Dial     time.Time
	Done     time.Time
}
