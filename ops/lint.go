package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/forge/forge-supervisor/policy"
)

// Finding levels.
const (
	LevelError   = "error"   // the policy does not load: the supervisor would not start
	LevelWarning = "warning" // loads, but an entry is inert, redundant or broader than meant
	LevelInfo    = "info"
)

// Finding is one thing lint reports.
type Finding struct {
	Level   string `json:"level"`
	Entry   string `json:"entry,omitempty"` // the policy entry concerned, as written
	Message string `json:"message"`
}

// PortOpening is one line of "ports opened": which port, to what.
type PortOpening struct {
	Port string   `json:"port"` // a number, "80,443" or "*"
	To   []string `json:"to"`
}

// LintReport is what lint prints.
type LintReport struct {
	Path     string        `json:"path"`
	Summary  string        `json:"summary,omitempty"` // policy.Describe
	Findings []Finding     `json:"findings"`
	Ports    []PortOpening `json:"ports_opened,omitempty"`
}

// probeLabel prefixes the name lint asks about for a wildcard rule: a
// label no real rule names.
const probeLabel = "forge-lint-probe"

// Loaded is a policy as the tools read it: compiled, and for an allowlist
// its JSON document (nil for Rego), which the entry-by-entry checks need.
type Loaded struct {
	Policy    *policy.Policy
	Allowlist []byte
	// Derived says the allowlist was rendered from another file (a
	// forge.yaml): lint reads it, suggest cannot patch it.
	Derived bool
}

// Loader loads the policy at path for the tools. LoadFile reads
// egress_allowlist.json and Rego; main's forge.yaml reader renders the
// project's allowlist as JSON (Derived) and fits the same shape.
type Loader func(path string) (Loaded, error)

// LoadFile is the Loader of the files policy.Load reads.
func LoadFile(path string) (Loaded, error) {
	p, err := policy.Load(path)
	if err != nil {
		return Loaded{}, err
	}
	if strings.HasSuffix(path, policy.RegoSuffix) {
		return Loaded{Policy: p}, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Loaded{}, fmt.Errorf("re-read %s: %w", path, err)
	}
	return Loaded{Policy: p, Allowlist: data}, nil
}

// Lint loads the policy at path and reports errors, inert entries,
// redundant rules, over-broad wildcards and the ports the policy opens.
// It returns ExitFail when the policy does not load.
func Lint(w io.Writer, path string, load Loader, asJSON bool) int {
	r := lint(path, load)
	if asJSON {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Fprintf(w, "%s\n", b)
	} else {
		writeLintText(w, r)
	}
	for _, f := range r.Findings {
		if f.Level == LevelError {
			return ExitFail
		}
	}
	return ExitOK
}

func lint(path string, load Loader) LintReport {
	r := LintReport{Path: path, Findings: []Finding{}}
	l, err := load(path)
	if err != nil {
		r.Findings = append(r.Findings, Finding{Level: LevelError, Message: err.Error()})
		return r
	}
	r.Summary = l.Policy.Describe()
	// What the loader took other than as written (entries skipped, rules
	// that allow nothing, unknown fields): the runtime logs these as
	// policy_warning, lint reports them.
	for _, w := range l.Policy.Warnings() {
		if w != policy.WarnPrivateDenied { // a default, said at startup; lint judges entries
			r.add(LevelWarning, "", "%s", w)
		}
	}
	if l.Allowlist == nil {
		lintRego(&r, l.Policy)
		return r
	}
	a, err := readAllowlist(l.Allowlist)
	if err != nil {
		r.Findings = append(r.Findings, Finding{Level: LevelError, Message: fmt.Sprintf("%s: %v", path, err)})
		return r
	}
	lintAllowlist(&r, l.Policy, a)
	return r
}

func (r *LintReport) add(level, entry, format string, args ...any) {
	r.Findings = append(r.Findings, Finding{Level: level, Entry: entry, Message: fmt.Sprintf(format, args...)})
}

