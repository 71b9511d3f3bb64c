package policy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// A Rego policy is one module in package forge.egress. The supervisor asks
// data.forge.egress.decision for every question the JSON matcher would
// answer from its tables, and keeps every Go-side guarantee around it:
// always-blocked addresses, private destinations, the mode, name
// normalization, SNI/IP verification and learned-IP lookups (see Decide).
// docs/rego.md is the contract for policy authors.

// Reasons for Rego evaluation failures. Both deny: a policy that cannot
// answer lets nothing through.
const (
	ReasonRegoError     = "rego_error"     // evaluation failed, timed out, or returned a malformed decision
	ReasonRegoUndefined = "rego_undefined" // data.forge.egress.decision is undefined for the input
)

// RegoSuffix selects the Rego engine in Load.
const RegoSuffix = ".rego"

const (
	// regoEvalTimeout bounds one decision. A decision is a few map probes
	// (tens to a hundred microseconds), but the bound is wall time: on a
	// starved 2-core machine 50 ms was seen to expire and falsely deny. At
	// 250 ms a pathological policy still denies promptly, and one slow
	// decision holds one of the policy stage's workers, not the pipeline.
	regoEvalTimeout = 250 * time.Millisecond
	// regoLoadTimeout bounds preparing the query and reading the constant
	// settings at load: they run once, but a settings rule could still loop.
	regoLoadTimeout = 5 * time.Second
	// maxRegoReasonLen and maxRegoRuleLen bound what a decision may put in
	// audit events: a reason is one word like the built-in ones; a rule is
	// at most an allowed_tcp entry with a 253-octet name.
	maxRegoReasonLen = 64
	maxRegoRuleLen   = 300
	// maxRegoErrorsShown bounds the compile errors quoted in a load error.
	maxRegoErrorsShown = 10
)

// regoPackage is the package every policy module must declare.
const regoPackage = "data.forge.egress"

// Names the supervisor reads in package forge.egress.
const (
	regoDecision        = "decision"
	regoMode            = "mode"
	regoVerifySNIIP     = "verify_sni_ip"
	regoAllowPrivateIPs = "allow_private_ips"
	regoAllowedCIDRs    = "allowed_private_cidrs"
)

// regoDeniedBuiltins are builtins a policy may not call: they reach the
// network (the supervisor's own sockets bypass interception, so a policy
// could exfiltrate or stall on them) or read the supervisor's environment.
var regoDeniedBuiltins = []string{"http.send", "net.lookup_ip_addr", "opa.runtime"}

// Input kinds.
const (
	regoKindTCP = "tcp"
	regoKindDNS = "dns"
)

// regoEngine is a compiled Rego policy whose decision query is prepared
// once at load. It is immutable and safe for concurrent use.
type regoEngine struct {
	file  string
	rules int // rules in the module, for RuleCount
	query rego.PreparedEvalQuery
	// needsProcess: the module reads input.process, so every question
	// needs the asking process's identity (see process.go).
	needsProcess bool
}

// ParseRego compiles a Rego policy module. filename names the module in
// error messages (compile errors read "filename:line:col: ..."). The
// decision query is prepared here, once; the constant settings (mode,
// verify_sni_ip, allow_private_ips, allowed_private_cidrs) are read here too.
func ParseRego(filename string, src []byte) (*Policy, error) {
	p, err := parseRego(filename, src)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return p, nil
}

func parseRego(filename string, src []byte) (*Policy, error) {
	caps := regoCapabilities()
	mod, err := ast.ParseModuleWithOpts(filename, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1, Capabilities: caps})
	if err != nil {
		return nil, regoCompileError(filename, err)
	}
	if mod == nil {
		return nil, fmt.Errorf("%s: empty module; it must start with \"package forge.egress\"", filename)
	}
	if got := mod.Package.Path.String(); got != regoPackage {
		return nil, fmt.Errorf("%s: package %s; the supervisor reads package forge.egress, write \"package forge.egress\"",
			locate(filename, mod.Package.Location), strings.TrimPrefix(got, "data."))
	}
	compiler := ast.NewCompiler().WithCapabilities(caps)
	compiler.Compile(map[string]*ast.Module{filename: mod})
	if compiler.Failed() {
		return nil, regoCompileError(filename, compiler.Errors)
	}
	if len(compiler.GetRulesExact(regoRef(regoDecision))) == 0 {
		return nil, fmt.Errorf(`%s: no rule "decision"; define decision := {"allow": ..., "reason": ..., "rule": ...} (see docs/rego.md)`, filename)
	}

	ctx, cancel := context.WithTimeout(context.Background(), regoLoadTimeout)
	defer cancel()
	p := &Policy{
		mode:        ModeAllowlist,
		verifySNIIP: true,
		names:       newNameTable(),
		ips:         make(map[netip.Addr]*portRules),
	}
	if err := p.readRegoSettings(ctx, filename, compiler); err != nil {
		return nil, err
	}
	query, err := rego.New(
		rego.Query(regoRef(regoDecision).String()),
		rego.Compiler(compiler),
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: prepare decision query: %w", filename, err)
	}
	p.rego = &regoEngine{file: filename, rules: len(mod.Rules), query: query, needsProcess: readsProcess(mod)}
	return p, nil
}

// regoCapabilities are this OPA version's builtins less regoDeniedBuiltins,
// so a policy calling one fails to compile with the line that calls it.
func regoCapabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = slices.DeleteFunc(slices.Clone(caps.Builtins), func(b *ast.Builtin) bool {
		return slices.Contains(regoDeniedBuiltins, b.Name)
	})
	return caps
}

