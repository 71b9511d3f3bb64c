package policy

import (
	"context"
	"net/netip"
	"strings"
	"testing"
)

const testPolicy = `{
  "profile": "standard",
  "mode": "allowlist",
  "allowed_domains": ["api.example.com", "*.github.com"],
  "tool_domains": ["api.tavily.com"],
  "all_domains": ["api.example.com", "*.github.com", "api.tavily.com"],
  "allowed_tcp": ["db.example.com:5432", "*.svc.example:8443", "ssh.example.com:*",
                  "198.51.100.7:5432", "[2001:db8::7]:22"],
  "allowed_private_cidrs": ["10.0.0.0/16", "fd00:1234::/32", "169.254.0.0/16"]
}`

// fakeResolver knows which names resolve to which addresses; learned
// holds what the DNS proxy would have learned per address.
type fakeResolver struct {
	resolves map[string][]netip.Addr
	learned  map[netip.Addr][]string
}

func (f fakeResolver) Resolves(_ context.Context, name string, ip netip.Addr) bool {
	for _, a := range f.resolves[name] {
		if a == ip {
			return true
		}
	}
	return false
}

func (f fakeResolver) NamesFor(ip netip.Addr) []string { return f.learned[ip] }

var (
	pub1   = netip.MustParseAddr("198.51.100.1")
	pub3   = netip.MustParseAddr("198.51.100.3")
	pub7   = netip.MustParseAddr("198.51.100.7")
	pub6   = netip.MustParseAddr("2001:db8::1")
	world6 = netip.MustParseAddr("2001:db8::7")
)

func testResolver() fakeResolver {
	return fakeResolver{
		resolves: map[string][]netip.Addr{
			"api.example.com":  {pub1, pub6, netip.MustParseAddr("10.1.0.1")},
			"x.github.com":     {pub1},
			"db.example.com":   {pub1},
			"ssh.example.com":  {pub1},
			"a.svc.example":    {pub1},
			"api.tavily.com":   {pub1},
			"www.example.test": {pub1},
		},
		learned: map[netip.Addr][]string{
			pub1: {"evil.test", "api.example.com", "db.example.com"},
			pub3: {"evil.test"},
		},
	}
}

