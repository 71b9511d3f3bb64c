package policy

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// regoResolver is the DNS proxy's knowledge for Rego tests: which names
// resolve to which addresses, and what was learned per address.
type regoResolver struct {
	resolves map[string][]netip.Addr
	learned  map[netip.Addr][]string
}

func (f regoResolver) Resolves(_ context.Context, name string, ip netip.Addr) bool {
	for _, a := range f.resolves[name] {
		if a == ip {
			return true
		}
	}
	return false
}

func (f regoResolver) NamesFor(ip netip.Addr) []string { return f.learned[ip] }

func mustLoadRego(t testing.TB, path string) *Policy {
	t.Helper()
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustParseRego(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := ParseRego("inline.rego", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// generated turns a JSON policy into its generated Rego twin.
func generated(t testing.TB, p *Policy) *Policy {
	t.Helper()
	src, err := GenerateRego(p)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := ParseRego("generated.rego", src)
	if err != nil {
		t.Fatalf("generated module does not load: %v\n%s", err, src)
	}
	return rp
}

// differentialDocs are JSON policies whose generated Rego must decide
// exactly as they do: every rule kind, each mode, and the flags.
var differentialDocs = map[string]string{
	"allowlist": `{
	  "profile": "standard", "mode": "allowlist",
	  "allowed_domains": ["api.example.com", "*.github.com", "bücher.example", "ssh.example.com"],
	  "tool_domains": ["api.tavily.com", "*.deep.zone.example"],
	  "all_domains": ["api.example.com", "*.github.com", "api.tavily.com"],
	  "allowed_tcp": ["db.example.com:5432", "*.svc.example:8443", "ssh.example.com:*",
	                  "*.zone.example:22", "api.example.com:8443", "*.github.com:22",
	                  "198.51.100.7:5432", "198.51.100.7:*", "[2001:db8::7]:22", "10.1.0.9:6379"],
	  "allowed_private_cidrs": ["10.1.0.0/16", "fd00:1234::/32"]
	}`,
	"allowlist_no_verify_private_ok": `{
	  "mode": "allowlist", "verify_sni_ip": false, "allow_private_ips": true,
	  "allowed_domains": ["api.example.com", "*.github.com", "*.com"],
	  "allowed_tcp": ["10.2.0.1:5432", "db.example.com:*"]
	}`,
	"dev_open": `{"mode": "dev-open", "allowed_domains": ["api.example.com"], "allowed_private_cidrs": ["10.1.0.0/16"]}`,
	"deny_all": `{"mode": "deny-all", "allowed_domains": ["api.example.com"], "allowed_tcp": ["198.51.100.7:5432"]}`,
}

// The input table: names that hit exact rules, wildcards at one and more
// labels, wildcard apexes, misses, non-canonical spellings, IP literals and
// invalid names; public, rule, private, CIDR and always-blocked addresses;
// web, allowed_tcp and unlisted ports.
var (
	diffNames = []string{
		"", "api.example.com", "API.Example.COM.", "x.api.example.com", "example.com",
		"github.com", "a.github.com", "a.b.github.com", "db.example.com", "x.svc.example",
		"a.b.svc.example", "svc.example", "ssh.example.com", "api.tavily.com", "nope.test",
		"bücher.example", "xn--bcher-kva.example", "a.deep.zone.example", "deep.zone.example",
		"x.zone.example", "198.51.100.7", "[2001:db8::7]", "127.1", "bad name", "a..b", "evil.test",
	}
	diffIPs = []netip.Addr{
		pub1, pub3, pub7, world6, netip.MustParseAddr("::ffff:198.51.100.7"), pub6,
		netip.MustParseAddr("10.1.0.9"), netip.MustParseAddr("10.2.0.1"), netip.MustParseAddr("fd00:1234::5"),
		netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("127.0.0.1"), {},
	}
	diffPorts = []uint16{0, 22, 80, 443, 5432, 6379, 8443, 9999}
)

func diffResolver() regoResolver {
	return regoResolver{
		resolves: map[string][]netip.Addr{
			"api.example.com":       {pub1, pub6, netip.MustParseAddr("10.1.0.9")},
			"a.github.com":          {pub1, pub7},
			"db.example.com":        {pub7, netip.MustParseAddr("10.2.0.1")},
			"ssh.example.com":       {pub1},
			"x.svc.example":         {pub1},
			"xn--bcher-kva.example": {pub1},
			"a.deep.zone.example":   {world6},
		},
		learned: map[netip.Addr][]string{
			pub1:   {"evil.test", "bad name", "api.example.com"},
			pub3:   {"evil.test"},
			pub7:   {"db.example.com", "a.github.com"},
			world6: {"A.Deep.Zone.Example."},
		},
	}
}

// TestGeneratedRegoMatchesJSON is the differential test: for every input
// the JSON policy and its generated Rego give the same verdict, Allow,
// Reason and Rule, through Decide (with and without a resolver) and
// CheckName.
func TestGeneratedRegoMatchesJSON(t *testing.T) {
	ctx := context.Background()
	res := diffResolver()
	compared := 0
	for docName, doc := range differentialDocs {
		jp := mustParse(t, doc)
		rp := generated(t, jp)
		if jp.Mode() != rp.Mode() || jp.VerifySNIIP() != rp.VerifySNIIP() || jp.AllowPrivateIPs() != rp.AllowPrivateIPs() {
			t.Errorf("%s: settings differ: JSON %s, Rego %s", docName, jp.Describe(), rp.Describe())
		}
		for _, name := range diffNames {
			for _, port := range diffPorts {
				if want, got := jp.CheckName(name, port), rp.CheckName(name, port); want != got {
					t.Errorf("%s: CheckName(%q, %d): JSON %+v, Rego %+v", docName, name, port, want, got)
				}
				compared++
				for _, ip := range diffIPs {
					req := Request{Name: name, IP: ip, Port: port}
					for _, r := range []Resolver{res, nil} {
						want, got := jp.Decide(ctx, req, r), rp.Decide(ctx, req, r)
						if want != got {
							t.Errorf("%s: Decide(%+v, resolver=%t): JSON %+v, Rego %+v", docName, req, r != nil, want, got)
						}
						compared++
					}
				}
			}
		}
	}
	if compared < 200 {
		t.Fatalf("compared only %d inputs", compared)
	}
	t.Logf("%d inputs decided alike", compared)
}

func TestGenerateRego(t *testing.T) {
	jp := mustParse(t, differentialDocs["allowlist"])
	a, err := GenerateRego(jp)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateRego(jp)
	if string(a) != string(b) {
		t.Error("GenerateRego is not deterministic")
	}
	for _, want := range []string{
		"package forge.egress\n", `mode := "allowlist"`, "verify_sni_ip := true", "allow_private_ips := false",
		`allowed_private_cidrs := ["10.1.0.0/16", "fd00:1234::/32"]`,
		`"github.com": {"first": "*.github.com", "web": "*.github.com", "ports": {22: "allowed_tcp:*.github.com:22"}}`,
		`"198.51.100.7": {"first": "allowed_tcp:198.51.100.7:5432", "any": "allowed_tcp:198.51.100.7:*", "ports": {5432: "allowed_tcp:198.51.100.7:5432"}}`,
		`"xn--bcher-kva.example": {"first": "xn--bcher-kva.example"`,
	} {
		if !strings.Contains(string(a), want) {
			t.Errorf("generated module lacks %q", want)
		}
	}
	if _, err := GenerateRego(nil); err == nil {
		t.Error("GenerateRego(nil): no error")
	}
	if _, err := GenerateRego(generated(t, jp)); err == nil || !strings.Contains(err.Error(), "already a Rego policy") {
		t.Errorf("GenerateRego(rego policy) = %v", err)
	}
	empty := generated(t, mustParse(t, `{"mode": "allowlist"}`))
	if v := empty.CheckName("api.example.com", 0); v != (Verdict{Reason: ReasonNotAllowed}) {
		t.Errorf("empty generated policy: %+v", v)
	}
}

// TestHandWrittenRego decides with testdata/rego/corp.rego: its own
// reasons, plus the Go-side steps around it.
func TestHandWrittenRego(t *testing.T) {
	p := mustLoadRego(t, "testdata/rego/corp.rego")
	res := regoResolver{
		resolves: map[string][]netip.Addr{
			"www.corp.example":     {pub1, netip.MustParseAddr("10.20.3.4")},
			"bastion.corp.example": {pub3},
		},
		learned: map[netip.Addr][]string{pub1: {"evil.test", "www.corp.example"}},
	}
	cache := netip.MustParseAddr("10.20.3.4")
	tests := []struct {
		name string
		req  Request
		want Verdict
	}{
		{"https to a corp name", Request{"www.corp.example", pub1, 443}, Verdict{true, "corp_https", "corp_suffixes"}},
		{"corp apex", Request{"corp.example", pub1, 443}, Verdict{Reason: ReasonSNIIPMismatch, Rule: "corp_suffixes"}},
		{"normalized before Rego", Request{"WWW.Corp.Example.", pub1, 443}, Verdict{true, "corp_https", "corp_suffixes"}},
		{"corp name, other port", Request{"www.corp.example", pub1, 80}, Verdict{Reason: "not_corp"}},
		{"suffix lookalike", Request{"evilcorp.example", pub1, 443}, Verdict{Reason: "not_corp"}},
		{"bastion ssh", Request{"bastion.corp.example", pub3, 22}, Verdict{true, "bastion_ssh", "bastion"}},
		{"claimed name on a foreign address", Request{"www.corp.example", pub3, 443}, Verdict{Reason: ReasonSNIIPMismatch, Rule: "corp_suffixes"}},
		{"postgres by address, no name", Request{"", pub7, 5432}, Verdict{true, "postgres_by_ip", "pg"}},
		{"postgres by address, unverifiable name", Request{"www.corp.example", pub7, 5432}, Verdict{true, "postgres_by_ip", "pg"}},
		{"postgres by address, invalid name", Request{"bad name", pub7, 5432}, Verdict{true, "postgres_by_ip", "pg"}},
		{"https by address, unverifiable corp name", Request{"www.corp.example", pub7, 443}, Verdict{Reason: ReasonSNIIPMismatch, Rule: "corp_suffixes"}},
		{"no name, learned corp name, web port", Request{"", pub1, 443}, Verdict{Reason: "not_corp"}},
		{"no name, nothing learned", Request{"", pub3, 443}, Verdict{Reason: "not_corp"}},
		{"IP-literal name is no name", Request{"198.51.100.7", pub7, 5432}, Verdict{true, "postgres_by_ip", "pg"}},
		{"IP-literal name, denied", Request{"198.51.100.3", pub3, 443}, Verdict{Reason: ReasonIPLiteral}},
		{"invalid name", Request{"bad name", pub1, 443}, Verdict{Reason: ReasonInvalidName}},
		{"metadata", Request{"www.corp.example", netip.MustParseAddr("169.254.169.254"), 443}, Verdict{Reason: ReasonMetadata}},
		{"loopback", Request{"www.corp.example", netip.MustParseAddr("127.0.0.1"), 443}, Verdict{Reason: ReasonBlockedRange}},
		{"private", Request{"www.corp.example", netip.MustParseAddr("10.9.0.1"), 443}, Verdict{Reason: ReasonPrivateIP}},
		// allowed_private_cidrs exempt from the private-IP block; Rego still decides (issue #12).
		{"allowed_private_cidrs exempt", Request{"www.corp.example", cache, 443}, Verdict{true, "corp_https", "corp_suffixes"}},
		{"allowed_private_cidrs grant nothing", Request{"", cache, 8080}, Verdict{Reason: "not_corp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Decide(context.Background(), tt.req, res); got != tt.want {
				t.Errorf("Decide(%+v) = %+v, want %+v", tt.req, got, tt.want)
			}
		})
	}
	for name, want := range map[string]Verdict{
		"www.corp.example":  {true, "corp_dns", "corp_suffixes"},
		"EXAMPLE.ORG.":      {true, "corp_dns", "corp_suffixes"},
		"github.com":        {Reason: "not_corp"},
		"198.51.100.7":      {Reason: ReasonIPLiteral},
		"bad!.corp.example": {Reason: ReasonInvalidName},
	} {
		if got := p.CheckName(name, 0); got != want {
			t.Errorf("CheckName(%q, 0) = %+v, want %+v", name, got, want)
		}
	}
	if got, want := p.RuleCount(), 10+1; got != want {
		t.Errorf("RuleCount = %d, want %d", got, want)
	}
	if len(p.Names()) != 0 {
		t.Errorf("Names = %v, want none for Rego", p.Names())
	}
}

// TestRegoSeesNormalizedInput uses a policy that echoes its input: names
// arrive normalized, IP literals never arrive as names, addresses are
// canonical, and each question has the documented kind and port.
func TestRegoSeesNormalizedInput(t *testing.T) {
	p := mustLoadRego(t, "testdata/rego/echo.rego")
	ctx := context.Background()
	learnedOnly := regoResolver{learned: map[netip.Addr][]string{pub3: {"Learned.Example."}}}
	tests := []struct {
		name string
		req  Request
		r    Resolver
		want Verdict
	}{
		{"name normalized", Request{"API.Example.COM.", pub1, 443}, nil, Verdict{true, "tcp", "api.example.com|198.51.100.1|443"}},
		{"unicode to punycode", Request{"Bücher.example", pub1, 443}, nil, Verdict{true, "tcp", "xn--bcher-kva.example|198.51.100.1|443"}},
		{"IP literal dropped", Request{"198.51.100.1", pub1, 443}, nil, Verdict{true, "tcp", "|198.51.100.1|443"}},
		{"IPv4-mapped unmapped", Request{"", netip.MustParseAddr("::ffff:198.51.100.1"), 8443}, nil, Verdict{true, "tcp", "|198.51.100.1|8443"}},
		{"IPv6 canonical", Request{"", netip.MustParseAddr("2001:DB8:0:0::1"), 22}, nil, Verdict{true, "tcp", "|2001:db8::1|22"}},
	}
	for _, tt := range tests {
		if got := p.Decide(ctx, tt.req, tt.r); got != tt.want {
			t.Errorf("%s: Decide(%+v) = %+v, want %+v", tt.name, tt.req, got, tt.want)
		}
	}
	if got, want := p.CheckName("WWW.Example.COM", 0), (Verdict{true, "dns", "www.example.com||0"}); got != want {
		t.Errorf("CheckName(dns) = %+v, want %+v", got, want)
	}
	if got, want := p.CheckName("www.example.com", 8443), (Verdict{true, "tcp", "www.example.com||8443"}); got != want {
		t.Errorf("CheckName(tcp port) = %+v, want %+v", got, want)
	}

	// Learned names are asked as tcp with the name, the address and the port.
	learner := mustParseRego(t, `package forge.egress
decision := {"allow": input.name == "learned.example", "reason": "seen", "rule": sprintf("%s|%s|%d", [input.name, input.ip, input.port])}`)
	want := Verdict{true, ReasonLearnedIP, "learned.example|198.51.100.3|8443"}
	if got := learner.Decide(ctx, Request{IP: pub3, Port: 8443}, learnedOnly); got != want {
		t.Errorf("learned: %+v, want %+v", got, want)
	}
}

// TestGoGuaranteesWrapRego: a policy that allows everything still cannot
// open what Go always enforces.
func TestGoGuaranteesWrapRego(t *testing.T) {
	p := mustLoadRego(t, "testdata/rego/allow_all.rego")
	ctx := context.Background()
	res := regoResolver{resolves: map[string][]netip.Addr{"api.example.com": {pub1}}}
	allowed := Verdict{true, "rego_allows", "everything"}
	tests := []struct {
		req  Request
		want Verdict
	}{
		{Request{"api.example.com", pub1, 443}, allowed},
		{Request{"", pub3, 9999}, allowed},
		{Request{"api.example.com", pub3, 443}, allowed}, // unverified name, but the address alone is allowed
		{Request{"api.example.com", netip.MustParseAddr("169.254.169.254"), 80}, Verdict{Reason: ReasonMetadata}},
		{Request{"", netip.MustParseAddr("fd00:ec2::254"), 80}, Verdict{Reason: ReasonMetadata}},
		{Request{"", netip.MustParseAddr("127.0.0.1"), 80}, Verdict{Reason: ReasonBlockedRange}},
		{Request{"", netip.MustParseAddr("224.0.0.1"), 80}, Verdict{Reason: ReasonBlockedRange}},
		{Request{"", netip.Addr{}, 80}, Verdict{Reason: ReasonBlockedRange}},
		{Request{"", pub1, 0}, Verdict{Reason: ReasonBlockedRange}},
		{Request{"", netip.MustParseAddr("192.168.1.1"), 80}, Verdict{Reason: ReasonPrivateIP}},
		{Request{"", netip.MustParseAddr("64:ff9b::a00:1"), 80}, Verdict{Reason: ReasonPrivateIP}}, // NAT64 of 10.0.0.1
		{Request{"a b", pub1, 443}, allowed},                                                       // invalid name, but the address alone is allowed
	}
	for _, tt := range tests {
		if got := p.Decide(ctx, tt.req, res); got != tt.want {
			t.Errorf("Decide(%+v) = %+v, want %+v", tt.req, got, tt.want)
		}
	}
	if got := p.CheckName("127.1", 0); got != (Verdict{Reason: ReasonIPLiteral}) {
		t.Errorf("CheckName(127.1) = %+v", got)
	}

	// Verification cannot be skipped by the policy when the address alone
	// is not allowed.
	byName := mustParseRego(t, `package forge.egress
decision := {"allow": input.name != "", "reason": "named", "rule": "r"}`)
	if got, want := byName.Decide(ctx, Request{"api.example.com", pub3, 443}, res), (Verdict{Reason: ReasonSNIIPMismatch, Rule: "r"}); got != want {
		t.Errorf("unverified name: %+v, want %+v", got, want)
	}
	if got, want := byName.Decide(ctx, Request{"api.example.com", pub3, 443}, nil), (Verdict{Reason: ReasonSNIIPMismatch, Rule: "r"}); got != want {
		t.Errorf("nil resolver: %+v, want %+v", got, want)
	}
	if got, want := byName.Decide(ctx, Request{"a b", pub1, 443}, res), (Verdict{Reason: ReasonInvalidName}); got != want {
		t.Errorf("invalid name: %+v, want %+v", got, want)
	}
}

func TestRegoSettings(t *testing.T) {
	p := mustLoadRego(t, "testdata/rego/settings.rego")
	if p.Mode() != ModeDevOpen || p.VerifySNIIP() || !p.AllowPrivateIPs() {
		t.Fatalf("settings not read: %s", p.Describe())
	}
	ctx := context.Background()
	if got := p.Decide(ctx, Request{"", netip.MustParseAddr("10.9.9.9"), 22}, nil); got != (Verdict{Allow: true, Reason: ReasonDevOpen}) {
		t.Errorf("cidr: %+v", got)
	}
	wide := mustLoadRego(t, "testdata/rego/cidr_wide.rego")
	if w := strings.Join(wide.Warnings(), "\n"); !strings.Contains(w, `"0.0.0.0/0"`) || !strings.Contains(w, "every private range") {
		t.Errorf("0.0.0.0/0 in a Rego policy: warnings %q", w)
	}
	if got := p.Decide(ctx, Request{"", pub1, 22}, nil); got != (Verdict{Allow: true, Reason: ReasonDevOpen}) {
		t.Errorf("dev-open: %+v", got)
	}
	if got := p.CheckName("anything.example", 0); got != (Verdict{Allow: true, Reason: ReasonDevOpen}) {
		t.Errorf("dev-open CheckName: %+v", got)
	}
	deny := mustParseRego(t, `package forge.egress
mode := "deny-all"
decision := {"allow": true, "reason": "ignored"}`)
	if got := deny.Decide(ctx, Request{"api.example.com", pub1, 443}, nil); got != (Verdict{Reason: ReasonDenyAll}) {
		t.Errorf("deny-all: %+v", got)
	}
	if got := deny.CheckName("api.example.com", 0); got != (Verdict{Reason: ReasonDenyAll}) {
		t.Errorf("deny-all CheckName: %+v", got)
	}
	if d := p.Describe(); !strings.Contains(d, "engine=rego") || !strings.Contains(d, "mode=dev-open") {
		t.Errorf("Describe = %q", d)
	}
}

// badRego maps each broken module in testdata/rego/bad to what its load
// error must say, beyond the path: the line to fix and the problem.
var badRego = map[string][]string{
	"syntax.rego":          {"syntax.rego:6:", "rego_parse_error"},
	"wrong_package.rego":   {"wrong_package.rego:1:1", "package forge.other", `write "package forge.egress"`},
	"no_decision.rego":     {`no rule "decision"`},
	"http_send.rego":       {"http_send.rego:4:", "undefined function http.send"},
	"unsafe_var.rego":      {"unsafe_var.rego:3:", "var y is unsafe"},
	"mode_invalid.rego":    {"mode_invalid.rego:3:1", `mode "open" is not a mode`},
	"mode_from_input.rego": {"mode_from_input.rego:3:1", "undefined without input"},
	"verify_not_bool.rego": {"verify_not_bool.rego:3:1", "verify_sni_ip must be true or false"},
	"empty.rego":           {"empty module"},
}

func TestBadRegoPolicies(t *testing.T) {
	files, err := filepath.Glob("testdata/rego/bad/*.rego")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad Rego policies found: %v", err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			want, ok := badRego[name]
			if !ok {
				t.Fatalf("%s has no expectation in badRego", path)
			}
			p, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%s) = %s, want an error", path, p.Describe())
			}
			msg := err.Error()
			for _, w := range append([]string{"policy: ", path}, want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q\n does not mention %q", msg, w)
				}
			}
		})
	}
	for name := range badRego {
		if _, err := os.Stat(filepath.Join("testdata/rego/bad", name)); err != nil {
			t.Errorf("expectation for missing file: %v", err)
		}
	}
}

