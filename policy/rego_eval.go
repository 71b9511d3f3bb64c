package policy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// decideRego is steps 6–8 of Decide for a Rego policy; steps 1–5 (always
// blocked, deny-all, private destinations unless allowed_private_cidrs
// exempts them, dev-open) have already run in Go. ip is canonical.
//
//   - A claimed name is normalized first. An IP literal is treated as no
//     name. An invalid name denies (invalid_name) unless Rego allows the
//     address with no name ({tcp, "", ip, port}), as JSON's IP rules do.
//   - With a name, Rego is asked {tcp, name, ip, port}. A deny stands. An
//     allow stands if verify_sni_ip is off or the resolver confirms the
//     name resolves to ip. Otherwise the claim is unconfirmed and the
//     connection stands only if Rego allows the address with no name at
//     all ({tcp, "", ip, port}: the name did not matter); else
//     sni_ip_mismatch, keeping the rule of the name's allow.
//   - Without a name, Rego is asked {tcp, "", ip, port}. A deny is
//     followed by each name learned for ip, asked {tcp, learned, ip, port};
//     the first allow → learned_ip with that rule. Otherwise the nameless
//     deny stands (ip_literal when the claimed name was an IP literal).
//
// Go never turns a Rego deny of the request as it was made into an allow,
// and any evaluation failure denies at once (rego_error, rego_undefined).
func (p *Policy) decideRego(ctx context.Context, req Request, proc *Process, ip netip.Addr, r Resolver) Verdict {
	e := p.rego.askingFor(proc)
	ipText := ip.String()
	name, ipLiteral := "", false
	if req.Name != "" {
		n, err := NormalizeName(req.Name)
		switch {
		case errors.Is(err, ErrIPLiteral):
			ipLiteral = true
		case err != nil:
			// As for JSON, an address-only allow (step 6) does not
			// depend on the name, so it still stands.
			if v := e.decide(ctx, regoKindTCP, "", ipText, req.Port); v.Allow || isRegoFailure(v) {
				return v
			}
			return Verdict{Reason: ReasonInvalidName}
		default:
			name = n
		}
	}
	if name != "" {
		v := e.decide(ctx, regoKindTCP, name, ipText, req.Port)
		if !v.Allow || !p.verifySNIIP || (r != nil && r.Resolves(ctx, name, ip)) {
			return v
		}
		byAddr := e.decide(ctx, regoKindTCP, "", ipText, req.Port)
		if byAddr.Allow || isRegoFailure(byAddr) {
			return byAddr
		}
		return Verdict{Reason: ReasonSNIIPMismatch, Rule: v.Rule}
	}
	v := e.decide(ctx, regoKindTCP, "", ipText, req.Port)
	if v.Allow || isRegoFailure(v) {
		return v
	}
	// As for JSON policies: never on the web ports (namedPort).
	nearest := ""
	if r != nil && !namedPort(req.Port) {
		for _, learned := range r.NamesFor(ip) {
			n, err := NormalizeName(learned)
			if err != nil {
				continue
			}
			lv := e.decide(ctx, regoKindTCP, n, ipText, req.Port)
			if isRegoFailure(lv) {
				return lv
			}
			if lv.Allow {
				return Verdict{Allow: true, Reason: ReasonLearnedIP, Rule: lv.Rule}
			}
			if lv.Reason == ReasonPortNotAllowed && nearest == "" {
				nearest = lv.Rule
			}
		}
	}
	if ipLiteral {
		return Verdict{Reason: ReasonIPLiteral}
	}
	if v.Reason == ReasonNoNameForIP && nearest != "" {
		return nameless(v.Reason, nearest)
	}
	return v
}

// checkName is CheckName's allowlist step for a Rego policy: port 0 (the
// DNS proxy's question) asks kind "dns"; a real port (the explicit proxy's
// question before it resolves) asks kind "tcp" with no address yet.
func (e *regoEngine) checkName(name string, port uint16, proc *Process) Verdict {
	kind := regoKindTCP
	if port == 0 {
		kind = regoKindDNS
	}
	return e.askingFor(proc).decide(context.Background(), kind, name, "", port)
}

func isRegoFailure(v Verdict) bool {
	return v.Reason == ReasonRegoError || v.Reason == ReasonRegoUndefined
}

