package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// DNS length limits (RFC 1035 §2.3.4): a name of at most 253 characters in
// its dotted text form, labels of 1 to 63 octets.
const (
	maxNameLen  = 253
	maxLabelLen = 63
	// maxNameInput bounds the bytes handed to IDNA mapping. Mapping can
	// delete characters (U+00AD soft hyphen maps to nothing), so a huge
	// input could still yield a short name; anything this long is not a
	// name a client sends, and refusing it bounds the work per lookup.
	maxNameInput = 1024
)

var (
	// ErrIPLiteral: the "name" is an IP address (or a numeric form some
	// resolvers read as one, like "127.1" or "0x7f000001"); it never
	// matches a domain rule.
	ErrIPLiteral = errors.New("IP literal, not a host name")
	// ErrInvalidName: the name is empty, too long, or not valid host name
	// syntax.
	ErrInvalidName = errors.New("invalid host name")
)

// idnaUnicode maps Unicode input (UTS #46 lookup: case and compatibility
// forms, punycode for non-ASCII labels, Bidi rule) without the STD3 and
// hyphen-position rules: those are host-name registration rules, not
// DNS's, and the result is checked against DNS's own syntax afterwards
// (checkLabels). It is used only for input that is not ASCII; ASCII names
// are DNS names already.
var idnaUnicode = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.StrictDomainName(false), idna.CheckHyphens(false))

// NormalizeName returns name in the one form rules and lookups compare:
// lowercase, without one trailing dot, at most 253 octets of labels of 1–63
// octets each. A label holds what DNS names hold in practice (RFC 2181 §11
// allows any octet; hosts, services and CDNs use these): letters, digits,
// hyphens anywhere ("r3---sn-abc.googlevideo.com") and underscores
// ("_mongodb._tcp.cluster0.x.mongodb.net", "_grpc_config.api.example",
// "my_svc.internal"). Input with non-ASCII characters goes through IDNA
// (UTS #46 lookup mapping, Unicode labels to punycode) first; ASCII input
// is only lowercased, so an "xn--" label is taken as DNS carries it. IP
// literals (including bracketed IPv6 and numeric forms like "127.1") fail
// with ErrIPLiteral; anything else invalid (empty, control bytes, spaces,
// "*", "a..b", other punctuation) fails with ErrInvalidName.
//
// A name that is already canonical is returned as is, without allocating:
// that is the hot path for SNI and DNS names, which are almost always
// lowercase ASCII already.
func NormalizeName(name string) (string, error) {
	if isCanonicalName(name) {
		return name, nil
	}
	return normalizeSlow(name)
}

// normalizeSlow is the full normalization. isCanonicalName accepts only
// names this returns unchanged (a test holds them to that).
func normalizeSlow(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidName)
	}
	if len(name) > maxNameInput {
		return "", fmt.Errorf("%w: %d bytes long (at most %d)", ErrInvalidName, len(name), maxNameInput)
	}
	ascii := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c == 0x7f {
			return "", fmt.Errorf("%w: %q contains a space or control byte", ErrInvalidName, name)
		}
		ascii = ascii && c < utf8.RuneSelf
	}
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidName, name)
	}
	if isIPLiteral(name) {
		return "", fmt.Errorf("%w: %q", ErrIPLiteral, name)
	}
	s := strings.TrimSuffix(name, ".")
	if s == "" || strings.HasPrefix(s, ".") || strings.Contains(s, "..") || strings.HasSuffix(s, ".") {
		return "", fmt.Errorf("%w: %q has an empty label", ErrInvalidName, name)
	}
	if ascii {
		s = strings.ToLower(s)
	} else {
		mapped, err := idnaUnicode.ToASCII(s)
		if err != nil {
			return "", fmt.Errorf("%w: %q: %v", ErrInvalidName, name, err)
		}
		// The mapping already lowercases; ToLower again is a no-op guard
		// for any mapping that left an ASCII capital.
		s = strings.ToLower(mapped)
	}
	if err := checkLabels(s); err != nil {
		return "", fmt.Errorf("%w: %q: %s", ErrInvalidName, name, err)
	}
	if numericLastLabel(s) {
		return "", fmt.Errorf("%w: %q", ErrIPLiteral, name)
	}
	return s, nil
}

// checkLabels validates the syntax and the DNS lengths of a lowercase
// ASCII name: labels of letters, digits, hyphens and underscores.
func checkLabels(s string) error {
	if len(s) > maxNameLen {
		return fmt.Errorf("%d octets long, DNS allows at most %d", len(s), maxNameLen)
	}
	for label := range strings.SplitSeq(s, ".") {
		switch {
		case label == "":
			return errors.New("empty label")
		case len(label) > maxLabelLen:
			return fmt.Errorf("label %q is %d octets, DNS allows at most %d", label, len(label), maxLabelLen)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isLabelByte(c) {
				return fmt.Errorf("label %q contains %q; DNS names hold letters, digits, hyphens and underscores", label, c)
			}
		}
	}
	return nil
}

func isLabelByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// isCanonicalName reports, without allocating, whether name is already in
// normal form: lowercase labels of letters, digits, hyphens and
// underscores within the DNS lengths, no trailing dot, and not numeric.
// Anything it refuses goes through normalizeSlow, which is authoritative.
func isCanonicalName(name string) bool {
	n := len(name)
	if n == 0 || n > maxNameLen {
		return false
	}
	labelLen := 0
	for i := 0; i < n; i++ {
		c := name[i]
		switch {
		case isLabelByte(c):
			labelLen++
		case c == '.':
			if labelLen == 0 {
				return false
			}
			labelLen = 0
		default:
			return false
		}
		if labelLen > maxLabelLen {
			return false
		}
	}
	if labelLen == 0 {
		return false
	}
	return !numericLastLabel(name)
}

// numericLastLabel reports whether the last label is all digits or a hex
// number ("0x7f000001"): inet_aton reads such names as IPv4 addresses, and
// no top-level domain is numeric, so they are IP literals, not names.
func numericLastLabel(name string) bool {
	last := name[strings.LastIndexByte(name, '.')+1:]
	if last == "" {
		return false
	}
	digits := last
	if len(last) >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') {
		digits = last[2:]
		for i := 0; i < len(digits); i++ {
			c := digits[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	return true
}

// isIPLiteral reports whether s is an IP address as a client could write
// it in SNI or a Host header: dotted IPv4, IPv6, or bracketed IPv6.
func isIPLiteral(s string) bool {
	if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}