func regoRef(name string) ast.Ref {
	return ast.MustParseRef(regoPackage + "." + name)
}

// regoCompileError lists parse and compile errors as "file:line:col: code:
// message", so the startup error points at the line to fix.
func regoCompileError(filename string, err error) error {
	var errs ast.Errors
	var one *ast.Error
	switch {
	case errors.As(err, &errs) && len(errs) > 0:
	case errors.As(err, &one):
		errs = ast.Errors{one}
	default:
		return fmt.Errorf("%s: %w", filename, err)
	}
	errs.Sort()
	var b strings.Builder
	for i, e := range errs {
		if i == maxRegoErrorsShown {
			fmt.Fprintf(&b, "\n  … and %d more", len(errs)-i)
			break
		}
		if i > 0 {
			b.WriteString("\n  ")
		}
		fmt.Fprintf(&b, "%s: %s: %s", locate(filename, e.Location), e.Code, e.Message)
	}
	return errors.New(b.String())
}

// locate renders a location as file:line:col (just file when the error
// has no line, like "empty module").
func locate(filename string, loc *ast.Location) string {
	if loc == nil || loc.Row == 0 {
		return filename
	}
	file := loc.File
	if file == "" {
		file = filename
	}
	return fmt.Sprintf("%s:%d:%d", file, loc.Row, loc.Col)
}

// readRegoSettings reads the optional constant settings. Each is evaluated
// once, without input: a setting that depends on input is undefined here,
// and that is a load error rather than a silent default.
func (p *Policy) readRegoSettings(ctx context.Context, filename string, c *ast.Compiler) error {
	if v, ok, err := regoConstant(ctx, filename, c, regoMode); err != nil {
		return err
	} else if ok {
		s, isString := v.(string)
		switch m := Mode(s); {
		case !isString:
			return regoSettingError(filename, c, regoMode, `must be a string: "allowlist", "deny-all" or "dev-open"`)
		case m == ModeAllowlist, m == ModeDenyAll, m == ModeDevOpen:
			p.mode = m
		default:
			return regoSettingError(filename, c, regoMode, fmt.Sprintf(`%q is not a mode; use "allowlist", "deny-all" or "dev-open"`, s))
		}
	}
	for _, flag := range []struct {
		name string
		dst  *bool
	}{{regoVerifySNIIP, &p.verifySNIIP}, {regoAllowPrivateIPs, &p.allowPrivateIPs}} {
		v, ok, err := regoConstant(ctx, filename, c, flag.name)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		b, isBool := v.(bool)
		if !isBool {
			return regoSettingError(filename, c, flag.name, "must be true or false")
		}
		*flag.dst = b
	}
	v, ok, err := regoConstant(ctx, filename, c, regoAllowedCIDRs)
	if err != nil || !ok {
		return err
	}
	list, isList := v.([]any)
	if !isList {
		return regoSettingError(filename, c, regoAllowedCIDRs, `must be a list or set of CIDR strings like ["10.0.0.0/8"]`)
	}
	if len(list) > maxListEntries {
		return regoSettingError(filename, c, regoAllowedCIDRs, fmt.Sprintf("%d entries, at most %d are accepted", len(list), maxListEntries))
	}
	for i, item := range list {
		s, isString := item.(string)
		if !isString {
			return regoSettingError(filename, c, regoAllowedCIDRs, fmt.Sprintf("entry %d must be a string", i))
		}
		prefix, warning, err := parseCIDR(s)
		if err != nil {
			return regoSettingError(filename, c, regoAllowedCIDRs, fmt.Sprintf("%q: %v", s, err))
		}
		if warning != "" {
			p.warnings = append(p.warnings, fmt.Sprintf("%s[%d] %q: %s", regoAllowedCIDRs, i, s, warning))
		}
		p.cidrs.add(prefix, cidrRulePrefix+prefix.String())
	}
	return nil
}

// regoConstant evaluates data.forge.egress.<name> without input. ok is
// false when the module defines no such rule.
func regoConstant(ctx context.Context, filename string, c *ast.Compiler, name string) (v any, ok bool, err error) {
	if len(c.GetRulesExact(regoRef(name))) == 0 {
		return nil, false, nil
	}
	rs, err := rego.New(rego.Query(regoRef(name).String()), rego.Compiler(c), rego.StrictBuiltinErrors(true)).Eval(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("%s: evaluate %s: %w", filename, name, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, false, regoSettingError(filename, c, name, "is undefined without input; settings must be constants like "+name+" := ...")
	}
	return rs[0].Expressions[0].Value, true, nil
}

func regoSettingError(filename string, c *ast.Compiler, name, problem string) error {
	where := filename
	if rules := c.GetRulesExact(regoRef(name)); len(rules) > 0 {
		where = locate(filename, rules[0].Location)
	}
	return fmt.Errorf("%s: %s %s", where, name, problem)
}

// describe is Policy.Describe for a Rego policy.
func (e *regoEngine) describe(p *Policy) string {
	s := fmt.Sprintf("mode=%s engine=rego file=%s rules=%d cidrs=%d allow_private_ips=%t verify_sni_ip=%t",
		p.mode, e.file, e.rules, p.cidrs.count(), p.allowPrivateIPs, p.verifySNIIP)
	if p.mode != ModeAllowlist {
		s += fmt.Sprintf(" (decision inert in %s mode)", p.mode)
	}
	return s
}