// decideAs evaluates data.forge.egress.decision for one input (with
// input.process when proc is non-nil) under regoEvalTimeout. Every failure denies; Rule then says what failed
// ("rego:timeout", "rego:cancelled", "rego:policy.rego:12:
// eval_conflict_error", ...) so the audit event points at the cause.
func (e *regoEngine) decideAs(ctx context.Context, kind, name, ip string, port uint16, proc *Process) Verdict {
	ctx, cancel := context.WithTimeout(ctx, regoEvalTimeout)
	defer cancel()
	if err := ctx.Err(); err != nil { // a caller that gave up gets no decision
		return Verdict{Reason: ReasonRegoError, Rule: regoFailureRule(err)}
	}
	input := ast.NewObject(
		[2]*ast.Term{ast.InternedTerm("kind"), ast.StringTerm(kind)},
		[2]*ast.Term{ast.InternedTerm("name"), ast.StringTerm(name)},
		[2]*ast.Term{ast.InternedTerm("ip"), ast.StringTerm(ip)},
		[2]*ast.Term{ast.InternedTerm("port"), ast.InternedTerm(int(port))},
	)
	if proc != nil {
		input.Insert(ast.InternedTerm(regoInputProcess), processTerm(proc))
	}
	rs, err := e.query.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil && ctx.Err() != nil {
		err = ctx.Err() // OPA reports only "cancelled"; say whether it was the deadline
	}
	switch {
	case err != nil:
		return Verdict{Reason: ReasonRegoError, Rule: regoFailureRule(err)}
	case len(rs) == 0:
		return Verdict{Reason: ReasonRegoUndefined, Rule: "rego:" + e.file + ": decision undefined"}
	case len(rs) > 1 || len(rs[0].Expressions) != 1:
		return Verdict{Reason: ReasonRegoError, Rule: "rego:decision has several values"}
	}
	v, problem := decodeDecision(rs[0].Expressions[0].Value)
	if problem != "" {
		return Verdict{Reason: ReasonRegoError, Rule: "rego:decision " + problem}
	}
	return v
}

// decodeDecision reads {"allow": bool, "reason": string, "rule": string}.
// allow and reason are required; rule is optional; other keys are ignored.
// The reason must be one printable word and both strings are bounded,
// since they go into every audit event.
func decodeDecision(value any) (Verdict, string) {
	obj, ok := value.(map[string]any)
	if !ok {
		return Verdict{}, fmt.Sprintf("is %s, not an object", regoTypeName(value))
	}
	allow, ok := obj["allow"].(bool)
	if !ok {
		return Verdict{}, "has no boolean \"allow\""
	}
	reason, ok := obj["reason"].(string)
	switch {
	case !ok || reason == "":
		return Verdict{}, "has no string \"reason\""
	case len(reason) > maxRegoReasonLen || !isPrintableWord(reason):
		return Verdict{}, fmt.Sprintf("\"reason\" must be one printable word of at most %d bytes", maxRegoReasonLen)
	}
	var rule string
	if raw, present := obj["rule"]; present {
		rule, ok = raw.(string)
		switch {
		case !ok:
			return Verdict{}, "\"rule\" is not a string"
		case len(rule) > maxRegoRuleLen || strings.ContainsFunc(rule, func(c rune) bool { return c < ' ' || c == 0x7f }):
			return Verdict{}, fmt.Sprintf("\"rule\" must be printable and at most %d bytes", maxRegoRuleLen)
		}
	}
	return Verdict{Allow: allow, Reason: reason, Rule: rule}, ""
}

func isPrintableWord(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

func regoTypeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	default:
		return "a number"
	}
}

// regoFailureRule names an evaluation failure for the audit event: its
// location and code, never its message (which can quote input values).
func regoFailureRule(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "rego:timeout"
	case errors.Is(err, context.Canceled), topdown.IsCancel(err):
		return "rego:cancelled"
	}
	var te *topdown.Error
	if errors.As(err, &te) {
		if te.Location != nil {
			return fmt.Sprintf("rego:%s:%d: %s", te.Location.File, te.Location.Row, te.Code)
		}
		return "rego:" + te.Code
	}
	return "rego:evaluation failed"
}