func lintRego(r *LintReport, p *policy.Policy) {
	if p.Mode() != policy.ModeAllowlist {
		r.add(LevelWarning, "mode", "mode %s: the decision rule is never asked", p.Mode())
	}
	if p.NeedsProcess() {
		r.add(LevelInfo, "input.process", "the policy reads input.process: the owner of every connection and DNS query is looked up, and a question from an unidentified process is denied (process_unknown)")
	}
	r.add(LevelInfo, "", "redundant rules, over-broad wildcards and opened ports are analysed for egress_allowlist.json only; ask a Rego policy with `forge-supervisor check`")
}

func lintAllowlist(r *LintReport, p *policy.Policy, a *allowlist) {
	domains := a.domainRules()
	tcp := a.strings(fieldAllowedTCP)
	cidrs := a.strings(fieldAllowedCIDRs)
	mode := p.Mode()

	// Inert entries: rules the mode never consults.
	switch mode {
	case policy.ModeDenyAll:
		if n := len(domains) + len(tcp) + len(cidrs); n > 0 {
			r.add(LevelWarning, "mode", "mode deny-all denies everything: its %d domain, allowed_tcp and allowed_private_cidrs entries are inert", n)
		}
	case policy.ModeDevOpen:
		if n := len(domains) + len(tcp); n > 0 {
			r.add(LevelWarning, "mode", "mode dev-open allows every name: its %d domain and allowed_tcp entries are inert", n)
		}
	}
	for _, f := range domainFields {
		lintDuplicates(r, f, a.strings(f))
	}
	lintDuplicates(r, fieldAllowedTCP, tcp)
	if mode != policy.ModeAllowlist {
		r.Ports = portsOpened(mode, domains, tcp, cidrs)
		return
	}
	// Redundancy is judged one entry at a time against what is left: an
	// entry found redundant stays out, so of two entries covering each
	// other only the first is reported.
	left := a
	for _, rule := range domains {
		if suffix, ok := strings.CutPrefix(rule, "*."); ok {
			if ps, _ := publicsuffix.PublicSuffix(suffix); ps == suffix {
				r.add(LevelWarning, rule, "over-broad: allows every name under the public suffix %q, that is any site registered there", suffix)
			}
		}
		left = lintRedundant(r, left, rule, domainFields, probeFor(rule), 80, 443)
	}
	for _, entry := range tcp {
		host, port, ok := splitTCP(entry)
		if !ok {
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			v := p.Decide(context.Background(), policy.Request{IP: ip, Port: probePort(port)}, nil)
			if !v.Allow {
				r.add(LevelWarning, entry, "inert: the connection is denied before allowed_tcp is read (%s)", v.Reason)
				continue
			}
		}
		if strings.HasPrefix(host, "*.") && host != "*" {
			if ps, _ := publicsuffix.PublicSuffix(host[2:]); ps == host[2:] {
				r.add(LevelWarning, entry, "over-broad: allows every name under the public suffix %q", host[2:])
			}
		}
		left = lintRedundant(r, left, entry, []string{fieldAllowedTCP}, probeFor(host), probePort(port))
	}
	if a.boolean(fieldAllowPrivateIPs) && len(cidrs) == 0 {
		r.add(LevelWarning, fieldAllowPrivateIPs, "allow_private_ips lets allowed names resolve to private addresses (DNS rebinding protection off); allowed_private_cidrs is the narrower way")
	}
	r.Ports = portsOpened(mode, domains, tcp, cidrs)
}

func lintDuplicates(r *LintReport, field string, list []string) {
	seen := map[string]bool{}
	for _, e := range list {
		if seen[e] {
			r.add(LevelWarning, e, "listed twice in %s", field)
		}
		seen[e] = true
	}
}

