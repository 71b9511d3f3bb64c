package conn

import (
	"fmt"
	"net/netip"
)

// TLS extension types read by ParseClientHello.
const (
	extServerName        = 0  // RFC 6066 §3
	extALPN              = 16 // RFC 7301 §3.1
	extSupportedVersions = 43 // RFC 8446 §4.2.1

	sniNameTypeHostName = 0
	// maxHostNameLen is the longest DNS name in presentation form (253
	// characters, 255 counting a trailing dot and slack for the root).
	maxHostNameLen = 255
)

// ClientHello is what classification needs from a TLS ClientHello.
type ClientHello struct {
	// ServerName is the SNI host_name exactly as sent (not lowercased, a
	// trailing dot kept). Empty when the client sent no server_name.
	ServerName string
	// ServerNameIsIP is set when ServerName is an IP literal, which RFC
	// 6066 §3 forbids: the name then proves nothing and policy must not
	// treat it as a domain.
	ServerNameIsIP bool
	// ALPN lists the protocols offered, in the client's order.
	ALPN []string
	// LegacyVersion is ClientHello.legacy_version (0x0303 for TLS 1.2+).
	LegacyVersion uint16
	// SupportedVersions is the supported_versions extension, if any.
	SupportedVersions []uint16
	// Len is the number of stream bytes, record headers included, that
	// carried the ClientHello.
	Len int
}

// ParseClientHello parses the TLS ClientHello at the start of b, the
// client's stream from its first byte. The handshake message may be split
// across several handshake records; records of any other content type
// before it is complete are rejected. It returns ErrNeedMore while b is a
// valid but incomplete prefix, and an error wrapping
// ErrMalformedClientHello with the reason otherwise.
//
// A server_name whose host_name is empty or holds anything but letters,
// digits, '-', '.' and '_' (control bytes, NUL, newline, space...) is
// malformed; ServerName is still filled in so that the denial can be
// logged. An IP-literal host_name is returned with ServerNameIsIP set.
func ParseClientHello(b []byte) (ClientHello, error) {
	msg, end, err := firstHandshakeMessage(b)
	if err != nil {
		return ClientHello{}, err
	}
	ch, err := parseClientHelloMessage(msg[handshakeHeaderLen:])
	ch.Len = end
	return ch, err
}

func malformedCH(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformedClientHello}, args...)...)
}

// parseClientHelloMessage parses the ClientHello body (RFC 8446 §4.1.2).
func parseClientHelloMessage(body []byte) (ClientHello, error) {
	var ch ClientHello
	c := cursor(body)
	var ok bool
	if ch.LegacyVersion, ok = c.u16(); !ok {
		return ch, malformedCH("truncated legacy_version")
	}
	if _, ok = c.bytes(32); !ok {
		return ch, malformedCH("truncated random")
	}
	sid, ok := c.vec8()
	if !ok || len(sid) > 32 {
		return ch, malformedCH("bad legacy_session_id")
	}
	suites, ok := c.vec16()
	if !ok || len(suites) < 2 || len(suites)%2 != 0 {
		return ch, malformedCH("bad cipher_suites")
	}
	comp, ok := c.vec8()
	if !ok || len(comp) < 1 {
		return ch, malformedCH("bad legacy_compression_methods")
	}
	if c.empty() {
		return ch, nil // a pre-TLS-1.2 hello without extensions: no SNI
	}
	exts, ok := c.vec16()
	if !ok {
		return ch, malformedCH("truncated extensions")
	}
	if !c.empty() {
		return ch, malformedCH("%d trailing bytes after extensions", len(c))
	}
	return ch, parseExtensions(&ch, cursor(exts))
}

