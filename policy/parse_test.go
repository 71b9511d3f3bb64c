package policy

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// badPolicies maps each file in testdata/bad to text its error must carry:
// the offending field (with index) and the hint.
var badPolicies = map[string][]string{
	"field_case.json":              {"mode: missing", "Mode: unknown field", `did you mean "mode"`},
	"syntax_trailing_comma.json":   {"invalid JSON at line 4 column 1"},
	"mode_missing.json":            {"mode: missing"},
	"mode_invalid.json":            {`mode: "allow-list" is not a mode`, `"allowlist"`},
	"mode_not_string.json":         {"mode: must be a string, got 1"},
	"profile_empty.json":           {"profile: empty"},
	"domain_with_port.json":        {`allowed_domains[0] "api.example.com:443"`, "allowed_tcp"},
	"domain_wildcard_middle.json":  {`allowed_domains[1] "foo.*.com"`, "whole first label"},
	"domain_wildcard_partial.json": {`tool_domains[0] "*foo.com"`, "whole first label"},
	"domain_not_string.json":       {"allowed_domains[0]: must be a string, got 42"},
	"domains_not_list.json":        {"allowed_domains: must be a list of strings"},
	"domain_empty_label.json":      {`allowed_domains[0] "api..example.com"`, "empty label"},
	"domain_label_too_long.json":   {"allowed_domains[0]", "at most 63"},
	"domain_space.json":            {`allowed_domains[0] "api example.com"`, "space"},
	"tcp_missing_port.json":        {`allowed_tcp[0] "db.example.com"`, "missing port"},
	"tcp_bad_port.json":            {`allowed_tcp[0] "db.example.com:99999"`, "1-65535"},
	"tcp_port_zero.json":           {`allowed_tcp[0] "db.example.com:0"`, "1-65535"},
	"tcp_ipv6_unbracketed.json":    {`allowed_tcp[0] "2001:db8::7:22"`, "brackets"},
	"tcp_star_host.json":           {`allowed_tcp[0] "*:443"`, `bare "*"`},
	"cidr_not_cidr.json":           {`allowed_private_cidrs[0] "10.0.0.0"`, "10.0.0.0/32"},
	"bool_as_string.json":          {`allow_private_ips: must be true or false, got "yes"`},
	"verify_as_number.json":        {"verify_sni_ip: must be true or false, got 0"},
	"trailing_data.json":           {"trailing data"},
	"duplicate_field.json":         {"mode: field appears twice"},
	"not_object.json":              {"top level must be a JSON object"},
	"syntax_error.json":            {"invalid JSON at line 2"},
	"empty.json":                   {"empty document"},
}

func TestBadPolicies(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad policies found: %v", err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			want, ok := badPolicies[name]
			if !ok {
				t.Fatalf("%s has no expectation in badPolicies", path)
			}
			p, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%s) = %s, want an error", path, p.Describe())
			}
			msg := err.Error()
			for _, w := range append([]string{path}, want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q\n does not mention %q", msg, w)
				}
			}
			// Parse gives the same message without the path.
			data, _ := os.ReadFile(path)
			if _, err := Parse(data); err == nil || !strings.HasPrefix(err.Error(), "policy: ") {
				t.Errorf("Parse: %v", err)
			}
		})
	}
	for name := range badPolicies {
		if _, err := os.Stat(filepath.Join("testdata/bad", name)); err != nil {
			t.Errorf("expectation for missing file: %v", err)
		}
	}
}

// warnPolicies maps each file in testdata/warn — files as Forge writes
// them, and entries that can never match — to the warnings it must load
// with (issue #12): each names the entry and the fix. A file listed with
// strict fails under Options.Strict (unknown fields) with the first.
var warnPolicies = map[string]struct {
	warnings []string
	strict   bool
}{
	"unknown_field_typo.json":       {[]string{`allowed_domain: unknown field; did you mean "allowed_domains"?`, "FORGE_SUPERVISOR_STRICT_POLICY"}, true},
	"domain_star.json":              {[]string{`all_domains[0] "*": a bare "*" would allow everything`, "skipped"}, false},
	"domain_ip.json":                {nil, false},
	"domain_scheme.json":            {[]string{`allowed_domains[0] "https://api.example.com/v1": a URL is not a host name; skipped`}, false},
	"tcp_private_without_cidr.json": {[]string{`allowed_tcp[0] "10.1.2.3:6379": 10.1.2.3 is a private address`, "allowed_private_cidrs", "allow_private_ips"}, false},
	"tcp_metadata.json":             {[]string{`allowed_tcp[0] "169.254.169.254:80": 169.254.169.254 is a metadata address, which is always blocked; skipped`}, false},
	"cidr_host_bits.json":           {[]string{`allowed_private_cidrs[0] "10.1.0.0/8": host bits are set; read as 10.0.0.0/8`}, false},
	"cidr_too_wide.json":            {[]string{`allowed_private_cidrs[0] "0.0.0.0/0"`, "every private range of IPv4", "allows nothing by itself"}, false},
	"forge_no_private_key.json":     {[]string{WarnPrivateDenied}, false},
	"forge_verbatim.json": {[]string{
		"byte-order mark",
		`version: unknown field`, `generated_at: unknown field`,
		`allowed_domains[4] "$K8S_API_DOMAIN": an unexpanded environment variable`,
		`allowed_domains[5] "": empty entry; skipped`,
		`allowed_domains[6] "*": a bare "*"`,
		`allowed_domains[7] "https://mcp.example.com/sse": a URL`,
		`allowed_tcp[0] "[::1]:5432": ::1 is a loopback address, which is always blocked; skipped`,
		`allowed_tcp[2] "${DB_HOST}:5432": an unexpanded environment variable`,
		`allowed_private_cidrs[0] "0.0.0.0/0": it holds every private range of IPv4`,
	}, true},
}

