package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// Verdict is the outcome of a policy check. Its zero value denies: a code
// path that forgets to decide never lets traffic through.
type Verdict struct {
	Allow bool
	// Reason is a stable machine-readable word (one of the Reason* constants)
	// that audit events carry and tests assert.
	Reason string
	// Rule is the policy entry that decided, as written in the policy file
	// (e.g. "*.github.com", "allowed_tcp:db.example.com:5432",
	// "cidr:10.0.0.0/8"); empty when no rule matched.
	Rule string
}

// Reasons. Allow reasons say which kind of rule matched; deny reasons say
// why nothing did.
const (
	ReasonAllowedDomain  = "allowed_domain"   // a domain rule matched the name
	ReasonAllowedTCP     = "allowed_tcp"      // an allowed_tcp host:port rule matched
	ReasonDevOpen        = "dev_open"         // mode dev-open allows everything not always-blocked
	ReasonLearnedIP      = "learned_ip"       // opaque traffic to an IP an allowed name resolved to
	ReasonDenyAll        = "deny_all"         // mode deny-all
	ReasonNotAllowed     = "not_in_allowlist" // the name matched no rule
	ReasonPortNotAllowed = "port_not_allowed" // the name (or a name learned for the address) is allowed, but not on this port: see Hint
	ReasonMetadata       = "metadata_address" // cloud metadata endpoint: always denied
	ReasonBlockedRange   = "blocked_range"    // loopback, unspecified, and other always-blocked ranges
	ReasonPrivateIP      = "private_ip"       // private destination while allow_private_ips is false
	ReasonNoNameForIP    = "no_name_for_ip"   // no name claimed and no rule or learned name covers the IP
	ReasonSNIIPMismatch  = "sni_ip_mismatch"  // the claimed name never resolved to the destination IP
	ReasonIPLiteral      = "ip_literal"       // SNI/Host is an IP literal: never matches a domain rule
	ReasonInvalidName    = "invalid_name"     // the name is not a valid hostname
)

// Reasons added by the policy package beyond the shared vocabulary above.
const (
	ReasonNoPolicy = "no_policy" // no policy loaded (nil *Policy): deny everything
)

// Hint says how to fix a denial whose fix is the policy's, for the
// warning that goes with it; "" when there is none to give. For
// port_not_allowed (v.Rule allows the name, or a name learned for the
// address, on other ports): domain rules open ports 80 and 443 only, so
// another port needs an allowed_tcp entry, or an endpoint with that port
// in forge.yaml (which becomes one).
func Hint(v Verdict, name string, port uint16) string {
	if v.Allow || v.Reason != ReasonPortNotAllowed || v.Rule == "" {
		return ""
	}
	host, opened := v.Rule, "ports 80 and 443 only, as every domain rule"
	if r, ok := strings.CutPrefix(v.Rule, tcpRulePrefix); ok {
		i := strings.LastIndexByte(r, ':')
		host, opened = r[:i], "port "+r[i+1:]+" only, by allowed_tcp"
	}
	if n, err := NormalizeName(name); err == nil {
		host = n // the name asked for: the narrowest entry that fixes it
	}
	return fmt.Sprintf("%s is allowed on %s; to reach port %d add %q to allowed_tcp, or declare the endpoint with its port in forge.yaml",
		host, opened, port, host+":"+strconv.Itoa(int(port)))
}
