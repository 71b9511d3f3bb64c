package conn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// SOCKS5 (RFC 1928) as the explicit proxy speaks it: no authentication,
// CONNECT only. The parsers work on the prefix of the client's stream read
// so far: ErrNeedMore until a message is complete, then the message and how
// many bytes it took. They never read past a message, so bytes a client
// pipelines after it (an optimistic request, or the first application
// bytes) stay with the caller.
const (
	SOCKS5Version = 5

	// Authentication methods (RFC 1928 §3).
	SOCKS5MethodNoAuth       = 0x00
	SOCKS5MethodNoAcceptable = 0xFF

	// Commands (§4).
	SOCKS5CmdConnect      = 0x01
	SOCKS5CmdBind         = 0x02
	SOCKS5CmdUDPAssociate = 0x03

	// Address types (§5).
	SOCKS5AddrIPv4   = 0x01
	SOCKS5AddrDomain = 0x03
	SOCKS5AddrIPv6   = 0x04

	// MaxSOCKS5Greeting is the largest greeting: VER, NMETHODS and at most
	// 255 methods. The format bounds it; a parser never needs more.
	MaxSOCKS5Greeting = 2 + 255
	// MaxSOCKS5Request is the largest CONNECT request: VER CMD RSV ATYP,
	// a domain name of at most 255 bytes with its length byte, and PORT.
	MaxSOCKS5Request = 4 + 1 + 255 + 2
)

// SOCKS5Reply is a reply code (RFC 1928 §6).
type SOCKS5Reply byte

const (
	SOCKS5Succeeded           SOCKS5Reply = 0x00
	SOCKS5GeneralFailure      SOCKS5Reply = 0x01
	SOCKS5NotAllowed          SOCKS5Reply = 0x02 // connection not allowed by ruleset
	SOCKS5NetworkUnreachable  SOCKS5Reply = 0x03
	SOCKS5HostUnreachable     SOCKS5Reply = 0x04
	SOCKS5ConnectionRefused   SOCKS5Reply = 0x05
	SOCKS5TTLExpired          SOCKS5Reply = 0x06
	SOCKS5CommandNotSupported SOCKS5Reply = 0x07
	SOCKS5AddrNotSupported    SOCKS5Reply = 0x08
)

// SOCKS5 errors. Each says how the client is to be answered: see
// SOCKS5ReplyFor.
var (
	// ErrMalformedSOCKS5 means the bytes cannot be a SOCKS5 greeting or
	// request, or name a destination that must never reach policy.
	ErrMalformedSOCKS5 = errors.New("malformed SOCKS5 message")
	// ErrSOCKS5NoAcceptableMethod means the client offered no method we
	// accept (we accept only "no authentication").
	ErrSOCKS5NoAcceptableMethod = errors.New("SOCKS5 client offers no acceptable authentication method")
	// ErrSOCKS5Command means a well-formed request for a command other than
	// CONNECT (BIND, UDP ASSOCIATE, or an unknown one).
	ErrSOCKS5Command = errors.New("SOCKS5 command not supported")
	// ErrSOCKS5AddrType means a request with an unknown address type.
	ErrSOCKS5AddrType = errors.New("SOCKS5 address type not supported")
)

// SOCKS5Request is a parsed CONNECT request. Exactly one of Name and Addr
// is set: Name for ATYP DOMAINNAME (validated, as the client sent it), Addr
// for ATYP IPv4 or IPv6.
type SOCKS5Request struct {
	Name string
	Addr netip.Addr
	Port uint16
}

// ParseSOCKS5Greeting parses the method-selection message at the start of
// b and returns its length. It succeeds only when the client offers "no
// authentication"; ErrSOCKS5NoAcceptableMethod otherwise.
func ParseSOCKS5Greeting(b []byte) (int, error) {
	if len(b) > 0 && b[0] != SOCKS5Version {
		return 0, fmt.Errorf("%w: greeting version %d, want 5", ErrMalformedSOCKS5, b[0])
	}
	if len(b) < 2 {
		return 0, fmt.Errorf("greeting header: %w", ErrNeedMore)
	}
	n := int(b[1])
	if n == 0 {
		// RFC 1928 §3: NMETHODS is 1 to 255.
		return 0, fmt.Errorf("%w: greeting offers no methods", ErrMalformedSOCKS5)
	}
	if len(b) < 2+n {
		return 0, fmt.Errorf("greeting methods: %w", ErrNeedMore)
	}
	for _, m := range b[2 : 2+n] {
		if m == SOCKS5MethodNoAuth {
			return 2 + n, nil
		}
	}
	return 0, fmt.Errorf("%w: offered %x", ErrSOCKS5NoAcceptableMethod, b[2:2+n])
}