// lintRedundant reports entry when the policy without it still allows
// the probe on every port given: another rule covers it. It returns the
// document to judge the next entry against: a without entry when entry
// was redundant, else a.
func lintRedundant(r *LintReport, a *allowlist, entry string, fields []string, probe string, ports ...uint16) *allowlist {
	if probe == "" {
		return a
	}
	doc := a.without(entry, fields...)
	reduced, err := policy.Parse(doc)
	if err != nil {
		return a
	}
	var by []string
	for _, port := range ports {
		v := reduced.CheckName(probe, port)
		if !v.Allow {
			return a
		}
		if !slices.Contains(by, v.Rule) {
			by = append(by, v.Rule)
		}
	}
	r.add(LevelWarning, entry, "redundant: %s is already allowed by %s", probe, quoteAll(by))
	if next, err := readAllowlist(doc); err == nil {
		return next
	}
	return a
}

func quoteAll(rules []string) string {
	q := make([]string, len(rules))
	for i, s := range rules {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, " and ")
}

// probeFor is the name lint asks about for a rule: the name itself, or a
// name under a wildcard; "" for an IP literal.
func probeFor(host string) string {
	if suffix, ok := strings.CutPrefix(host, "*."); ok {
		return probeLabel + "." + suffix
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return ""
	}
	return host
}

// probePort is the port lint asks about for an allowed_tcp port field;
// for "*", one no other kind of rule opens.
func probePort(port string) uint16 {
	if n, err := strconv.ParseUint(port, 10, 16); err == nil {
		return uint16(n)
	}
	return 1
}

// splitTCP splits an allowed_tcp entry "host:port" ("[v6]:port", port may
// be "*").
func splitTCP(entry string) (host, port string, ok bool) {
	i := strings.LastIndexByte(entry, ':')
	if i < 0 {
		return "", "", false
	}
	return strings.Trim(entry[:i], "[]"), entry[i+1:], true
}

// portsOpened lists what the policy opens, by port.
func portsOpened(mode policy.Mode, domains, tcp, cidrs []string) []PortOpening {
	switch mode {
	case policy.ModeDenyAll:
		return nil
	case policy.ModeDevOpen:
		return []PortOpening{{Port: "*", To: []string{"every public destination (dev-open)"}}}
	}
	byPort := map[string][]string{}
	if len(domains) > 0 {
		byPort["80,443"] = []string{fmt.Sprintf("%d domain rules", len(domains))}
	}
	for _, e := range tcp {
		host, port, ok := splitTCP(e)
		if ok {
			byPort[port] = append(byPort[port], host)
		}
	}
	for _, c := range cidrs {
		byPort["*"] = append(byPort["*"], fieldAllowedCIDRs+" "+c)
	}
	keys := make([]string, 0, len(byPort))
	for k := range byPort {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int { return portOrder(x) - portOrder(y) })
	out := make([]PortOpening, 0, len(keys))
	for _, k := range keys {
		out = append(out, PortOpening{Port: k, To: byPort[k]})
	}
	return out
}

func portOrder(p string) int {
	switch p {
	case "80,443":
		return 0
	case "*":
		return 1 << 20
	}
	n, _ := strconv.Atoi(p)
	return n + 1
}

func writeLintText(w io.Writer, r LintReport) {
	fmt.Fprintf(w, "%s\n", r.Path)
	if r.Summary != "" {
		fmt.Fprintf(w, "  %s\n", r.Summary)
	}
	counts := map[string]int{}
	for _, f := range r.Findings {
		counts[f.Level]++
		if f.Entry != "" {
			fmt.Fprintf(w, "%s: %s: %s\n", f.Level, f.Entry, f.Message)
		} else {
			fmt.Fprintf(w, "%s: %s\n", f.Level, f.Message)
		}
	}
	if len(r.Ports) > 0 {
		fmt.Fprintf(w, "ports opened:\n")
		for _, p := range r.Ports {
			fmt.Fprintf(w, "  %-8s %s\n", p.Port, strings.Join(p.To, ", "))
		}
	}
	fmt.Fprintf(w, "%d errors, %d warnings\n", counts[LevelError], counts[LevelWarning])
}