func TestWarnPolicies(t *testing.T) {
	files, err := filepath.Glob("testdata/warn/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no policies found: %v", err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			want, ok := warnPolicies[name]
			if !ok {
				t.Fatalf("%s has no expectation in warnPolicies", path)
			}
			p, err := Load(path)
			if err != nil {
				t.Fatalf("Load(%s): %v; a file Forge writes must load", path, err)
			}
			got := strings.Join(p.Warnings(), "\n")
			for _, w := range want.warnings {
				if !strings.Contains(got, w) {
					t.Errorf("warnings\n%s\ndo not mention %q", got, w)
				}
			}
			// Strict: every warning but the private-destinations notice is
			// an error.
			_, err = LoadWith(path, Options{Strict: true})
			strictFails := slices.ContainsFunc(p.Warnings(), func(w string) bool { return w != WarnPrivateDenied })
			switch {
			case strictFails && err == nil:
				t.Errorf("strict: loaded; want an error for %q", p.Warnings())
			case !strictFails && err != nil:
				t.Errorf("strict: %v", err)
			case want.strict && err != nil && !strings.Contains(err.Error(), "unknown field") && !strings.Contains(err.Error(), "byte-order mark"):
				t.Errorf("strict: %v, want the unknown field (or the BOM before it) named", err)
			}
		})
	}
	for name := range warnPolicies {
		if _, err := os.Stat(filepath.Join("testdata/warn", name)); err != nil {
			t.Errorf("expectation for missing file: %v", err)
		}
	}
}

// TestForgeVerbatimMeaning: the entries of a file as Forge writes it mean
// what they mean in Forge — trimmed names match, IP literals are rules for
// that address subject to the private-IP rules, and nothing skipped
// widens the policy.
func TestForgeVerbatimMeaning(t *testing.T) {
	p, err := Load("testdata/warn/forge_verbatim.json")
	if err != nil {
		t.Fatal(err)
	}
	res := fakeResolver{resolves: map[string][]netip.Addr{"api.openai.com": {pub1}, "api.tavily.com": {pub1}, "db.internal": {addr("10.0.0.40")}}}
	ctx := context.Background()
	for _, tt := range []struct {
		req  Request
		want Verdict
	}{
		{Request{"api.openai.com", pub1, 443}, Verdict{true, ReasonAllowedDomain, "api.openai.com"}},
		{Request{"api.tavily.com", pub1, 443}, Verdict{true, ReasonAllowedDomain, "api.tavily.com"}},
		// IP literals: rules for the address (0.0.0.0/0 exempts private IPv4).
		{Request{"", addr("192.168.1.50"), 443}, Verdict{true, ReasonAllowedDomain, "192.168.1.50"}},
		{Request{"192.168.1.50", addr("192.168.1.50"), 80}, Verdict{true, ReasonAllowedDomain, "192.168.1.50"}},
		{Request{"", addr("10.0.0.12"), 443}, Verdict{true, ReasonAllowedDomain, "10.0.0.12"}},
		{Request{"", addr("10.0.0.12"), 11434}, Verdict{Reason: ReasonNoNameForIP}},
		{Request{"", addr("10.0.0.13"), 443}, Verdict{Reason: ReasonNoNameForIP}},
		// fd00::12 is private IPv6, which 0.0.0.0/0 does not exempt.
		{Request{"", addr("fd00::12"), 443}, Verdict{Reason: ReasonPrivateIP}},
		{Request{"db.internal", addr("10.0.0.40"), 5432}, Verdict{true, ReasonAllowedTCP, "allowed_tcp:db.internal:5432"}},
		// Nothing skipped allows anything.
		{Request{"evil.test", pub3, 443}, Verdict{Reason: ReasonNotAllowed}},
		{Request{"", addr("::1"), 5432}, Verdict{Reason: ReasonBlockedRange}},
		{Request{"mcp.example.com", pub1, 443}, Verdict{Reason: ReasonNotAllowed}},
	} {
		if got := p.Decide(ctx, tt.req, res); got != tt.want {
			t.Errorf("Decide(%+v) = %+v, want %+v", tt.req, got, tt.want)
		}
	}
	if v := p.CheckName("k8s_api_domain", 0); v.Allow {
		t.Errorf("a skipped $VAR allowed a name: %+v", v)
	}
}