// TestRegoFailuresDeny: whatever goes wrong at evaluation, the answer is a
// deny whose reason says so and whose rule points at the cause.
func TestRegoFailuresDeny(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want Verdict
	}{
		{"undefined decision", `package forge.egress
decision := {"allow": true, "reason": "never", "rule": ""} if input.name == "never.example"`,
			Verdict{Reason: ReasonRegoUndefined, Rule: "rego:inline.rego: decision undefined"}},
		{"conflicting values", `package forge.egress
decision := {"allow": true, "reason": "a", "rule": ""}

decision := {"allow": false, "reason": "b", "rule": ""}`,
			Verdict{Reason: ReasonRegoError, Rule: "rego:inline.rego:4: eval_conflict_error"}},
		{"builtin error", `package forge.egress
decision := {"allow": true, "reason": "x", "rule": sprintf("%d", [to_number(input.name)])}`,
			Verdict{Reason: ReasonRegoError, Rule: "rego:inline.rego:2: eval_builtin_error"}},
		{"not an object", `package forge.egress
decision := "allow"`, Verdict{Reason: ReasonRegoError, Rule: "rego:decision is a string, not an object"}},
		{"array", `package forge.egress
decision := [true]`, Verdict{Reason: ReasonRegoError, Rule: "rego:decision is an array, not an object"}},
		{"allow not boolean", `package forge.egress
decision := {"allow": "yes", "reason": "x", "rule": ""}`, Verdict{Reason: ReasonRegoError, Rule: `rego:decision has no boolean "allow"`}},
		{"allow missing", `package forge.egress
decision := {"allowed": true, "reason": "x", "rule": ""}`, Verdict{Reason: ReasonRegoError, Rule: `rego:decision has no boolean "allow"`}},
		{"reason missing", `package forge.egress
decision := {"allow": true, "rule": ""}`, Verdict{Reason: ReasonRegoError, Rule: `rego:decision has no string "reason"`}},
		{"reason not a word", `package forge.egress
decision := {"allow": true, "reason": "two words", "rule": ""}`, Verdict{Reason: ReasonRegoError, Rule: `rego:decision "reason" must be one printable word of at most 64 bytes`}},
		{"rule not a string", `package forge.egress
decision := {"allow": true, "reason": "x", "rule": 7}`, Verdict{Reason: ReasonRegoError, Rule: `rego:decision "rule" is not a string`}},
		{"rule with a newline", `package forge.egress
decision := {"allow": true, "reason": "x", "rule": "a\nb"}`, Verdict{Reason: ReasonRegoError, Rule: `rego:decision "rule" must be printable and at most 300 bytes`}},
		{"rule optional", `package forge.egress
decision := {"allow": true, "reason": "x", "extra": 1}`, Verdict{Allow: true, Reason: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParseRego(t, tt.src)
			if got := p.Decide(context.Background(), Request{"www.example.com", pub1, 443}, regoResolver{
				resolves: map[string][]netip.Addr{"www.example.com": {pub1}},
			}); got != tt.want {
				t.Errorf("Decide = %+v, want %+v", got, tt.want)
			}
			if got := p.CheckName("www.example.com", 0); got != tt.want {
				t.Errorf("CheckName = %+v, want %+v", got, tt.want)
			}
		})
	}

	// A failure on the learned-name question denies too, rather than
	// moving on to the next learned name.
	p := mustParseRego(t, `package forge.egress
decision := {"allow": false, "reason": "no_name"} if input.name == ""
decision := {"allow": true, "reason": "x", "rule": sprintf("%d", [to_number(input.name)])} if input.name != ""`)
	res := regoResolver{learned: map[netip.Addr][]string{pub1: {"bad.example", "7.example"}}}
	if got := p.Decide(context.Background(), Request{IP: pub1, Port: 8443}, res); got.Allow || got.Reason != ReasonRegoError {
		t.Errorf("learned-name failure: %+v", got)
	}
}

