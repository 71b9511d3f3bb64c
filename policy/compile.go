package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Rule prefixes in Verdict.Rule for rules that are not plain domain rules.
const (
	tcpRulePrefix  = "allowed_tcp:"
	cidrRulePrefix = "cidr:"
)

// compile validates a decoded document and builds the lookup tables.
// Entries Forge writes verbatim that can never match anything (see
// trimEntry) are skipped with a warning; everything else that is wrong is
// an error.
func compile(doc *document) (*Policy, error) {
	p := &Policy{
		names:       newNameTable(),
		ips:         make(map[netip.Addr]*portRules),
		verifySNIIP: true,
		warnings:    doc.warnings,
		strict:      doc.strict,
	}
	if err := p.setScalars(doc); err != nil {
		return nil, err
	}
	// CIDRs first: whether an IP-literal rule can ever allow depends on them.
	for i, entry := range doc.allowedCIDRs {
		entry, skip, err := p.trimEntry(fieldAllowedCIDRs, i, entry)
		if err != nil {
			return nil, entryError(fieldAllowedCIDRs, i, entry, err)
		}
		if skip {
			continue
		}
		prefix, warning, err := parseCIDR(entry)
		if err != nil {
			return nil, entryError(fieldAllowedCIDRs, i, entry, err)
		}
		if raw, _ := netip.ParsePrefix(entry); p.strict && raw != prefix {
			return nil, entryError(fieldAllowedCIDRs, i, entry, fmt.Errorf("host bits are set; did you mean %s?", prefix))
		}
		if warning != "" {
			if err := p.warn(fieldAllowedCIDRs, i, entry, warning); err != nil {
				return nil, entryError(fieldAllowedCIDRs, i, entry, err)
			}
		}
		p.cidrs.add(prefix, cidrRulePrefix+prefix.String())
	}

	domains := make(map[string]bool)
	for li, list := range doc.domainLists {
		field := domainListFields[li]
		for i, entry := range list {
			entry, skip, err := p.trimEntry(field, i, entry)
			if err != nil {
				return nil, entryError(field, i, entry, err)
			}
			if skip {
				continue
			}
			if ip, ok := parseIPEntry(entry); ok {
				rule, err := p.addAddrRule(field, i, entry, ip, addrRuleWeb, 0)
				if err != nil {
					return nil, entryError(field, i, entry, err)
				}
				if rule != "" {
					domains[rule] = true
				}
				continue
			}
			rule, key, wildcard, err := parseDomainRule(entry)
			if err != nil {
				return nil, entryError(field, i, entry, err)
			}
			p.names.entry(key, wildcard).addWeb(rule)
			domains[rule] = true
		}
	}
	p.domainRules = make([]string, 0, len(domains))
	for rule := range domains {
		p.domainRules = append(p.domainRules, rule)
	}
	slices.Sort(p.domainRules)

	tcp := make(map[string]bool)
	for i, entry := range doc.allowedTCP {
		entry, skip, err := p.trimEntry(fieldAllowedTCP, i, entry)
		if err != nil {
			return nil, entryError(fieldAllowedTCP, i, entry, err)
		}
		if skip {
			continue
		}
		rule, err := p.addTCPRule(i, entry)
		if err != nil {
			return nil, entryError(fieldAllowedTCP, i, entry, err)
		}
		if rule != "" {
			tcp[rule] = true
		}
	}
	p.tcpRules = len(tcp)
	return p, nil
}

// warn records a warning about one entry, in the form errors have; with
// Options.Strict it is that error instead.
func (p *Policy) warn(field string, i int, entry, msg string) error {
	if p.strict {
		return errors.New(msg) // the caller names the entry, as for any error
	}
	p.warnings = append(p.warnings, fmt.Sprintf("%s[%d] %q: %s", field, i, entry, msg))
	return nil
}

func entryError(field string, i int, entry string, err error) error {
	return fmt.Errorf("%s[%d] %q: %w", field, i, entry, err)
}

