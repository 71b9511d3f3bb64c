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

// idnaLookup is the UTS #46 lookup profile: maps case and compatibility
// forms, converts Unicode labels to punycode, and validates punycode labels
// and hyphen placement.
var idnaLookup = idna.Lookup

// NormalizeName returns name in the one form rules and lookups compare:
// lowercase, without one trailing dot, Unicode labels as punycode (IDNA
// lookup profile), each label 1–63 octets of letters, digits and inner
// hyphens, at most 253 octets in all. IP literals (including bracketed IPv6
// and numeric forms like "127.1") fail with ErrIPLiteral; anything else
// invalid (empty, control bytes, spaces, "*", "a..b") fails with
// ErrInvalidName.
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
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c == 0x7f {
			return "", fmt.Errorf("%w: %q contains a space or control byte", ErrInvalidName, name)
		}
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
	ascii, err := idnaLookup.ToASCII(s)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrInvalidName, name, err)
	}
	// The mapping already lowercases; ToLower again is a no-op guard for
	// any mapping that left an ASCII capital.
	ascii = strings.ToLower(ascii)
	if err := checkLDH(ascii); err != nil {
		return "", fmt.Errorf("%w: %q: %s", ErrInvalidName, name, err)
	}
	if numericLastLabel(ascii) {
		return "", fmt.Errorf("%w: %q", ErrIPLiteral, name)
	}
	return ascii, nil
}

// checkLDH validates the letters-digits-hyphen syntax and the DNS lengths
// of an already mapped ASCII name.
func checkLDH(s string) error {
	if len(s) > maxNameLen {
		return fmt.Errorf("%d octets long, DNS allows at most %d", len(s), maxNameLen)
	}
	for label := range strings.SplitSeq(s, ".") {
		switch {
		case label == "":
			return errors.New("empty label")
		case len(label) > maxLabelLen:
			return fmt.Errorf("label %q is %d octets, DNS allows at most %d", label, len(label), maxLabelLen)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Errorf("label %q starts or ends with a hyphen", label)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isLDHByte(c) {
				return fmt.Errorf("label %q contains %q; host names hold letters, digits and hyphens", label, c)
			}
		}
	}
	return nil
}

func isLDHByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
}

// isCanonicalName reports, without allocating, whether name is already in
// normal form: lowercase LDH labels within the DNS lengths, no trailing
// dot, no label that IDNA would need to check ("xn--" and any other
// hyphens in positions 3–4), and not numeric. Anything it refuses goes
// through normalizeSlow, which is authoritative.
func isCanonicalName(name string) bool {
	n := len(name)
	if n == 0 || n > maxNameLen {
		return false
	}
	labelLen := 0
	for i := 0; i < n; i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			labelLen++
		case c == '-':
			if labelLen == 0 || labelLen == 3 && name[i-1] == '-' {
				return false // leading hyphen, or "??--" (punycode or reserved)
			}
			labelLen++
		case c == '.':
			if labelLen == 0 || name[i-1] == '-' {
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
	if labelLen == 0 || name[n-1] == '-' {
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