// TestSlowRegoTimesOut: a policy that would loop for minutes denies by
// timeout within a bounded time.
func TestSlowRegoTimesOut(t *testing.T) {
	p := mustParseRego(t, `package forge.egress
r := numbers.range(1, 2000)
decision := {"allow": true, "reason": "slow", "rule": ""} if {
	some a in r
	some b in r
	some c in r
	a * b * c == -1
}`)
	start := time.Now()
	got := p.Decide(context.Background(), Request{"www.example.com", pub1, 443}, nil)
	took := time.Since(start)
	if want := (Verdict{Reason: ReasonRegoError, Rule: "rego:timeout"}); got != want {
		t.Errorf("Decide = %+v, want %+v", got, want)
	}
	if took > 20*regoEvalTimeout {
		t.Errorf("took %v, the bound is %v", took, regoEvalTimeout)
	}
	t.Logf("denied after %v", took)

	// A caller's cancelled context denies at once, the same way.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	allowAll := mustLoadRego(t, "testdata/rego/allow_all.rego")
	if got := allowAll.Decide(ctx, Request{"", pub1, 443}, nil); got != (Verdict{Reason: ReasonRegoError, Rule: "rego:cancelled"}) {
		t.Errorf("cancelled context: %+v", got)
	}
}

func TestRegoConcurrentUse(t *testing.T) {
	p := generated(t, mustParse(t, differentialDocs["allowlist"]))
	res := diffResolver()
	done := make(chan Verdict, 8)
	for range 8 {
		go func() {
			var v Verdict
			for range 200 {
				v = p.Decide(context.Background(), Request{"a.github.com", pub1, 443}, res)
			}
			done <- v
		}()
	}
	for range 8 {
		if v := <-done; v != (Verdict{true, ReasonAllowedDomain, "*.github.com"}) {
			t.Errorf("concurrent Decide = %+v", v)
		}
	}
}

