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
			if ip, bracketed, ok := parseIPEntry(entry); ok {
				rule, err := p.addAddrRule(field, i, entry, ip, bracketed, addrRuleWeb, 0)
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

// The warning for a policy without allow_private_ips. Forge's own runtime
// treats the absent key as true inside a container, and Forge never writes
// it; the supervisor keeps the safe default and says so.
const warnPrivateDenied = "private destinations are denied: set allow_private_ips or allowed_private_cidrs"

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
		p.warnings = append(p.warnings, warnPrivateDenied)
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

// parseIPEntry reads a domain-list entry that is an IP address, as Forge
// adds them from model, MCP and OTel URLs ("192.168.1.50", "fd00::12",
// "[fd00::12]"). bracketed says it was written in brackets.
func parseIPEntry(entry string) (ip netip.Addr, bracketed, ok bool) {
	host := entry
	if len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host, bracketed = host[1:len(host)-1], true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || bracketed && !ip.Is6() {
		return netip.Addr{}, false, false
	}
	return ip, bracketed, true
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
		return p.addAddrRule(fieldAllowedTCP, i, entry, ip, bracketed, kind, port)
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

// addrRuleKind is what an IP-literal rule opens.
type addrRuleKind uint8

const (
	addrRuleWeb  addrRuleKind = iota // a domain-list entry: ports 80 and 443, like any domain rule
	addrRulePort                     // allowed_tcp "ip:port"
	addrRuleAny                      // allowed_tcp "ip:*"
)

// addAddrRule records an IP-literal rule for the destination address
// itself. An always-blocked address (loopback, metadata…) can never be
// allowed: the entry is skipped with a warning and "" returned. A private
// one is kept, subject to the private-IP rules as in Forge: it allows only
// when allow_private_ips is set or an allowed_private_cidrs entry covers
// it, and a warning says when neither does.
func (p *Policy) addAddrRule(field string, i int, entry string, ip netip.Addr, bracketed bool, kind addrRuleKind, port uint16) (string, error) {
	if ip.Zone() != "" {
		return "", errors.New("a zoned address (with %) cannot be a rule; remove the zone")
	}
	ip = canonicalAddr(ip)
	class := ClassifyAddr(ip)
	switch {
	case class.AlwaysBlocked():
		return "", p.warn(field, i, entry, fmt.Sprintf("%s is a %s address, which is always blocked; skipped", ip, class))
	case class.IsPrivate() && !p.allowPrivateIPs:
		if _, ok := p.cidrs.lookup(ip); !ok {
			if err := p.warn(field, i, entry, fmt.Sprintf("%s is a %s address and allow_private_ips is false, so this rule could never allow anything; add %s/%d to allowed_private_cidrs instead, or set allow_private_ips", ip, class, ip, ip.BitLen())); err != nil {
				return "", err
			}
		}
	}
	hostText := ip.String()
	var rule string
	switch kind {
	case addrRuleWeb:
		rule = hostText
	default:
		if ip.Is6() {
			hostText = "[" + hostText + "]"
		}
		rule = tcpRulePrefix + hostText + ":" + portLabel(port, kind == addrRuleAny)
	}
	rules := p.ips[ip]
	if rules == nil {
		rules = &portRules{}
		p.ips[ip] = rules
	}
	switch kind {
	case addrRuleWeb:
		rules.addWeb(rule)
	case addrRuleAny:
		rules.addAny(rule)
	default:
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

// parseCIDR reads one allowed_private_cidrs entry with Forge's meaning: an
// exemption from the private-IP block for the addresses inside, never a
// grant (a domain or allowed_tcp rule must still match). Any prefix
// length loads. The warning, if not empty, says what the entry does not
// do: host bits set (the prefix is masked, as Go's net.ParseCIDR does),
// no private address inside (it exempts nothing), or every private range
// of its family inside (the same as allow_private_ips for it).
func parseCIDR(entry string) (netip.Prefix, string, error) {
	prefix, err := netip.ParsePrefix(entry)
	if err != nil {
		if ip, ipErr := netip.ParseAddr(entry); ipErr == nil {
			return netip.Prefix{}, "", fmt.Errorf("missing prefix length; for one address write %s/%d", ip, ip.BitLen())
		}
		return netip.Prefix{}, "", fmt.Errorf(`not a CIDR like "10.0.0.0/8" or "fd00::/8": %v`, err)
	}
	addr := prefix.Addr()
	switch {
	case addr.Zone() != "":
		return netip.Prefix{}, "", errors.New("a zoned address (with %) cannot be a CIDR; remove the zone")
	case addr.Is4In6():
		return netip.Prefix{}, "", errors.New(`write IPv4 CIDRs in IPv4 form, like "10.0.0.0/8"`)
	}
	var warning string
	if masked := prefix.Masked(); masked != prefix {
		warning = fmt.Sprintf("host bits are set; read as %s. ", masked)
		prefix = masked
	}
	switch privateOverlap(prefix) {
	case overlapNone:
		warning += "it holds no private address, so it exempts nothing: allowed_private_cidrs only lifts the private-IP block, it never allows a destination by itself (write allowed_tcp rules for that)"
	case overlapAll:
		warning += fmt.Sprintf("it holds every private range of IPv%d: the same as allow_private_ips for them; it still allows nothing by itself (a domain or allowed_tcp rule must match)", map[bool]int{true: 4, false: 6}[addr.Is4()])
	}
	return prefix, strings.TrimSpace(warning), nil
}

// privateRanges are the ranges ClassifyAddr calls private, for the
// warnings of parseCIDR.
var privateRanges = []netip.Prefix{
	private10, private172, private192, benchmark4, cgnat4, linkLocal4,
	linkLocal6, siteLocal6, ula6, nat64Local,
}

type overlap uint8

const (
	overlapSome overlap = iota
	overlapNone
	overlapAll
)

func privateOverlap(prefix netip.Prefix) overlap {
	some, all := false, true
	for _, r := range privateRanges {
		if r.Addr().Is4() != prefix.Addr().Is4() {
			continue
		}
		if prefix.Overlaps(r) {
			some = true
		}
		if !(prefix.Bits() <= r.Bits() && prefix.Contains(r.Addr())) {
			all = false
		}
	}
	switch {
	case !some:
		return overlapNone
	case all:
		return overlapAll
	}
	return overlapSome
}