// WarnPrivateDenied is the warning for a policy without allow_private_ips
// (and no allowed_private_cidrs): Forge's own runtime treats the absent key
// as true inside a container, and Forge never writes it; the supervisor
// keeps the safe default and says so. A notice about a default, not about
// an entry: Options.Strict leaves it a warning.
const WarnPrivateDenied = "private destinations are denied: set allow_private_ips or allowed_private_cidrs"

func (p *Policy) setScalars(doc *document) error {
	if doc.mode == nil {
		err := fmt.Errorf(`%s: missing; Forge writes one of "deny-all", "allowlist", "dev-open"`, fieldMode)
		if len(doc.warnings) > 0 {
			err = fmt.Errorf("%w (also: %s)", err, strings.Join(doc.warnings, "; "))
		}
		return err
	}
	switch m := Mode(*doc.mode); m {
	case ModeDenyAll, ModeAllowlist, ModeDevOpen:
		p.mode = m
	default:
		return fmt.Errorf(`%s: %q is not a mode; use "deny-all", "allowlist" or "dev-open"`, fieldMode, *doc.mode)
	}
	if doc.profile != nil {
		prof := *doc.profile
		switch {
		case strings.TrimSpace(prof) == "":
			return fmt.Errorf(`%s: empty; write a name like "standard", or leave the field out`, fieldProfile)
		case len(prof) > maxProfileLen:
			return fmt.Errorf("%s: %d bytes long, at most %d", fieldProfile, len(prof), maxProfileLen)
		case strings.ContainsFunc(prof, func(r rune) bool { return r < ' ' || r == 0x7f }):
			return fmt.Errorf("%s: %q contains control characters", fieldProfile, prof)
		}
		p.profile = prof
	}
	switch {
	case doc.allowPrivateIPs != nil:
		p.allowPrivateIPs = *doc.allowPrivateIPs
	case p.mode != ModeDenyAll && len(doc.allowedCIDRs) == 0:
		p.warnings = append(p.warnings, WarnPrivateDenied)
	}
	if doc.verifySNIIP != nil {
		p.verifySNIIP = *doc.verifySNIIP
	}
	return nil
}

// trimEntry trims what Forge trims (surrounding whitespace, and a stray
// byte-order mark) and reports whether the entry is one Forge writes
// verbatim that can never match anything — empty, a bare "*", an
// unexpanded "$VARIABLE", a URL — which is skipped with one warning naming
// it. A skipped entry never widens the policy: in particular "*" is never
// allow-all.
func (p *Policy) trimEntry(field string, i int, entry string) (string, bool, error) {
	trimmed := strings.TrimFunc(entry, func(r rune) bool { return unicode.IsSpace(r) || r == '\ufeff' })
	var why string
	switch {
	case trimmed == "":
		why = "empty entry; skipped"
	case trimmed == "*" || trimmed == "*." || trimmed == "*:*":
		why = `a bare "*" would allow everything, and an allowlist never does; skipped (use mode "dev-open" for unrestricted egress)`
	case strings.Contains(trimmed, "$"):
		why = "an unexpanded environment variable can never match a name; skipped (set the variable before Forge writes the file)"
	case strings.Contains(trimmed, "://"):
		why = `a URL is not a host name; skipped (write the host alone, like "api.example.com", or host:port in allowed_tcp)`
	default:
		return trimmed, false, nil
	}
	return "", true, p.warn(field, i, entry, why)
}

