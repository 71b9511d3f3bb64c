package dns

import (
	"errors"
	"strings"

	"github.com/forge/forge-supervisor/policy"
)

// RFC 1035 limits on a name in presentation form without the trailing dot.
const (
	maxNameLen  = 253
	maxLabelLen = 63
)

// Deny reasons the DNS proxy adds to the policy's own (policy.Reason*).
const (
	// ReasonLabelLimit: the name is under an allowed wildcard but has more
	// or longer labels than the deprecated Config.MaxLabels/MaxLabelLen
	// allow (off by default; policy.ReasonExfilBudget is the guard now).
	ReasonLabelLimit = "label_limit"
	// ReasonUnsupported: a query class or type the proxy does not forward
	// (non-IN classes, zone transfers, meta types).
	ReasonUnsupported = "unsupported_query"
	// ReasonOverloaded: too many queries in flight; answered SERVFAIL.
	ReasonOverloaded = "overloaded"
	// ReasonUpstreamFailed: allowed, but no upstream gave a usable answer.
	ReasonUpstreamFailed = "upstream_failed"
)

// decider is the part of *policy.Policy the proxy consults per query.
type decider interface {
	Mode() policy.Mode
	CheckName(name string, port uint16) policy.Verdict
}

// nameLimits are the deprecated fixed caps on names allowed by a wildcard
// rule (Config.MaxLabels, MaxLabelLen). Zero fields — the default — mean
// only the RFC limits apply; the exfiltration guard (policy.ExfilGuard)
// bounds what such names carry instead.
type nameLimits struct {
	maxLabels   int
	maxLabelLen int
}

// charger is what *policy.Policy says about a name's cost to the
// exfiltration guard; deciders without it are read as JSON rules.
type charger interface {
	ExfilCharge(name string, v policy.Verdict) (key string, cost int, charged bool)
}

// decide returns the normalized query name and the verdict for it, asked
// on behalf of proc (nil: identity off). It reads the policy once, so a
// reload in the middle cannot mix two policies. Denied is the zero value:
// every path that does not reach an allow denies. Every path that resolves
// a name for the agent (its queries, Resolve for the explicit proxy and
// SNI verification) comes here, so the one guard bounds them all: an
// allowed name under a wildcard that would exceed its budget is denied
// (exfil_budget).
func decide(pol decider, qname string, lim nameLimits, proc *policy.Process, guard *policy.ExfilGuard) (string, policy.Verdict) {
	if pol == nil {
		return "", policy.Verdict{Reason: policy.ReasonNoPolicy}
	}
	name, err := normalizeQName(qname)
	if errors.Is(err, policy.ErrIPLiteral) {
		return name, policy.Verdict{Reason: policy.ReasonIPLiteral}
	}
	if err != nil || !withinRFCLimits(name) {
		return name, policy.Verdict{Reason: policy.ReasonInvalidName}
	}
	if pol.Mode() == policy.ModeDenyAll {
		return name, policy.Verdict{Reason: policy.ReasonDenyAll}
	}
	v := checkName(pol, name, proc)
	if !v.Allow {
		return name, v
	}
	if _, wild := policy.WildcardSuffix(v.Rule); wild && !lim.fits(name) {
		return name, policy.Verdict{Reason: ReasonLabelLimit, Rule: v.Rule}
	}
	var key string
	var cost int
	var charged bool
	if c, ok := pol.(charger); ok {
		key, cost, charged = c.ExfilCharge(name, v)
	} else {
		key, cost, charged = policy.WildcardCharge(name, v)
	}
	if charged && !guard.Admit(name, key, cost) {
		return name, policy.Verdict{Reason: policy.ReasonExfilBudget, Rule: v.Rule}
	}
	return name, v
}

// normalizeQName is policy.NormalizeName for a name as a query carries it,
// with the root's trailing dot. The policy's allocation-free path takes
// only names without that dot, so it is cut first; the result is the one
// the full name would give, because normalization drops the dot anyway.
// A dotted IP literal ("192.0.2.1.") is not an address to the policy, so
// those keep the full name's verdict.
func normalizeQName(qname string) (string, error) {
	t, dotted := strings.CutSuffix(qname, ".")
	if !dotted || t == "" || strings.HasSuffix(t, ".") {
		return policy.NormalizeName(qname)
	}
	name, err := policy.NormalizeName(t)
	if errors.Is(err, policy.ErrIPLiteral) {
		return policy.NormalizeName(qname)
	}
	return name, err
}

// withinRFCLimits reports whether name (normalized: lower case, no
// trailing dot) is a hostname within the RFC 1035 length limits, made of
// letters, digits, hyphens and underscores (_dmarc, _443._tcp). Anything
// else arrives in presentation form as an escape (\DDD, \.) and is refused:
// such bytes are never part of a name an allowlist means.
func withinRFCLimits(name string) bool {
	if name == "" || len(name) > maxNameLen {
		return false
	}
	labelLen := 0
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '.':
			if labelLen == 0 {
				return false
			}
			labelLen = 0
			continue
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
		labelLen++
		if labelLen > maxLabelLen {
			return false
		}
	}
	return labelLen > 0
}

func (l nameLimits) fits(name string) bool {
	labels, labelLen := 1, 0
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			labels, labelLen = labels+1, 0
			continue
		}
		if labelLen++; l.maxLabelLen > 0 && labelLen > l.maxLabelLen {
			return false
		}
	}
	return l.maxLabels <= 0 || labels <= l.maxLabels
}