func mustParse(t testing.TB, doc string) *Policy {
	t.Helper()
	p, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestDecide(t *testing.T) {
	allowlist := mustParse(t, testPolicy)
	denyAll := mustParse(t, `{"mode":"deny-all","allowed_domains":["api.example.com"],"allowed_private_cidrs":["10.0.0.0/16"]}`)
	cidrs := mustParse(t, `{"mode":"allowlist","allowed_tcp":["pg.internal:5432"],
		"allowed_private_cidrs":["10.20.0.0/16","203.0.113.0/24","8.0.0.0/8"]}`)
	anyCIDR := mustParse(t, `{"mode":"allowlist","allowed_tcp":["pg.internal:5432"],"allowed_private_cidrs":["0.0.0.0/0"]}`)
	cidrRes := fakeResolver{
		resolves: map[string][]netip.Addr{"pg.internal": {addr("10.20.0.7"), addr("10.21.0.7"), addr("192.168.7.7")}},
		learned:  map[netip.Addr][]string{addr("10.20.0.7"): {"pg.internal"}, addr("192.168.7.7"): {"pg.internal"}},
	}
	devOpen := mustParse(t, `{"mode":"dev-open","allowed_private_cidrs":["10.0.0.0/16","169.254.0.0/16"]}`)
	privateOK := mustParse(t, `{"mode":"allowlist","allowed_domains":["api.example.com"],"allow_private_ips":true}`)
	noVerify := mustParse(t, `{"mode":"allowlist","allowed_domains":["api.example.com"],"verify_sni_ip":false}`)
	res := testResolver()

	tests := []struct {
		name   string
		p      *Policy
		req    Request
		r      Resolver
		allow  bool
		reason string
		rule   string
	}{
		// 1. Always blocked, whatever the mode and the rules.
		{"metadata v4", allowlist, Request{"api.example.com", addr("169.254.169.254"), 80}, res, false, ReasonMetadata, ""},
		{"metadata inside allowed cidr", allowlist, Request{"", addr("169.254.169.254"), 80}, res, false, ReasonMetadata, ""},
		// Issue #11 item 12: these were dialled with allow_private_ips.
		{"nat64 local-use metadata, allow_private_ips", privateOK, Request{"", addr("64:ff9b:1::a9fe:a9fe"), 80}, res, false, ReasonMetadata, ""},
		{"siit metadata, allow_private_ips", privateOK, Request{"", addr("::ffff:0:a9fe:a9fe"), 80}, res, false, ReasonMetadata, ""},
		{"teredo loopback, allow_private_ips", privateOK, Request{"", addr("2001:0:4136:e378:8000:63bf:80ff:fffe"), 80}, res, false, ReasonBlockedRange, ""},
		{"azure wireserver, allow_private_ips", privateOK, Request{"", addr("168.63.129.16"), 80}, res, false, ReasonMetadata, ""},
		{"gcp metadata v6, allow_private_ips", privateOK, Request{"", addr("fd20:ce::254"), 80}, res, false, ReasonMetadata, ""},
		{"metadata v6", allowlist, Request{"", addr("fd00:ec2::254"), 80}, res, false, ReasonMetadata, ""},
		{"metadata alibaba", allowlist, Request{"", addr("100.100.100.200"), 80}, res, false, ReasonMetadata, ""},
		{"metadata v4-mapped", allowlist, Request{"", addr("::ffff:169.254.169.254"), 80}, res, false, ReasonMetadata, ""},
		{"metadata nat64", allowlist, Request{"", addr("64:ff9b::a9fe:a9fe"), 80}, res, false, ReasonMetadata, ""},
		{"metadata in dev-open", devOpen, Request{"", addr("169.254.169.254"), 80}, nil, false, ReasonMetadata, ""},
		{"metadata in deny-all", denyAll, Request{"", addr("169.254.169.254"), 80}, nil, false, ReasonMetadata, ""},
		{"loopback with allowed name", allowlist, Request{"api.example.com", addr("127.0.0.1"), 443}, res, false, ReasonBlockedRange, ""},
		{"loopback v6", devOpen, Request{"", addr("::1"), 443}, nil, false, ReasonBlockedRange, ""},
		{"loopback v4-mapped", devOpen, Request{"", addr("::ffff:127.0.0.1"), 443}, nil, false, ReasonBlockedRange, ""},
		{"unspecified", devOpen, Request{"", addr("0.0.0.0"), 443}, nil, false, ReasonBlockedRange, ""},
		{"multicast", devOpen, Request{"", addr("224.0.0.251"), 443}, nil, false, ReasonBlockedRange, ""},
		{"multicast v6", devOpen, Request{"", addr("ff02::1"), 443}, nil, false, ReasonBlockedRange, ""},
		{"broadcast", devOpen, Request{"", addr("255.255.255.255"), 443}, nil, false, ReasonBlockedRange, ""},
		{"no address", devOpen, Request{"api.example.com", netip.Addr{}, 443}, nil, false, ReasonBlockedRange, ""},
		{"port 0", devOpen, Request{"", pub1, 0}, nil, false, ReasonBlockedRange, ""},

		// 2. deny-all.
		{"deny-all allowed name", denyAll, Request{"api.example.com", pub1, 443}, res, false, ReasonDenyAll, ""},
		{"deny-all cidr", denyAll, Request{"", addr("10.0.1.1"), 443}, res, false, ReasonDenyAll, ""},

		// 3. allowed_private_cidrs only exempt from the private-IP block
		// (Forge's meaning, issue #12): a rule must still allow.
		{"cidr v4 no name", allowlist, Request{"", addr("10.0.1.2"), 22}, nil, false, ReasonNoNameForIP, ""},
		{"cidr v4-mapped no name", allowlist, Request{"", addr("::ffff:10.0.1.2"), 22}, nil, false, ReasonNoNameForIP, ""},
		{"cidr v6 unlisted name", allowlist, Request{"evil.test", addr("fd00:1234::5"), 9000}, nil, false, ReasonNotAllowed, ""},
		{"cidr link-local no name", allowlist, Request{"", addr("169.254.1.1"), 80}, nil, false, ReasonNoNameForIP, ""},
		{"cidr in dev-open", devOpen, Request{"", addr("10.0.1.2"), 22}, nil, true, ReasonDevOpen, ""},
		{"cidr exempts an allowed name", cidrs, Request{"pg.internal", addr("10.20.0.7"), 5432}, cidrRes, true, ReasonAllowedTCP, "allowed_tcp:pg.internal:5432"},
		{"cidr: listed port only", cidrs, Request{"pg.internal", addr("10.20.0.7"), 5433}, cidrRes, false, ReasonPortNotAllowed, "allowed_tcp:pg.internal:5432"},
		{"cidr: no name, ssh", cidrs, Request{"", addr("10.20.0.7"), 22}, nil, false, ReasonNoNameForIP, ""},
		{"cidr: learned name, listed port", cidrs, Request{"", addr("10.20.0.7"), 5432}, cidrRes, true, ReasonLearnedIP, "allowed_tcp:pg.internal:5432"},
		{"cidr: learned name, other port", cidrs, Request{"", addr("10.20.0.7"), 5433}, cidrRes, false, ReasonPortNotAllowed, "allowed_tcp:pg.internal:5432"},
		{"cidr: outside the cidr", cidrs, Request{"pg.internal", addr("10.21.0.7"), 5432}, cidrRes, false, ReasonPrivateIP, ""},
		{"public cidr grants nothing", cidrs, Request{"", addr("203.0.113.9"), 443}, nil, false, ReasonNoNameForIP, ""},
		{"public cidr, unlisted name", cidrs, Request{"evil.test", addr("8.8.8.8"), 443}, nil, false, ReasonNotAllowed, ""},
		{"0.0.0.0/0 exempts, rule allows", cidrs, Request{"pg.internal", addr("192.168.7.7"), 5432}, cidrRes, false, ReasonPrivateIP, ""},
		{"0.0.0.0/0 exempts every private v4", anyCIDR, Request{"pg.internal", addr("192.168.7.7"), 5432}, cidrRes, true, ReasonAllowedTCP, "allowed_tcp:pg.internal:5432"},
		{"0.0.0.0/0 grants nothing", anyCIDR, Request{"", addr("192.168.7.7"), 22}, nil, false, ReasonNoNameForIP, ""},
		{"0.0.0.0/0, learned name on another port", anyCIDR, Request{"", addr("192.168.7.7"), 22}, cidrRes, false, ReasonPortNotAllowed, "allowed_tcp:pg.internal:5432"},
		{"0.0.0.0/0 never exempts metadata", anyCIDR, Request{"", addr("169.254.169.254"), 80}, cidrRes, false, ReasonMetadata, ""},

		// 4. Private destinations (DNS rebinding).
		{"rfc1918 with allowed resolving name", allowlist, Request{"api.example.com", addr("10.1.0.1"), 443}, res, false, ReasonPrivateIP, ""},
		{"192.168", allowlist, Request{"", addr("192.168.1.1"), 443}, res, false, ReasonPrivateIP, ""},
		{"cgnat", allowlist, Request{"", addr("100.64.0.1"), 443}, res, false, ReasonPrivateIP, ""},
		{"ula", allowlist, Request{"", addr("fc00::1"), 443}, res, false, ReasonPrivateIP, ""},
		{"link-local v6", allowlist, Request{"", addr("fe80::1"), 443}, res, false, ReasonPrivateIP, ""},
		{"link-local v6 zoned", allowlist, Request{"", addr("fe80::1%eth0"), 443}, res, false, ReasonPrivateIP, ""},
		{"nat64 of private", allowlist, Request{"", addr("64:ff9b::a01:1"), 443}, res, false, ReasonPrivateIP, ""},
		{"private in dev-open", devOpen, Request{"", addr("192.168.1.1"), 443}, nil, false, ReasonPrivateIP, ""},
		{"private allowed by allow_private_ips", privateOK, Request{"api.example.com", addr("10.1.0.1"), 443}, res, true, ReasonAllowedDomain, "api.example.com"},

		// 5. dev-open.
		{"dev-open public no name", devOpen, Request{"", pub1, 25}, nil, true, ReasonDevOpen, ""},
		{"dev-open public any name", devOpen, Request{"evil.test", pub6, 443}, nil, true, ReasonDevOpen, ""},

		// 6. allowed_tcp IP literals.
		{"tcp ip v4", allowlist, Request{"", pub7, 5432}, nil, true, ReasonAllowedTCP, "allowed_tcp:198.51.100.7:5432"},
		// As in Forge, a rule matches what the client asked for: a claimed
		// name that no rule allows is denied even to an allowed address.
		{"tcp ip v4 with an unlisted name", allowlist, Request{"evil.test", pub7, 5432}, nil, false, ReasonNotAllowed, ""},
		{"tcp ip v4 with its IP literal", allowlist, Request{"198.51.100.7", pub7, 5432}, nil, true, ReasonAllowedTCP, "allowed_tcp:198.51.100.7:5432"},
		{"tcp ip v4 with an invalid name", allowlist, Request{"bad name", pub7, 5432}, nil, true, ReasonAllowedTCP, "allowed_tcp:198.51.100.7:5432"},
		{"tcp ip v4 with an allowed, unconfirmed name", allowlist, Request{"api.example.com", pub7, 5432}, nil, false, ReasonPortNotAllowed, "api.example.com"},
		{"tcp ip v4 with an allowed name on 443, unconfirmed", allowlist, Request{"db.example.com", pub7, 5432}, nil, true, ReasonAllowedTCP, "allowed_tcp:198.51.100.7:5432"},
		{"tcp ip v6", allowlist, Request{"", world6, 22}, nil, true, ReasonAllowedTCP, "allowed_tcp:[2001:db8::7]:22"},
		{"tcp ip other port", allowlist, Request{"", pub7, 5433}, nil, false, ReasonNoNameForIP, ""},

		// 7. Claimed name.
		{"domain exact", allowlist, Request{"api.example.com", pub1, 443}, res, true, ReasonAllowedDomain, "api.example.com"},
		{"domain exact port 80 v6", allowlist, Request{"api.example.com", pub6, 80}, res, true, ReasonAllowedDomain, "api.example.com"},
		{"domain mixed case trailing dot", allowlist, Request{"API.Example.COM.", pub1, 443}, res, true, ReasonAllowedDomain, "api.example.com"},
		{"tool domain", allowlist, Request{"api.tavily.com", pub1, 443}, res, true, ReasonAllowedDomain, "api.tavily.com"},
		{"wildcard", allowlist, Request{"x.github.com", pub1, 443}, res, true, ReasonAllowedDomain, "*.github.com"},
		{"wildcard apex not matched", allowlist, Request{"github.com", pub1, 443}, res, false, ReasonNotAllowed, ""},
		{"not in allowlist", allowlist, Request{"evil.test", pub1, 443}, res, false, ReasonNotAllowed, ""},
		{"suffix trick", allowlist, Request{"api.example.com.evil.test", pub1, 443}, res, false, ReasonNotAllowed, ""},
		{"domain on other port", allowlist, Request{"api.example.com", pub1, 22}, res, false, ReasonPortNotAllowed, "api.example.com"},
		{"wildcard on other port", allowlist, Request{"x.github.com", pub1, 22}, res, false, ReasonPortNotAllowed, "*.github.com"},
		{"tcp name port", allowlist, Request{"db.example.com", pub1, 5432}, res, true, ReasonAllowedTCP, "allowed_tcp:db.example.com:5432"},
		{"tcp name wrong port", allowlist, Request{"db.example.com", pub1, 443}, res, false, ReasonPortNotAllowed, "allowed_tcp:db.example.com:5432"},
		{"tcp name any port", allowlist, Request{"ssh.example.com", pub1, 2222}, res, true, ReasonAllowedTCP, "allowed_tcp:ssh.example.com:*"},
		{"tcp wildcard port", allowlist, Request{"a.svc.example", pub1, 8443}, res, true, ReasonAllowedTCP, "allowed_tcp:*.svc.example:8443"},
		{"sni ip mismatch", allowlist, Request{"api.example.com", pub3, 443}, res, false, ReasonSNIIPMismatch, "api.example.com"},
		{"sni ip mismatch wildcard", allowlist, Request{"y.github.com", pub1, 443}, res, false, ReasonSNIIPMismatch, "*.github.com"},
		{"nil resolver fails closed", allowlist, Request{"api.example.com", pub1, 443}, nil, false, ReasonSNIIPMismatch, "api.example.com"},
		{"verify off", noVerify, Request{"api.example.com", pub3, 443}, nil, true, ReasonAllowedDomain, "api.example.com"},
		{"invalid name", allowlist, Request{"api example.com", pub1, 443}, res, false, ReasonInvalidName, ""},
		{"invalid name with learned ip", allowlist, Request{"bad_name!", pub1, 443}, res, false, ReasonInvalidName, ""},
		{"ip literal, nothing learned", allowlist, Request{"198.51.100.3", pub3, 443}, res, false, ReasonIPLiteral, ""},
		{"bracketed ip literal", allowlist, Request{"[2001:db8::1]", pub6, 443}, res, false, ReasonIPLiteral, ""},
		{"ip literal, learned name, web port", allowlist, Request{"198.51.100.1", pub1, 443}, res, false, ReasonIPLiteral, ""},

		// 8. No name: learned names.
		// On 80 and 443 a learned name never stands in for a missing one.
		{"learned, web port 443", allowlist, Request{"", pub1, 443}, res, false, ReasonNoNameForIP, ""},
		{"learned, web port 80", allowlist, Request{"", pub1, 80}, res, false, ReasonNoNameForIP, ""},
		{"learned, allowed_tcp port", allowlist, Request{"", pub1, 5432}, res, true, ReasonLearnedIP, "allowed_tcp:db.example.com:5432"},
		{"learned v4-mapped, allowed_tcp port", allowlist, Request{"", addr("::ffff:198.51.100.1"), 5432}, res, true, ReasonLearnedIP, "allowed_tcp:db.example.com:5432"},
		{"learned v4-mapped, web port", allowlist, Request{"", addr("::ffff:198.51.100.1"), 443}, res, false, ReasonNoNameForIP, ""},
		{"learned wrong port", allowlist, Request{"", pub1, 22}, res, false, ReasonPortNotAllowed, "api.example.com"},
		{"learned only disallowed", allowlist, Request{"", pub3, 443}, res, false, ReasonNoNameForIP, ""},
		{"nothing learned", allowlist, Request{"", pub6, 443}, res, false, ReasonNoNameForIP, ""},
		{"nil resolver", allowlist, Request{"", pub1, 443}, nil, false, ReasonNoNameForIP, ""},

		// A nil policy denies.
		{"nil policy", nil, Request{"api.example.com", pub1, 443}, res, false, ReasonNoPolicy, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.p.Decide(context.Background(), tt.req, tt.r)
			want := Verdict{Allow: tt.allow, Reason: tt.reason, Rule: tt.rule}
			if got != want {
				t.Errorf("Decide(%+v) = %+v, want %+v", tt.req, got, want)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	allowlist := mustParse(t, testPolicy)
	denyAll := mustParse(t, `{"mode":"deny-all","allowed_domains":["api.example.com"]}`)
	devOpen := mustParse(t, `{"mode":"dev-open"}`)
	tests := []struct {
		p      *Policy
		name   string
		port   uint16
		allow  bool
		reason string
		rule   string
	}{
		{allowlist, "api.example.com", 443, true, ReasonAllowedDomain, "api.example.com"},
		{allowlist, "api.example.com", 0, true, ReasonAllowedDomain, "api.example.com"},
		{allowlist, "db.example.com", 0, true, ReasonAllowedTCP, "allowed_tcp:db.example.com:5432"},
		{allowlist, "a.b.c.github.com", 80, true, ReasonAllowedDomain, "*.github.com"},
		{allowlist, "github.com", 0, false, ReasonNotAllowed, ""},
		{allowlist, "evil.test", 0, false, ReasonNotAllowed, ""},
		{allowlist, "api.example.com", 8080, false, ReasonPortNotAllowed, "api.example.com"},
		{allowlist, "bücher.example", 0, false, ReasonNotAllowed, ""},
		{allowlist, "198.51.100.7", 0, false, ReasonIPLiteral, ""},
		{allowlist, "", 0, false, ReasonInvalidName, ""},
		{allowlist, "*.github.com", 443, false, ReasonInvalidName, ""},
		{denyAll, "api.example.com", 443, false, ReasonDenyAll, ""},
		{devOpen, "anything.test", 0, true, ReasonDevOpen, ""},
		{devOpen, "not valid", 0, false, ReasonInvalidName, ""},
		{nil, "api.example.com", 443, false, ReasonNoPolicy, ""},
	}
	for _, tt := range tests {
		got := tt.p.CheckName(tt.name, tt.port)
		want := Verdict{Allow: tt.allow, Reason: tt.reason, Rule: tt.rule}
		if got != want {
			t.Errorf("CheckName(%q, %d) = %+v, want %+v", tt.name, tt.port, got, want)
		}
	}
}

// TestMostSpecificRuleWins: an exact rule beats a wildcard, and a longer
// wildcard suffix beats a shorter one; a wildcard can still open a port
// the exact rule does not.
func TestMostSpecificRuleWins(t *testing.T) {
	p := mustParse(t, `{"mode":"allowlist","allowed_domains":["a.b.example.com","*.b.example.com","*.example.com"],
		"allowed_tcp":["*.example.com:5432"]}`)
	tests := []struct {
		name string
		port uint16
		rule string
	}{
		{"a.b.example.com", 443, "a.b.example.com"},
		{"x.b.example.com", 443, "*.b.example.com"},
		{"b.example.com", 443, "*.example.com"},
		{"a.b.example.com", 5432, "allowed_tcp:*.example.com:5432"},
	}
	for _, tt := range tests {
		if v := p.CheckName(tt.name, tt.port); !v.Allow || v.Rule != tt.rule {
			t.Errorf("CheckName(%s, %d) = %+v, want allow by %s", tt.name, tt.port, v, tt.rule)
		}
	}
}

func TestCheckNameFastPathAllocatesNothing(t *testing.T) {
	p := mustParse(t, testPolicy)
	for _, name := range []string{"api.example.com", "deep.a.b.c.github.com", "evil.test"} {
		if n := testing.AllocsPerRun(100, func() { p.CheckName(name, 443) }); n != 0 {
			t.Errorf("CheckName(%s) allocates %.0f times, want 0", name, n)
		}
	}
	var res Resolver = testResolver()
	ctx := context.Background()
	req := Request{"api.example.com", pub1, 443}
	if n := testing.AllocsPerRun(100, func() { p.Decide(ctx, req, res) }); n != 0 {
		t.Errorf("Decide allocates %.0f times, want 0", n)
	}
}

func TestNilPolicyDeniesAndDoesNotPanic(t *testing.T) {
	var p *Policy
	if p.Mode() != ModeDenyAll || p.RuleCount() != 0 || p.Names() != nil || !p.VerifySNIIP() || p.AllowPrivateIPs() || p.Profile() != "" || p.Describe() == "" {
		t.Error("nil policy accessors must report a deny-everything policy")
	}
}

func TestNamesIsACopy(t *testing.T) {
	p := mustParse(t, testPolicy)
	p.Names()[0] = "changed.test"
	if p.Names()[0] == "changed.test" {
		t.Error("Names() exposes the policy's own slice")
	}
}

// TestPortNotAllowedHint: the warning of a port_not_allowed denial names
// the entry that fixes it (issue #11 "Also", #12).
func TestPortNotAllowedHint(t *testing.T) {
	p := mustParse(t, testPolicy)
	for _, tt := range []struct {
		req  Request
		want string
	}{
		{Request{"api.example.com", pub1, 5432}, `api.example.com is allowed on ports 80 and 443 only, as every domain rule; to reach port 5432 add "api.example.com:5432" to allowed_tcp, or declare the endpoint with its port in forge.yaml`},
		{Request{"", pub1, 22}, `api.example.com is allowed on ports 80 and 443 only, as every domain rule; to reach port 22 add "api.example.com:22" to allowed_tcp`},
		{Request{"x.github.com", pub1, 22}, `x.github.com is allowed on ports 80 and 443 only, as every domain rule; to reach port 22 add "x.github.com:22"`},
		{Request{"db.example.com", pub1, 5433}, `db.example.com is allowed on port 5432 only, by allowed_tcp; to reach port 5433 add "db.example.com:5433"`},
	} {
		v := p.Decide(context.Background(), tt.req, testResolver())
		if got := Hint(v, tt.req.Name, tt.req.Port); v.Reason != ReasonPortNotAllowed || !strings.HasPrefix(got, tt.want) {
			t.Errorf("Decide(%+v) = %+v, hint %q\nwant prefix %q", tt.req, v, got, tt.want)
		}
	}
	if h := Hint(Verdict{Reason: ReasonNotAllowed}, "evil.test", 443); h != "" {
		t.Errorf("hint for not_in_allowlist: %q", h)
	}
}