func TestGoodPolicies(t *testing.T) {
	tests := []struct {
		file      string
		mode      Mode
		profile   string
		rules     int
		names     []string
		verifySNI bool
	}{
		{"forge_standard.json", ModeAllowlist, "standard", 3, []string{"*.github.com", "api.example.com", "api.tavily.com"}, true},
		{"forge_strict_deny_all.json", ModeDenyAll, "strict", 0, []string{}, true},
		{"forge_permissive_dev_open.json", ModeDevOpen, "permissive", 0, []string{}, true},
		{"minimal.json", ModeAllowlist, "", 0, []string{}, true},
		{"nulls.json", ModeAllowlist, "", 0, []string{}, true},
		{"extras.json", ModeAllowlist, "standard", 4 + 6 + 2,
			[]string{"*.github.com", "api.example.com", "api.tavily.com", "xn--bcher-kva.example"}, true},
		{"single_label_wildcard.json", ModeAllowlist, "", 2, []string{"*.com", "*.internal"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			p, err := Load(filepath.Join("testdata/good", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if p.Mode() != tt.mode || p.Profile() != tt.profile || p.RuleCount() != tt.rules || p.VerifySNIIP() != tt.verifySNI {
				t.Errorf("got mode=%s profile=%q rules=%d verify=%t, want %s %q %d %t",
					p.Mode(), p.Profile(), p.RuleCount(), p.VerifySNIIP(), tt.mode, tt.profile, tt.rules, tt.verifySNI)
			}
			if got := p.Names(); !slices.Equal(got, tt.names) {
				t.Errorf("Names() = %q, want %q", got, tt.names)
			}
			if p.Describe() == "" {
				t.Error("empty Describe")
			}
		})
	}
}

func TestLoadErrorsNameThePath(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.json")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxPolicyBytes + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	unreadable := filepath.Join(dir, "unreadable.json")
	if err := os.WriteFile(unreadable, []byte(`{"mode":"dev-open"}`), 0o000); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want string
	}{
		{filepath.Join(dir, "missing.json"), "no such file"},
		{dir, "not a regular file"},
		{big, "larger than"},
		{"testdata/bad/syntax_error.json", "invalid JSON"},
	}
	if os.Geteuid() != 0 { // root reads mode-000 files
		tests = append(tests, struct{ path, want string }{unreadable, "permission denied"})
	}
	for _, tt := range tests {
		p, err := Load(tt.path)
		if err == nil || p != nil {
			t.Errorf("Load(%s) = %v, %v; want an error", tt.path, p, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.path) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load(%s) error %q does not name the path and %q", tt.path, err, tt.want)
		}
	}
}

func TestParseDefaultsAndCanonicalRules(t *testing.T) {
	p, err := Parse([]byte(`{"mode":"allowlist","allowed_domains":["A.Example.com.","a.example.com","*.B.example.COM"],
		"allowed_tcp":["DB.example.com:5432","db.example.com:5432","[2001:DB8::7]:22","[::ffff:198.51.100.9]:*"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !p.VerifySNIIP() || p.AllowPrivateIPs() {
		t.Errorf("defaults: verify_sni_ip=%t allow_private_ips=%t, want true false", p.VerifySNIIP(), p.AllowPrivateIPs())
	}
	if got, want := p.Names(), []string{"*.b.example.com", "a.example.com"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
	if p.RuleCount() != 2+3 {
		t.Errorf("RuleCount() = %d, want 5 (duplicates after normalization count once)", p.RuleCount())
	}
	for _, tt := range []struct {
		name string
		port uint16
		rule string
	}{
		{"db.example.com", 5432, "allowed_tcp:db.example.com:5432"},
	} {
		if v := p.CheckName(tt.name, tt.port); !v.Allow || v.Rule != tt.rule {
			t.Errorf("CheckName(%s, %d) = %+v, want rule %s", tt.name, tt.port, v, tt.rule)
		}
	}
}
