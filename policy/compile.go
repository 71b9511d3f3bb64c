package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Rule prefixes in Verdict.Rule for rules that are not plain domain rules.
const (
	tcpRulePrefix  = "allowed_tcp:"
	cidrRulePrefix = "cidr:"
)

// Shortest prefixes accepted in allowed_private_cidrs: the largest private
// ranges are 10.0.0.0/8 and fc00::/7. Anything wider is "allow the
// internet by address", which is what dev-open is for, and is most likely
// a mistake.
const (
	minCIDRBits4 = 8
	minCIDRBits6 = 7
)

// compile validates a decoded document and builds the lookup tables.
func compile(doc *document) (*Policy, error) {
	p := &Policy{
		names:       newNameTable(),
		ips:         make(map[netip.Addr]*portRules),
		verifySNIIP: true,
	}
	if err := p.setScalars(doc); err != nil {
		return nil, err
	}
	domains := make(map[string]bool)
	for li, list := range doc.domainLists {
		for i, entry := range list {
			rule, key, wildcard, err := parseDomainRule(entry)
			if err != nil {
				return nil, entryError(domainListFields[li], i, entry, err)
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

	for i, entry := range doc.allowedCIDRs {
		prefix, err := parseCIDR(entry)
		if err != nil {
			return nil, entryError(fieldAllowedCIDRs, i, entry, err)
		}
		p.cidrs.add(prefix, cidrRulePrefix+prefix.String())
	}

	tcp := make(map[string]bool)
	for i, entry := range doc.allowedTCP {
		rule, err := p.addTCPRule(entry)
		if err != nil {
			return nil, entryError(fieldAllowedTCP, i, entry, err)
		}
		tcp[rule] = true
	}
	p.tcpRules = len(tcp)
	return p, nil
}

func entryError(field string, i int, entry string, err error) error {
	return fmt.Errorf("%s[%d] %q: %w", field, i, entry, err)
}

func (p *Policy) setScalars(doc *document) error {
	if doc.mode == nil {
		return fmt.Errorf(`%s: missing; Forge writes one of "deny-all", "allowlist", "dev-open"`, fieldMode)
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
	if doc.allowPrivateIPs != nil {
		p.allowPrivateIPs = *doc.allowPrivateIPs
	}
	if doc.verifySNIIP != nil {
		p.verifySNIIP = *doc.verifySNIIP
	}
	return nil
}

// parseDomainRule validates one entry of a domain list: an exact name or
// "*." followed by a name. It returns the normalized rule, the table key
// (the name, or the suffix after "*.") and whether it is a wildcard.
//
// A single-label wildcard like "*.com" or "*.internal" is accepted: it is
// explicit, and "*.internal"-style cluster suffixes are real use. A bare
// "*" is refused: unrestricted egress is mode dev-open.
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
	case errors.Is(err, ErrIPLiteral):
		return "", "", false, errors.New(`an IP address is not a name; use allowed_tcp like "198.51.100.7:443", or allowed_private_cidrs`)
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
// It returns the normalized rule.
func (p *Policy) addTCPRule(entry string) (string, error) {
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
		return p.addTCPAddrRule(ip, bracketed, port, anyPort)
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

func (p *Policy) addTCPAddrRule(ip netip.Addr, bracketed bool, port uint16, anyPort bool) (string, error) {
	if ip.Zone() != "" {
		return "", errors.New("a zoned address (with %) cannot be a rule; remove the zone")
	}
	switch {
	case ip.Is6() && !bracketed:
		return "", errors.New(`IPv6 addresses need brackets, like "[2001:db8::7]:22"`)
	case ip.Is4() && bracketed:
		return "", errors.New(`IPv4 addresses take no brackets, like "198.51.100.7:5432"`)
	}
	ip = canonicalAddr(ip)
	kind := ClassifyAddr(ip)
	switch {
	case kind.AlwaysBlocked():
		return "", fmt.Errorf("%s is a %s address, which is always blocked; remove the entry", ip, kind)
	case kind.IsPrivate() && !p.allowPrivateIPs:
		if _, ok := p.cidrs.lookup(ip); !ok {
			return "", fmt.Errorf("%s is a %s address and allow_private_ips is false, so this rule could never allow anything; add %s/%d to allowed_private_cidrs instead, or set allow_private_ips", ip, kind, ip, ip.BitLen())
		}
	}
	hostText := ip.String()
	if ip.Is6() {
		hostText = "[" + hostText + "]"
	}
	rule := tcpRulePrefix + hostText + ":" + portLabel(port, anyPort)
	rules := p.ips[ip]
	if rules == nil {
		rules = &portRules{}
		p.ips[ip] = rules
	}
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

// parseCIDR validates one allowed_private_cidrs entry: a canonical prefix
// (no host bits set), not wider than minCIDRBits, IPv4 written as IPv4.
func parseCIDR(entry string) (netip.Prefix, error) {
	prefix, err := netip.ParsePrefix(entry)
	if err != nil {
		if ip, ipErr := netip.ParseAddr(entry); ipErr == nil {
			return netip.Prefix{}, fmt.Errorf("missing prefix length; for one address write %s/%d", ip, ip.BitLen())
		}
		return netip.Prefix{}, fmt.Errorf(`not a CIDR like "10.0.0.0/8" or "fd00::/8": %v`, err)
	}
	addr := prefix.Addr()
	switch {
	case addr.Zone() != "":
		return netip.Prefix{}, errors.New("a zoned address (with %) cannot be a CIDR; remove the zone")
	case addr.Is4In6():
		return netip.Prefix{}, errors.New(`write IPv4 CIDRs in IPv4 form, like "10.0.0.0/8"`)
	case prefix.Masked() != prefix:
		return netip.Prefix{}, fmt.Errorf("host bits are set; did you mean %s?", prefix.Masked())
	case addr.Is4() && prefix.Bits() < minCIDRBits4, addr.Is6() && prefix.Bits() < minCIDRBits6:
		return netip.Prefix{}, fmt.Errorf("/%d is wider than the widest private range (10.0.0.0/8, fc00::/7); for unrestricted egress use mode \"dev-open\"", prefix.Bits())
	}
	return prefix, nil
}
