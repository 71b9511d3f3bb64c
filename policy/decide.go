package policy

import (
	"context"
	"errors"
	"net/netip"
	"strings"
)

// Request is one TCP connection to decide.
type Request struct {
	Name string     // SNI or HTTP Host as the client claimed it; "" if none
	IP   netip.Addr // original destination address
	Port uint16     // original destination port
}

// Resolver is what the policy knows about name→IP bindings. The DNS proxy's
// learned cache implements it.
type Resolver interface {
	// Resolves reports whether name is known to resolve to ip: learned
	// from the agent's DNS answers, or found by a fresh lookup.
	Resolves(ctx context.Context, name string, ip netip.Addr) bool
	// NamesFor returns the names learned (live, unexpired) for ip.
	NamesFor(ip netip.Addr) []string
}

// CheckName reports whether the claimed name is allowed on port; port 0
// asks whether it is allowed on any port (the DNS proxy's question before
// it answers a name). The name is normalized first; an already-normalized
// name (lowercase, no trailing dot) costs no allocation.
//
// deny-all denies every name (deny_all); dev-open allows every valid name
// (dev_open); allowlist allows a name a rule covers on that port
// (allowed_domain or allowed_tcp), and otherwise denies with
// port_not_allowed when a rule covers the name on other ports, else
// not_in_allowlist. IP literals deny with ip_literal, other invalid names
// with invalid_name.
func (p *Policy) CheckName(name string, port uint16) Verdict {
	if p == nil {
		return Verdict{Reason: ReasonNoPolicy}
	}
	n, err := NormalizeName(name)
	if err != nil {
		return Verdict{Reason: nameErrorReason(err)}
	}
	return p.checkNormalized(n, port, nil)
}

func nameErrorReason(err error) string {
	if errors.Is(err, ErrIPLiteral) {
		return ReasonIPLiteral
	}
	return ReasonInvalidName
}

func (p *Policy) checkNormalized(name string, port uint16, proc *Process) Verdict {
	switch p.mode {
	case ModeDevOpen:
		return Verdict{Allow: true, Reason: ReasonDevOpen}
	case ModeAllowlist:
	default:
		return Verdict{Reason: ReasonDenyAll}
	}
	if p.rego != nil {
		return p.rego.checkName(name, port, proc)
	}
	rule, ok, nearest := p.names.lookup(name, port)
	switch {
	case ok:
		return Verdict{Allow: true, Reason: ruleReason(rule), Rule: rule}
	case nearest != "":
		return Verdict{Reason: ReasonPortNotAllowed, Rule: nearest}
	}
	return Verdict{Reason: ReasonNotAllowed}
}

// ruleReason tells domain rules from allowed_tcp rules by their prefix.
func ruleReason(rule string) string {
	if strings.HasPrefix(rule, tcpRulePrefix) {
		return ReasonAllowedTCP
	}
	return ReasonAllowedDomain
}

// Decide is the whole decision for one TCP connection. The steps run in
// this order, and the first that decides wins:
//
//  1. The destination is always blocked — cloud metadata (metadata_address)
//     or loopback, unspecified, multicast, broadcast, reserved, no address,
//     or port 0 (blocked_range) — → deny, whatever the mode.
//  2. Mode deny-all → deny (deny_all).
//  3. The destination is private (RFC 1918, CGNAT, link-local, ULA…),
//     allow_private_ips is false and no allowed_private_cidrs entry covers
//     it → deny (private_ip): DNS-rebinding protection, even for an
//     allowed name. As in Forge, a CIDR is only this exemption, never a
//     grant: a rule below must still allow the connection.
//  5. Mode dev-open → allow (dev_open).
//  6. A name is claimed: an IP literal is no name (go on to 7, whose deny
//     then says ip_literal); an invalid name goes on to 7 and denies
//     (invalid_name) unless an address rule allows. Otherwise
//     CheckName(name, port): a deny is returned as is (not_in_allowlist,
//     port_not_allowed) — as in Forge, a rule for the address does not
//     lift it: rules match what the client asked for. An allow stands if
//     verify_sni_ip is off or the resolver confirms the name resolves to
//     IP; else an address rule (7) for IP:port allows (the claim did not
//     matter), else deny (sni_ip_mismatch, keeping the rule) — a nil
//     resolver cannot confirm, so this fails closed.
//  7. An IP-literal rule covers IP:port → allow: allowed_tcp "ip:port"
//     (allowed_tcp), or an address in a domain list, on 80 and 443
//     (allowed_domain).
//  8. No usable name, on a port other than 80 and 443: the first name
//     learned for IP (r.NamesFor) that CheckName allows on port → allow
//     (learned_ip, that name's rule). On 80 and 443 HTTP and TLS clients
//     always name their host; a nameless stream there (h2c, a garbled
//     prefix) could carry a request for any virtual host of a shared IP,
//     so it is never allowed by a learned name.
//     Otherwise deny: port_not_allowed when a learned name is allowed on
//     other ports (the rule is that name's), else no_name_for_ip (or
//     ip_literal from step 7).
//
// (There is no step 4 any more: allowed_private_cidrs used to grant here.)
//
// For a Rego policy, steps 1–5 run as written here and steps 6–8 ask
// data.forge.egress.decision instead of the tables (see decideRego).
//
// A nil policy denies everything (no_policy).
func (p *Policy) Decide(ctx context.Context, req Request, r Resolver) Verdict {
	return p.DecideFor(ctx, req, nil, r)
}