// ParseSOCKS5Request parses the request at the start of b (the bytes after
// the greeting) and returns it with its length. Errors are decided from the
// bytes present only, so a prefix of a valid request yields ErrNeedMore and
// nothing else.
func ParseSOCKS5Request(b []byte) (SOCKS5Request, int, error) {
	var r SOCKS5Request
	if len(b) > 0 && b[0] != SOCKS5Version {
		return r, 0, fmt.Errorf("%w: request version %d, want 5", ErrMalformedSOCKS5, b[0])
	}
	if len(b) > 2 && b[2] != 0 {
		return r, 0, fmt.Errorf("%w: reserved byte is %#x, want 0", ErrMalformedSOCKS5, b[2])
	}
	if len(b) < 4 {
		return r, 0, fmt.Errorf("request header: %w", ErrNeedMore)
	}
	cmd, atyp := b[1], b[3]
	// The address is parsed before the command is judged, so that a BIND
	// or UDP ASSOCIATE is refused only once the whole request is in and the
	// client is certain to be waiting for the reply.
	var end int
	switch atyp {
	case SOCKS5AddrIPv4:
		end = 4 + 4 + 2
		if len(b) >= end {
			r.Addr = netip.AddrFrom4([4]byte(b[4:8]))
		}
	case SOCKS5AddrIPv6:
		end = 4 + 16 + 2
		if len(b) >= end {
			r.Addr = netip.AddrFrom16([16]byte(b[4:20]))
		}
	case SOCKS5AddrDomain:
		if len(b) < 5 {
			return r, 0, fmt.Errorf("request name length: %w", ErrNeedMore)
		}
		n := int(b[4])
		if n == 0 {
			return r, 0, fmt.Errorf("%w: empty domain name", ErrMalformedSOCKS5)
		}
		if err := checkSOCKS5Name(b[5:min(len(b), 5+n)]); err != nil {
			return r, 0, err
		}
		end = 5 + n + 2
		if len(b) >= end {
			r.Name = string(b[5 : 5+n])
		}
	default:
		return r, 0, fmt.Errorf("%w: %d", ErrSOCKS5AddrType, atyp)
	}
	if len(b) < end {
		return r, 0, fmt.Errorf("request address: %w", ErrNeedMore)
	}
	r.Port = binary.BigEndian.Uint16(b[end-2 : end])
	if cmd != SOCKS5CmdConnect {
		return SOCKS5Request{}, 0, fmt.Errorf("%w: command %d", ErrSOCKS5Command, cmd)
	}
	if r.Port == 0 {
		return SOCKS5Request{}, 0, fmt.Errorf("%w: destination port 0", ErrMalformedSOCKS5)
	}
	return r, end, nil
}

// checkSOCKS5Name rejects (a prefix of) a domain name holding anything but
// printable ASCII: control bytes, spaces, DEL and raw UTF-8 have no place in
// a hostname (IDNs travel as punycode) and must not reach logs or policy.
func checkSOCKS5Name(name []byte) error {
	for i, c := range name {
		if c < 0x21 || c > 0x7e {
			return fmt.Errorf("%w: domain name byte %d is %#x", ErrMalformedSOCKS5, i, c)
		}
	}
	return nil
}

// SOCKS5MethodReply is the server's method selection: SOCKS5MethodNoAuth,
// or SOCKS5MethodNoAcceptable after which the client must close.
func SOCKS5MethodReply(method byte) []byte {
	return []byte{SOCKS5Version, method}
}

// SOCKS5ReplyMessage is the reply to a request: the code and the bound
// address (the zero AddrPort is sent as 0.0.0.0:0, which RFC 1928 allows a
// server to use when the address is of no use to the client).
func SOCKS5ReplyMessage(code SOCKS5Reply, bound netip.AddrPort) []byte {
	ip := bound.Addr().Unmap()
	msg := []byte{SOCKS5Version, byte(code), 0}
	switch {
	case ip.Is6():
		a := ip.As16()
		msg = append(append(msg, SOCKS5AddrIPv6), a[:]...)
	case ip.Is4():
		a := ip.As4()
		msg = append(append(msg, SOCKS5AddrIPv4), a[:]...)
	default:
		msg = append(msg, SOCKS5AddrIPv4, 0, 0, 0, 0)
	}
	return binary.BigEndian.AppendUint16(msg, bound.Port())
}

// SOCKS5ReplyFor is the reply code that answers a parse error of
// ParseSOCKS5Request.
func SOCKS5ReplyFor(err error) SOCKS5Reply {
	switch {
	case errors.Is(err, ErrSOCKS5Command):
		return SOCKS5CommandNotSupported
	case errors.Is(err, ErrSOCKS5AddrType):
		return SOCKS5AddrNotSupported
	default:
		return SOCKS5GeneralFailure
	}
}
