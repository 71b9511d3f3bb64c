package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Mode is Forge's egress mode.
type Mode string

const (
	ModeDenyAll   Mode = "deny-all"  // no outbound connection at all
	ModeAllowlist Mode = "allowlist" // only the listed names, ports and CIDRs
	ModeDevOpen   Mode = "dev-open"  // unrestricted, except always-blocked and private destinations
)

// Policy is a parsed, validated egress policy. It is immutable after Parse
// and safe for concurrent use. Every method accepts a nil *Policy, which
// denies everything.
type Policy struct {
	mode            Mode
	profile         string
	allowPrivateIPs bool
	verifySNIIP     bool

	names       nameTable                 // domain rules and allowed_tcp name rules
	ips         map[netip.Addr]*portRules // allowed_tcp IP-literal rules, keyed by canonical address
	cidrs       cidrTable                 // allowed_private_cidrs
	domainRules []string                  // normalized domain rules, sorted
	tcpRules    int                       // distinct allowed_tcp entries
	warnings    []string                  // what loaded but deserves a word (Warnings)
	strict      bool                      // while compiling: a warning is an error (Options.Strict)

	rego *regoEngine // non-nil for a Rego policy: it replaces the tables above (cidrs excepted)
}

// Warnings are what loaded but deserves a word at startup and on reload:
// unknown fields, entries skipped because they can never match (empty,
// "*", "$VAR", URLs), IP-literal rules that allow nothing, CIDRs that
// exempt nothing, private destinations denied by default. Each names the
// entry and the fix. The slice is a copy.
func (p *Policy) Warnings() []string {
	if p == nil {
		return nil
	}
	return slices.Clone(p.warnings)
}

// Mode is the policy's egress mode.
func (p *Policy) Mode() Mode {
	if p == nil {
		return ModeDenyAll // a nil policy denies everything
	}
	return p.mode
}

// Profile is Forge's profile name ("strict", "standard", "permissive", or
// free-form); empty when the file has none.
func (p *Policy) Profile() string {
	if p == nil {
		return ""
	}
	return p.profile
}

// VerifySNIIP reports whether a claimed SNI/Host must have resolved to the
// destination IP (verify_sni_ip, default true).
func (p *Policy) VerifySNIIP() bool { return p == nil || p.verifySNIIP }

// AllowPrivateIPs reports allow_private_ips (default false).
func (p *Policy) AllowPrivateIPs() bool { return p != nil && p.allowPrivateIPs }

// RuleCount is the number of distinct rules: domain rules, allowed_tcp
// entries and allowed_private_cidrs. For a Rego policy: the module's rules
// and allowed_private_cidrs.
func (p *Policy) RuleCount() int {
	if p == nil {
		return 0
	}
	if p.rego != nil {
		return p.rego.rules + p.cidrs.count()
	}
	return len(p.domainRules) + p.tcpRules + p.cidrs.count()
}

// Names returns every domain rule (the union of allowed_domains,
// tool_domains and all_domains; none for a Rego policy) in normalized
// form — lowercase, no trailing dot, punycode — sorted. The slice is a copy.
func (p *Policy) Names() []string {
	if p == nil {
		return nil
	}
	return append([]string(nil), p.domainRules...)
}

// Describe is a one-line summary for startup logs and `config` output.
func (p *Policy) Describe() string {
	if p == nil {
		return "no policy (everything denied)"
	}
	if p.rego != nil {
		return p.rego.describe(p)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "mode=%s", p.mode)
	if p.profile != "" {
		fmt.Fprintf(&b, " profile=%s", p.profile)
	}
	fmt.Fprintf(&b, " domains=%d (exact=%d wildcard=%d) allowed_tcp=%d cidrs=%d allow_private_ips=%t verify_sni_ip=%t",
		len(p.domainRules), p.countDomains(false), p.countDomains(true), p.tcpRules, p.cidrs.count(),
		p.allowPrivateIPs, p.verifySNIIP)
	if p.mode != ModeAllowlist && p.RuleCount() > 0 {
		fmt.Fprintf(&b, " (rules inert in %s mode)", p.mode)
	}
	return b.String()
}

func (p *Policy) countDomains(wildcard bool) int {
	n := 0
	for _, r := range p.domainRules {
		if strings.HasPrefix(r, "*.") == wildcard {
			n++
		}
	}
	return n
}