// DecideFor is Decide on behalf of proc, the connecting process (nil: not
// looked up). A policy that reads input.process denies without a known
// process (process_unknown).
func (p *Policy) DecideFor(ctx context.Context, req Request, proc *Process, r Resolver) Verdict {
	if p == nil {
		return Verdict{Reason: ReasonNoPolicy}
	}
	ctx = WithProcess(ctx, proc) // for r's own lookups (see WithProcess)
	ip := canonicalAddr(req.IP)

	// 1. Always blocked.
	kind := ClassifyAddr(ip)
	switch {
	case kind == AddrMetadata:
		return Verdict{Reason: ReasonMetadata}
	case kind.AlwaysBlocked(), req.Port == 0:
		return Verdict{Reason: ReasonBlockedRange}
	}
	// 2. deny-all.
	if p.mode != ModeAllowlist && p.mode != ModeDevOpen {
		return Verdict{Reason: ReasonDenyAll}
	}
	// 3. Private destinations, unless allowed_private_cidrs exempts them.
	if kind.IsPrivate() && !p.allowPrivateIPs {
		if _, exempt := p.cidrs.lookup(ip); !exempt {
			return Verdict{Reason: ReasonPrivateIP}
		}
	}
	// 5. dev-open.
	if p.mode == ModeDevOpen {
		return Verdict{Allow: true, Reason: ReasonDevOpen}
	}
	// 6–8 for a Rego policy: see decideRego.
	if p.rego != nil {
		return p.decideRego(ctx, req, proc, ip, r)
	}
	// 6. The claimed name decides; an address rule only stands in when the
	// name is allowed but unconfirmed, or not a name at all (7).
	finalDeny := ReasonNoNameForIP
	invalid := false
	if req.Name != "" {
		name, err := NormalizeName(req.Name)
		switch {
		case errors.Is(err, ErrIPLiteral):
			finalDeny = ReasonIPLiteral
		case err != nil:
			invalid = true
		default:
			v := p.checkNormalized(name, req.Port, proc)
			if !v.Allow {
				return v
			}
			if !p.verifySNIIP || (r != nil && r.Resolves(ctx, name, ip)) {
				return v
			}
			if byAddr, ok := p.addrRule(ip, req.Port); ok {
				return byAddr // the claim did not matter: the address itself is allowed
			}
			return Verdict{Reason: ReasonSNIIPMismatch, Rule: v.Rule}
		}
	}
	// 7. IP-literal rules (allowed_tcp, and addresses in the domain lists).
	if byAddr, ok := p.addrRule(ip, req.Port); ok {
		return byAddr
	}
	if invalid {
		return Verdict{Reason: ReasonInvalidName}
	}
	// 8. Names learned for the IP — never on the web ports (namedPort).
	nearest := ""
	if r != nil && !namedPort(req.Port) {
		for _, learned := range r.NamesFor(ip) {
			v := p.CheckName(learned, req.Port)
			if v.Allow {
				return Verdict{Allow: true, Reason: ReasonLearnedIP, Rule: v.Rule}
			}
			if v.Reason == ReasonPortNotAllowed && nearest == "" {
				nearest = v.Rule
			}
		}
	}
	return nameless(finalDeny, nearest)
}

// nameless is the final deny of a connection no rule allowed: when a name
// the address resolved from is allowed on other ports (nearest is its
// rule), the fix is a port, and the reason says so (port_not_allowed,
// see Hint).
func nameless(reason, nearest string) Verdict {
	if reason == ReasonNoNameForIP && nearest != "" {
		return Verdict{Reason: ReasonPortNotAllowed, Rule: nearest}
	}
	return Verdict{Reason: reason}
}

// addrRule is the IP-literal rule that allows ip:port, if any.
func (p *Policy) addrRule(ip netip.Addr, port uint16) (Verdict, bool) {
	if rules := p.ips[ip]; rules != nil {
		if rule, ok := rules.match(port); ok {
			return Verdict{Allow: true, Reason: ruleReason(rule), Rule: rule}, true
		}
	}
	return Verdict{}, false
}

// namedPort reports whether port is one where clients always send a name
// (HTTP's Host, TLS's SNI), so nameless traffic to it is not trusted by
// the names its address resolved from.
func namedPort(port uint16) bool { return port == 80 || port == 443 }