// FuzzRegoDifferential feeds random names, addresses and ports to a JSON
// policy and its generated Rego; they must agree.
func FuzzRegoDifferential(f *testing.F) {
	jp, err := Parse([]byte(differentialDocs["allowlist"]))
	if err != nil {
		f.Fatal(err)
	}
	src, err := GenerateRego(jp)
	if err != nil {
		f.Fatal(err)
	}
	rp, err := ParseRego("generated.rego", src)
	if err != nil {
		f.Fatal(err)
	}
	res := diffResolver()
	for _, n := range diffNames {
		f.Add(n, []byte{198, 51, 100, 7}, uint16(443))
	}
	f.Add("x.a.b.svc.example", []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7}, uint16(22))
	// Parallel fuzz workers on a small shared machine can starve one
	// evaluation past regoEvalTimeout; that deny is by design and says
	// nothing about the equivalence under test.
	timedOut := func(v Verdict) bool { return v == Verdict{Reason: ReasonRegoError, Rule: "rego:timeout"} }
	f.Fuzz(func(t *testing.T, name string, ipBytes []byte, port uint16) {
		ip, _ := netip.AddrFromSlice(ipBytes)
		req := Request{Name: name, IP: ip, Port: port}
		if want, got := jp.Decide(context.Background(), req, res), rp.Decide(context.Background(), req, res); want != got && !timedOut(got) {
			t.Errorf("Decide(%+v): JSON %+v, Rego %+v", req, want, got)
		}
		if want, got := jp.CheckName(name, port), rp.CheckName(name, port); want != got && !timedOut(got) {
			t.Errorf("CheckName(%q, %d): JSON %+v, Rego %+v", name, port, want, got)
		}
	})
}

func ExampleGenerateRego() {
	p, _ := Parse([]byte(`{"mode": "allowlist", "allowed_domains": ["*.github.com"]}`))
	src, _ := GenerateRego(p)
	rp, _ := ParseRego("generated.rego", src)
	fmt.Println(rp.CheckName("api.github.com", 0))
	// Output: {true allowed_domain *.github.com}
}
