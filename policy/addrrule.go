package policy

import (
	"errors"
	"fmt"
	"net/netip"
)

// parseIPEntry reads a domain-list entry that is an IP address, as Forge
// adds them from model, MCP and OTel URLs ("192.168.1.50", "fd00::12",
// "[fd00::12]").
func parseIPEntry(entry string) (netip.Addr, bool) {
	host := entry
	bracketed := len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']'
	if bracketed {
		host = host[1 : len(host)-1]
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || bracketed && !ip.Is6() {
		return netip.Addr{}, false
	}
	return ip, true
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
func (p *Policy) addAddrRule(field string, i int, entry string, ip netip.Addr, kind addrRuleKind, port uint16) (string, error) {
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