func parseExtensions(ch *ClientHello, c cursor) error {
	// RFC 8446 §4.2: no two extensions of the same type. A bitset over
	// all 2^16 types keeps the check linear for hostile hellos with
	// thousands of extensions.
	var seen [1 << 16 / 64]uint64
	for !c.empty() {
		typ, ok := c.u16()
		if !ok {
			return malformedCH("truncated extension header")
		}
		data, ok := c.vec16()
		if !ok {
			return malformedCH("extension %d overruns the extensions block", typ)
		}
		if seen[typ/64]&(1<<(typ%64)) != 0 {
			return malformedCH("duplicate extension %d", typ)
		}
		seen[typ/64] |= 1 << (typ % 64)
		var err error
		switch typ {
		case extServerName:
			err = parseServerName(ch, cursor(data))
		case extALPN:
			err = parseALPN(ch, cursor(data))
		case extSupportedVersions:
			err = parseSupportedVersions(ch, cursor(data))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseServerName reads the server_name extension (RFC 6066 §3): a
// non-empty ServerNameList holding exactly one host_name.
func parseServerName(ch *ClientHello, c cursor) error {
	list, ok := c.vec16()
	if !ok || !c.empty() {
		return malformedCH("server_name: list length does not match the extension length")
	}
	if len(list) == 0 {
		return malformedCH("server_name: empty server_name_list")
	}
	l := cursor(list)
	found := false
	for !l.empty() {
		typ, ok := l.u8()
		if !ok {
			return malformedCH("server_name: truncated entry")
		}
		if typ != sniNameTypeHostName {
			return malformedCH("server_name: unknown name_type %d", typ)
		}
		name, ok := l.vec16()
		if !ok {
			return malformedCH("server_name: host_name overruns the list")
		}
		if found {
			return malformedCH("server_name: more than one host_name")
		}
		found = true
		ch.ServerName = string(name)
		if a, err := netip.ParseAddr(ch.ServerName); err == nil && a.Zone() == "" {
			ch.ServerNameIsIP = true
			continue
		}
		if err := checkSNIHostName(name); err != nil {
			return err
		}
	}
	return nil
}

// checkSNIHostName rejects host_names that must never reach policy: empty,
// too long, or with any byte outside letters, digits, '-', '.' and '_'
// (control bytes, NUL, newline, space, '@', '/', ...).
func checkSNIHostName(name []byte) error {
	if len(name) == 0 {
		return malformedCH("server_name: empty host_name")
	}
	if len(name) > maxHostNameLen {
		return malformedCH("server_name: host_name of %d bytes exceeds %d", len(name), maxHostNameLen)
	}
	for i, ch := range name {
		if !isHostNameByte(ch) {
			return malformedCH("server_name: byte 0x%02x at offset %d of host_name", ch, i)
		}
	}
	return nil
}

// isHostNameByte reports whether ch may appear in a DNS host name as
// clients send it: letters, digits, hyphen, dot, and underscore (seen in
// service names).
func isHostNameByte(ch byte) bool {
	return 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' ||
		ch == '-' || ch == '.' || ch == '_'
}

// parseALPN reads application_layer_protocol_negotiation (RFC 7301 §3.1):
// a non-empty list of non-empty protocol names.
func parseALPN(ch *ClientHello, c cursor) error {
	list, ok := c.vec16()
	if !ok || !c.empty() {
		return malformedCH("alpn: list length does not match the extension length")
	}
	if len(list) == 0 {
		return malformedCH("alpn: empty protocol_name_list")
	}
	l := cursor(list)
	for !l.empty() {
		p, ok := l.vec8()
		if !ok {
			return malformedCH("alpn: protocol name overruns the list")
		}
		if len(p) == 0 {
			return malformedCH("alpn: empty protocol name")
		}
		ch.ALPN = append(ch.ALPN, string(p))
	}
	return nil
}

// parseSupportedVersions reads supported_versions as a client sends it
// (RFC 8446 §4.2.1): a one-byte-length list of 2-byte versions.
func parseSupportedVersions(ch *ClientHello, c cursor) error {
	list, ok := c.vec8()
	if !ok || !c.empty() {
		return malformedCH("supported_versions: list length does not match the extension length")
	}
	if len(list) < 2 || len(list)%2 != 0 {
		return malformedCH("supported_versions: list of %d bytes", len(list))
	}
	l := cursor(list)
	for !l.empty() {
		v, _ := l.u16()
		ch.SupportedVersions = append(ch.SupportedVersions, v)
	}
	return nil
}