// parseDomainRule validates one entry of a domain list: an exact name or
// "*." followed by a name. It returns the normalized rule, the table key
// (the name, or the suffix after "*.") and whether it is a wildcard.
//
// A single-label wildcard like "*.com" or "*.internal" is accepted: it is
// explicit, and "*.internal"-style cluster suffixes are real use.
func parseDomainRule(entry string) (rule, key string, wildcard bool, err error) {
	switch {
	case entry == "":
		return "", "", false, errors.New("empty entry; remove it")
	case entry == "*" || entry == "*.":
		return "", "", false, errors.New(`a bare "*" would allow every name; use mode "dev-open" for unrestricted egress`)
	case strings.Contains(entry, "://") || strings.ContainsAny(entry, "/?#@"):
		return "", "", false, errors.New(`write the bare host name, without scheme, path or user, like "api.example.com"`)
	}
	name := entry
	if strings.HasPrefix(entry, "*.") {
		name, wildcard = entry[2:], true
	}
	if strings.Contains(name, "*") {
		return "", "", false, errors.New(`a wildcard must be the whole first label, like "*.example.com" ("*foo.com" and "foo.*.com" are not supported)`)
	}
	if !isIPLiteral(name) && strings.Contains(name, ":") {
		return "", "", false, errors.New(`domain lists hold names only and open ports 80 and 443; for another port use allowed_tcp, like "db.example.com:5432"`)
	}
	key, err = NormalizeName(name)
	switch {
	case errors.Is(err, ErrIPLiteral) && wildcard:
		return "", "", false, errors.New(`a wildcard of an IP address matches nothing; write the address alone, or use allowed_private_cidrs`)
	case errors.Is(err, ErrIPLiteral):
		return "", "", false, errors.New(`not an IP address in standard form (dotted decimal, or IPv6); write it like "198.51.100.7"`)
	case err != nil:
		return "", "", false, err
	}
	if wildcard {
		return "*." + key, key, true, nil
	}
	return key, key, false, nil
}

// addTCPRule parses and records one allowed_tcp entry: "host:port",
// "*.suffix:port", "host:*", "198.51.100.7:5432" or "[2001:db8::7]:22".
// It returns the normalized rule, or "" when an address rule was skipped
// with a warning.
func (p *Policy) addTCPRule(i int, entry string) (string, error) {
	colon := strings.LastIndexByte(entry, ':')
	if colon < 0 {
		return "", errors.New(`missing port; write host:port like "db.example.com:5432", or host:* for every port`)
	}
	host, portText := entry[:colon], entry[colon+1:]
	var port uint16
	anyPort := portText == "*"
	if !anyPort {
		n, err := strconv.ParseUint(portText, 10, 16)
		if err != nil || n == 0 {
			return "", fmt.Errorf(`port %q is not a port number 1-65535 or "*"`, portText)
		}
		port = uint16(n)
	}
	bracketed := strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")
	if bracketed {
		host = host[1 : len(host)-1]
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		switch {
		case ip.Is6() && !bracketed:
			return "", errors.New(`IPv6 addresses need brackets, like "[2001:db8::7]:22"`)
		case ip.Is4() && bracketed:
			return "", errors.New(`IPv4 addresses take no brackets, like "198.51.100.7:5432"`)
		}
		kind := addrRulePort
		if anyPort {
			kind = addrRuleAny
		}
		return p.addAddrRule(fieldAllowedTCP, i, entry, ip, kind, port)
	}
	switch {
	case bracketed:
		return "", fmt.Errorf(`%q in brackets is not an IPv6 address`, host)
	case strings.Contains(host, ":"):
		return "", errors.New(`IPv6 addresses need brackets, like "[2001:db8::7]:22"`)
	}
	_, key, wildcard, err := parseDomainRule(host)
	if err != nil {
		return "", err
	}
	shown := key
	if wildcard {
		shown = "*." + key
	}
	rule := tcpRulePrefix + shown + ":" + portLabel(port, anyPort)
	rules := p.names.entry(key, wildcard)
	if anyPort {
		rules.addAny(rule)
	} else {
		rules.addPort(port, rule)
	}
	return rule, nil
}

func portLabel(port uint16, anyPort bool) string {
	if anyPort {
		return "*"
	}
	return strconv.Itoa(int(port))
}
