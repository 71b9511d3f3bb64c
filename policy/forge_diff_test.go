package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The differential test against Forge (issue #12). Forge's matchers
// (initializ/forge, forge-core/security: DomainMatcher, TCPMatcher,
// IsBlockedIP) are represented two ways, both written here as facts about
// Forge's behaviour, not as Forge's code:
//
//   - forgeCases: the exact calls of Forge's own tests and the answers
//     those tests require;
//   - forgeModel: Forge's documented meaning (exact or "*.suffix" names
//     compared as lowercase, trimmed strings; host:port and host:* TCP
//     entries; the always-blocked and private ranges, and the IPv6
//     transition forms it decodes), used to answer a generated corpus.
//
// Every difference is classified. The classes are the rows of the table in
// docs/forge-compat.md, and each says the supervisor is the stricter one,
// except sameNameSpelling (the same DNS name written another way, which
// Forge compares as a different string). A difference in no class — above
// all Forge denying what the supervisor allows — fails the test.

// Difference classes: keep in step with docs/forge-compat.md.
const (
	diffMetadata        = "metadata_endpoints"    // more cloud metadata endpoints always blocked
	diffAlwaysBlocked   = "always_blocked_ranges" // ::, multicast, broadcast, 240/4, ::/96, 100::/64 always blocked
	diffPrivateRanges   = "private_ranges"        // 198.18/15, fec0::/10, 64:ff9b:1::/48 private
	diffEmbedded        = "ipv4_embeddings"       // SIIT, IPv4-compatible, NAT64 local-use positions, Teredo server decoded
	diffWebPortsOnly    = "web_ports_only"        // domain rules open 80 and 443 only; Forge's HTTP proxy any port
	diffLoopbackRule    = "loopback_rules"        // an allowed_tcp rule for loopback is skipped (loopback is not egress)
	diffInvalidName     = "invalid_names"         // strings DNS cannot carry are not names (Forge compares any string)
	diffSameNameSpelled = "same_name_spelling"    // trailing dot, Unicode vs punycode: the same name, compared as a name
)

// forgeModel is Forge's meaning of one allowlist.
type forgeModel struct {
	mode         string
	exact        map[string]bool
	wild         []string // ".suffix"
	tcpExact     map[string]bool
	tcpAnyPort   map[string]bool
	tcpWild      [][2]string // ".suffix", port
	tcpWildAny   []string
	allowPrivate bool
	cidrs        []netip.Prefix
}

func newForgeModel(mode string, domains, tcp []string, allowPrivate bool, cidrs []string) (*forgeModel, error) {
	m := &forgeModel{mode: mode, exact: map[string]bool{}, tcpExact: map[string]bool{}, tcpAnyPort: map[string]bool{}, allowPrivate: allowPrivate}
	for _, d := range domains {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "":
		case strings.HasPrefix(d, "*."):
			m.wild = append(m.wild, d[1:])
		default:
			m.exact[d] = true
		}
	}
	for _, e := range tcp {
		i := strings.LastIndexByte(e, ':')
		if e == "" || i < 0 {
			return nil, fmt.Errorf("entry %q", e)
		}
		host, port := strings.TrimSpace(strings.Trim(e[:i], "[]")), strings.TrimSpace(e[i+1:])
		if host == "" || port == "" {
			return nil, fmt.Errorf("entry %q", e)
		}
		if port != "*" {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("entry %q", e)
			}
		}
		host = strings.ToLower(host)
		switch {
		case strings.HasPrefix(host, "*.") && port == "*":
			m.tcpWildAny = append(m.tcpWildAny, host[1:])
		case strings.HasPrefix(host, "*."):
			m.tcpWild = append(m.tcpWild, [2]string{host[1:], port})
		case port == "*":
			m.tcpAnyPort[host] = true
		default:
			m.tcpExact[host+":"+port] = true
		}
	}
	for _, c := range cidrs {
		m.cidrs = append(m.cidrs, netip.MustParsePrefix(c).Masked())
	}
	return m, nil
}

func (m *forgeModel) domainAllows(host string) bool {
	host = strings.ToLower(host)
	switch m.mode {
	case "dev-open":
		return true
	case "allowlist":
	default:
		return false
	}
	if m.exact[host] {
		return true
	}
	for _, s := range m.wild {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

func (m *forgeModel) tcpAllows(host, port string) bool {
	host = strings.ToLower(host)
	if m.tcpExact[host+":"+port] || m.tcpAnyPort[host] {
		return true
	}
	for _, w := range m.tcpWild {
		if w[1] == port && strings.HasSuffix(host, w[0]) {
			return true
		}
	}
	for _, s := range m.tcpWildAny {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// blocked is Forge's IsBlockedIP, with allowed_private_cidrs as Forge
// means them: an exemption from the private block only.
func (m *forgeModel) blocked(ip netip.Addr) bool {
	if forgeAlways(ip) {
		return true
	}
	if !m.allowPrivate && forgePrivate(ip) {
		for _, c := range m.cidrs {
			if c.Contains(ip.Unmap()) {
				return false
			}
		}
		return true
	}
	return false
}

var (
	forgeAlwaysRanges  = prefixes("169.254.169.254/32", "127.0.0.0/8", "::1/128", "0.0.0.0/8")
	forgePrivateRanges = prefixes("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "fc00::/7", "fe80::/10")
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// forgeIsBlocked is IsBlockedIP(ip, allowPrivate) as Forge's tests pin it.
func forgeIsBlocked(ip netip.Addr, allowPrivate bool) bool {
	m := &forgeModel{allowPrivate: allowPrivate}
	return m.blocked(ip)
}

func forgeAlways(ip netip.Addr) bool  { return forgeClass(ip, forgeAlwaysRanges, forgeAlways) }
func forgePrivate(ip netip.Addr) bool { return forgeClass(ip, forgePrivateRanges, forgePrivate) }

// forgeClass: an IPv6 transition address is judged by the IPv4 inside
// (NAT64 /96 and 64:ff9b:1::/48 by the last 32 bits, 6to4 by bits 16–47,
// Teredo by the inverted last 32 bits); other addresses by the ranges.
func forgeClass(ip netip.Addr, ranges []netip.Prefix, again func(netip.Addr) bool) bool {
	if !ip.IsValid() {
		return true // nil IP: fail closed
	}
	ip = ip.WithZone("")
	if ip.Is6() && !ip.Is4In6() {
		b := ip.As16()
		switch {
		case netip.MustParsePrefix("64:ff9b::/96").Contains(ip), netip.MustParsePrefix("64:ff9b:1::/48").Contains(ip):
			return again(netip.AddrFrom4([4]byte(b[12:16])))
		case b[0] == 0x20 && b[1] == 0x02:
			return again(netip.AddrFrom4([4]byte(b[2:6])))
		case b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0:
			return again(netip.AddrFrom4([4]byte{b[12] ^ 0xff, b[13] ^ 0xff, b[14] ^ 0xff, b[15] ^ 0xff}))
		}
	}
	ip = ip.Unmap()
	for _, r := range ranges {
		if r.Contains(ip) {
			return true
		}
	}
	return false
}

// supervisorBlocked is the supervisor's address decision (Decide steps 1
// and 3) for one address.
func supervisorBlocked(ip netip.Addr, allowPrivate bool) bool {
	k := ClassifyAddr(ip)
	return k.AlwaysBlocked() || k.IsPrivate() && !allowPrivate
}

// classifyAddrDiff names why the supervisor blocks an address Forge allows.
func classifyAddrDiff(ip netip.Addr) string {
	k := ClassifyAddr(ip)
	direct := ip.Unmap()
	switch {
	case direct.Is6() && (netip.MustParsePrefix("::ffff:0:0:0/96").Contains(direct) || netip.MustParsePrefix("::/96").Contains(direct) && !direct.IsUnspecified() && !direct.IsLoopback() ||
		netip.MustParsePrefix("64:ff9b:1::/48").Contains(direct) || netip.MustParsePrefix("2001::/32").Contains(direct)):
		return diffEmbedded
	case k == AddrMetadata:
		return diffMetadata
	case k.AlwaysBlocked():
		return diffAlwaysBlocked
	case k.IsPrivate():
		return diffPrivateRanges
	}
	return ""
}

// diffLog collects differences by class; unexplained ones fail the test.
type diffLog struct {
	t        *testing.T
	cases    int
	byClass  map[string]int
	examples map[string]string
}

func newDiffLog(t *testing.T) *diffLog {
	return &diffLog{t: t, byClass: map[string]int{}, examples: map[string]string{}}
}

func (d *diffLog) same() { d.cases++ }

func (d *diffLog) differ(class, what string) {
	d.t.Helper()
	d.cases++
	if class == "" {
		d.t.Errorf("unexplained difference from Forge: %s", what)
		return
	}
	d.byClass[class]++
	if _, ok := d.examples[class]; !ok {
		d.examples[class] = what
	}
}

func (d *diffLog) report() {
	classes := make([]string, 0, len(d.byClass))
	for c := range d.byClass {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	total := 0
	for _, c := range classes {
		total += d.byClass[c]
		d.t.Logf("%-22s %5d  e.g. %s", c, d.byClass[c], d.examples[c])
	}
	d.t.Logf("%d cases, %d differences, all classified (docs/forge-compat.md)", d.cases, total)
}

// nameDiff compares one name question: Forge's answer, and the
// supervisor's verdict for it.
func (d *diffLog) nameDiff(what, host string, port uint16, forge bool, v Verdict) {
	d.t.Helper()
	switch {
	case forge == v.Allow:
		d.same()
	case forge && v.Reason == ReasonPortNotAllowed && port != 80 && port != 443:
		d.differ(diffWebPortsOnly, what)
	case forge && (v.Reason == ReasonInvalidName || v.Reason == ReasonIPLiteral):
		d.differ(diffInvalidName, what)
	case !forge && v.Allow:
		// The one case where the supervisor allows what Forge denies: the
		// same name in another spelling. Anything else is a failure.
		if n, err := NormalizeName(host); err == nil && n != strings.ToLower(host) {
			d.differ(diffSameNameSpelled, what)
			return
		}
		d.differ("", what+": FORGE DENIES, THE SUPERVISOR ALLOWS")
	default:
		d.differ("", fmt.Sprintf("%s: Forge %t, supervisor %+v", what, forge, v))
	}
}

func jsonPolicy(t *testing.T, mode string, domains, tcp []string, allowPrivate bool, cidrs []string) (*Policy, error) {
	t.Helper()
	doc := map[string]any{"mode": mode, "allowed_domains": domains, "allowed_tcp": tcp, "allowed_private_cidrs": cidrs}
	if allowPrivate {
		doc["allow_private_ips"] = true
	}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return Parse(data)
}

// TestForgeOwnCases runs the calls of Forge's own tests.
func TestForgeOwnCases(t *testing.T) {
	d := newDiffLog(t)
	// DomainMatcher: mode, domains, host, Forge's answer.
	for _, c := range []struct {
		mode    string
		domains []string
		host    string
		allowed bool
	}{
		{"allowlist", []string{"api.openai.com"}, "api.openai.com", true},
		{"allowlist", []string{"api.openai.com"}, "evil.com", false},
		{"allowlist", []string{"*.github.com"}, "api.github.com", true},
		{"allowlist", []string{"*.github.com"}, "github.com", false},
		{"allowlist", []string{"api.openai.com"}, "API.OpenAI.COM", true},
		{"allowlist", []string{}, "example.com", false},
		{"allowlist", []string{"  api.openai.com  "}, "api.openai.com", true},
		{"dev-open", nil, "anything.com", true},
		{"deny-all", []string{"api.openai.com"}, "api.openai.com", false},
	} {
		p, err := jsonPolicy(t, c.mode, c.domains, nil, false, nil)
		if err != nil {
			t.Fatalf("Forge's DomainMatcher case %q: %v", c.domains, err)
		}
		d.nameDiff(fmt.Sprintf("DomainMatcher(%s %q).IsAllowed(%q)", c.mode, c.domains, c.host), c.host, 443, c.allowed, p.CheckName(c.host, 443))
	}
	// TCPMatcher: entries, then (host, port, Forge's answer) calls.
	type call struct {
		host, port string
		allowed    bool
	}
	for _, c := range []struct {
		entries []string
		calls   []call
	}{
		{[]string{"db.internal:5432"}, []call{{"db.internal", "5432", true}, {"db.internal", "5433", false}, {"other.internal", "5432", false}}},
		{[]string{"DB.Internal:5432"}, []call{{"db.internal", "5432", true}, {"DB.INTERNAL", "5432", true}}},
		{[]string{"*.brokers.internal:9092"}, []call{{"broker1.brokers.internal", "9092", true}, {"cluster-a.brokers.internal", "9092", true},
			{"brokers.internal", "9092", false}, {"broker1.brokers.internal", "9093", false}}},
		{[]string{"db.internal:*"}, []call{{"db.internal", "5432", true}, {"db.internal", "65535", true}, {"other.internal", "5432", false}}},
		{[]string{"*.internal:*"}, []call{{"db.internal", "5432", true}, {"broker1.brokers.internal", "9092", true}, {"external.com", "5432", false}}},
		{nil, []call{{"any", "80", false}}},
		{[]string{"[::1]:5432"}, []call{{"::1", "5432", true}, {"[::1]", "5432", false}, {"::1", "5433", false}}},
		{[]string{"[2001:db8::1]:*"}, []call{{"2001:db8::1", "5432", true}}},
		{[]string{"db.internal:5432", "redis.internal:6379", "*.brokers.internal:9092", "metrics.internal:*"}, []call{
			{"db.internal", "5432", true}, {"db.internal", "5433", false}, {"redis.internal", "6379", true},
			{"broker1.brokers.internal", "9092", true}, {"broker1.brokers.internal", "9091", false},
			{"metrics.internal", "9090", true}, {"metrics.internal", "3000", true}, {"outside.example.com", "5432", false}}},
	} {
		p, err := jsonPolicy(t, "allowlist", nil, c.entries, true, nil)
		if err != nil {
			t.Fatalf("Forge's TCPMatcher case %q: %v", c.entries, err)
		}
		for _, k := range c.calls {
			port, _ := strconv.Atoi(k.port)
			what := fmt.Sprintf("TCPMatcher(%q).IsAllowed(%q, %s)", c.entries, k.host, k.port)
			if ip, err := netip.ParseAddr(k.host); err == nil {
				v := p.Decide(context.Background(), Request{IP: ip, Port: uint16(port)}, nil)
				switch {
				case v.Allow == k.allowed:
					d.same()
				case k.allowed && ClassifyAddr(ip) == AddrLoopback:
					d.differ(diffLoopbackRule, what)
				default:
					d.differ("", fmt.Sprintf("%s: Forge %t, supervisor %+v", what, k.allowed, v))
				}
				continue
			}
			d.nameDiff(what, k.host, uint16(port), k.allowed, p.CheckName(k.host, uint16(port)))
		}
	}
	// TCPMatcher entries Forge refuses: the supervisor refuses them too.
	for _, e := range []string{"db.internal", ":5432", "db.internal:", "db.internal:pgsql", "db.internal:0", "db.internal:99999", "db.internal:-1"} {
		if _, err := jsonPolicy(t, "allowlist", nil, []string{e}, false, nil); err == nil {
			d.differ("", fmt.Sprintf("NewTCPMatcher(%q) fails in Forge; the supervisor loads it", e))
		} else {
			d.same()
		}
	}
	// IsBlockedIP: address, allowPrivate, Forge's answer.
	for _, c := range []struct {
		ip           string
		allowPrivate bool
		blocked      bool
	}{
		{"", false, true},
		{"127.0.0.1", false, true}, {"127.0.0.1", true, true},
		{"169.254.169.254", false, true}, {"169.254.169.254", true, true},
		{"::1", false, true}, {"::1", true, true}, {"0.0.0.0", false, true},
		{"10.0.0.1", false, true}, {"10.0.0.1", true, false},
		{"172.16.0.1", false, true}, {"172.16.0.1", true, false},
		{"192.168.1.1", false, true}, {"192.168.1.1", true, false},
		{"169.254.1.1", false, true}, {"169.254.1.1", true, false},
		{"100.64.0.1", false, true}, {"100.64.0.1", true, false},
		{"fd00::1", false, true}, {"fd00::1", true, false},
		{"fe80::1", false, true}, {"fe80::1", true, false},
		{"8.8.8.8", false, false}, {"8.8.8.8", true, false},
		{"2607:f8b0:4004:800::200e", false, false},
		{"64:ff9b::127.0.0.1", false, true}, {"64:ff9b::127.0.0.1", true, true},
		{"64:ff9b::10.0.0.1", false, true}, {"64:ff9b::10.0.0.1", true, false},
		{"64:ff9b::8.8.8.8", false, false},
		{"64:ff9b::169.254.169.254", false, true}, {"64:ff9b::169.254.169.254", true, true},
		{"2002:7f00:0001::", false, true}, {"2002:0a00:0001::", false, true}, {"2002:0a00:0001::", true, false},
		{"2002:0808:0808::", false, false}, {"2002:a9fe:a9fe::", false, true},
		{"2001:0000:4136:e378:8000:63bf:80ff:fffe", false, true},
		{"2001:0000:4136:e378:8000:63bf:f5ff:fffe", false, true},
		{"2001:0000:4136:e378:8000:63bf:f5ff:fffe", true, false},
	} {
		var ip netip.Addr
		if c.ip != "" {
			ip = netip.MustParseAddr(c.ip)
		}
		if forgeIsBlocked(ip, c.allowPrivate) != c.blocked {
			t.Errorf("the Forge model disagrees with Forge's own test: IsBlockedIP(%s, %t) = %t", c.ip, c.allowPrivate, c.blocked)
		}
		d.addrDiff(fmt.Sprintf("IsBlockedIP(%s, %t)", c.ip, c.allowPrivate), ip, c.allowPrivate, c.blocked)
	}
	d.report()
}

func (d *diffLog) addrDiff(what string, ip netip.Addr, allowPrivate, forgeBlocked bool) {
	d.t.Helper()
	ours := supervisorBlocked(ip, allowPrivate)
	switch {
	case ours == forgeBlocked:
		d.same()
	case ours:
		d.differ(classifyAddrDiff(ip), what)
	default:
		d.differ("", what+": FORGE BLOCKS, THE SUPERVISOR ALLOWS")
	}
}

// TestForgeDifferentialCorpus runs a generated corpus against the Forge
// model: every address kind in every IPv6 embedding, the host-name corpus
// and its variants against exact, wildcard and TCP rules, and whole
// connections with allowed_private_cidrs.
func TestForgeDifferentialCorpus(t *testing.T) {
	d := newDiffLog(t)

	// Addresses.
	v4s := []string{"8.8.8.8", "198.51.100.7", "10.1.2.3", "172.20.0.5", "192.168.1.50", "100.64.0.1", "100.100.100.200",
		"169.254.1.1", "169.254.169.254", "169.254.170.2", "168.63.129.16", "192.0.0.192", "127.0.0.1", "127.13.37.1",
		"0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "198.18.0.1", "203.0.113.9"}
	embed := map[string]func([4]byte) netip.Addr{
		"plain":    func(b [4]byte) netip.Addr { return netip.AddrFrom4(b) },
		"mapped":   func(b [4]byte) netip.Addr { return netip.AddrFrom16(netip.AddrFrom4(b).As16()) },
		"nat64":    func(b [4]byte) netip.Addr { return v6with(0x0064ff9b, 0, 0, 0, b, 12) },
		"nat64-lu": func(b [4]byte) netip.Addr { return v6with(0x0064ff9b, 0x00010000, 0, 0, b, 12) },
		"nat64-lu48": func(b [4]byte) netip.Addr {
			a := netip.MustParseAddr("64:ff9b:1::").As16()
			a[6], a[7], a[9], a[10] = b[0], b[1], b[2], b[3]
			return netip.AddrFrom16(a)
		},
		"6to4": func(b [4]byte) netip.Addr {
			a := netip.MustParseAddr("2002::1").As16()
			copy(a[2:6], b[:])
			return netip.AddrFrom16(a)
		},
		"teredo": func(b [4]byte) netip.Addr {
			a := netip.MustParseAddr("2001:0:4136:e378:8000:63bf::").As16()
			for i := range 4 {
				a[12+i] = b[i] ^ 0xff
			}
			return netip.AddrFrom16(a)
		},
		"siit":   func(b [4]byte) netip.Addr { return v6with(0, 0, 0xffff0000, 0, b, 12) },
		"compat": func(b [4]byte) netip.Addr { return v6with(0, 0, 0, 0, b, 12) },
	}
	v6s := []string{"2001:db8::1", "2606:4700::1111", "fd00::12", "fc00::1", "fe80::1", "fec0::1", "fd00:ec2::254", "fd20:ce::254",
		"::1", "::", "ff02::1", "100::1", "64:ff9b:1::"}
	for _, allowPrivate := range []bool{false, true} {
		for _, s := range v4s {
			b := netip.MustParseAddr(s).As4()
			for name, f := range embed {
				ip := f(b)
				d.addrDiff(fmt.Sprintf("%s %s (%s) allowPrivate=%t", name, s, ip, allowPrivate), ip, allowPrivate, forgeIsBlocked(ip, allowPrivate))
			}
		}
		for _, s := range v6s {
			ip := netip.MustParseAddr(s)
			d.addrDiff(fmt.Sprintf("%s allowPrivate=%t", s, allowPrivate), ip, allowPrivate, forgeIsBlocked(ip, allowPrivate))
		}
	}

	// Names: a third of the corpus exact, a third by wildcard, the rest
	// unlisted; each probed as written, uppercased, with a trailing dot,
	// and with lookalikes of its suffix, on web and non-web ports.
	names := loadHostnames(t)
	var domains, tcp []string
	for i, n := range names {
		switch i % 6 {
		case 0, 1:
			domains = append(domains, "  "+n+" ") // as Forge writes, trimmed
		case 2:
			if s := registrable(n); s != n {
				domains = append(domains, "*."+s)
			}
		case 3:
			tcp = append(tcp, n+":5432")
		case 4:
			if s := registrable(n); s != n {
				tcp = append(tcp, "*."+s+":*")
			}
		}
	}
	p, err := jsonPolicy(t, "allowlist", domains, tcp, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	fm, err := newForgeModel("allowlist", domains, tcp, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	probe := func(host string) {
		for _, port := range []uint16{443, 80, 5432, 22} {
			forge := fm.domainAllows(host) || fm.tcpAllows(host, strconv.Itoa(int(port)))
			d.nameDiff(fmt.Sprintf("%q:%d", host, port), host, port, forge, p.CheckName(host, port))
		}
	}
	for _, n := range names {
		s := registrable(n)
		for _, host := range []string{n, strings.ToUpper(n), n + ".", "x." + n, "evil" + s, s + ".evil.test", "a..b." + s, "a b." + s} {
			probe(host)
		}
	}
	for _, host := range []string{"bücher.example", "xn--bcher-kva.example", "ＡＰＩ.openai.com", "_mongodb._tcp.cluster0.abcde.mongodb.net", "0177.0.0.1", "2130706433"} {
		probe(host)
	}

	// Whole connections: Forge allows when a matcher allows the name and
	// IsBlockedIP (with CIDRs as exemptions) does not block the address.
	conns := []string{"pg.internal:5432", "*.svc.internal:8443"}
	cidrs := []string{"10.20.0.0/16", "203.0.113.0/24", "0.0.0.0/0"}
	for _, cidrSet := range [][]string{nil, cidrs[:1], cidrs[1:2], cidrs[2:]} {
		for _, allowPrivate := range []bool{false, true} {
			domains := []string{"api.internal", "*.web.internal", "192.168.1.50", "fd00::12"}
			p, err := jsonPolicy(t, "allowlist", domains, conns, allowPrivate, cidrSet)
			if err != nil {
				t.Fatal(err)
			}
			fm, _ := newForgeModel("allowlist", domains, conns, allowPrivate, cidrSet)
			for _, host := range []string{"api.internal", "x.web.internal", "pg.internal", "a.svc.internal", "evil.internal", "192.168.1.50", "fd00::12"} {
				for _, ipText := range []string{"10.20.0.7", "10.21.0.7", "192.168.1.50", "203.0.113.9", "fd00::12", "169.254.169.254", "127.0.0.1"} {
					ip := netip.MustParseAddr(ipText)
					for _, port := range []uint16{443, 5432, 8443, 22} {
						name := host
						if _, err := netip.ParseAddr(host); err == nil {
							if host != ipText {
								continue // an IP literal is its own destination
							}
							name = ""
						}
						forge := (fm.domainAllows(host) || fm.tcpAllows(host, strconv.Itoa(int(port)))) && !fm.blocked(ip)
						res := fakeResolver{resolves: map[string][]netip.Addr{host: {ip}}}
						v := p.Decide(context.Background(), Request{Name: name, IP: ip, Port: port}, res)
						what := fmt.Sprintf("%s→%s:%d cidrs=%q allowPrivate=%t", host, ipText, port, cidrSet, allowPrivate)
						switch {
						case forge == v.Allow:
							d.same()
						case forge && (v.Reason == ReasonPortNotAllowed || v.Reason == ReasonNoNameForIP) && port != 80 && port != 443:
							d.differ(diffWebPortsOnly, what)
						case forge && slices.Contains([]string{ReasonMetadata, ReasonBlockedRange, ReasonPrivateIP}, v.Reason):
							d.differ(classifyAddrDiff(ip), what)
						case !forge && v.Allow:
							d.differ("", what+": FORGE DENIES, THE SUPERVISOR ALLOWS")
						default:
							d.differ("", fmt.Sprintf("%s: Forge %t, supervisor %+v", what, forge, v))
						}
					}
				}
			}
		}
	}
	d.report()
	if d.cases < 5000 {
		t.Errorf("only %d cases", d.cases)
	}
}

// v6with builds an IPv6 address from four 32-bit words and puts b at
// byte offset at.
func v6with(w0, w1, w2, w3 uint32, b [4]byte, at int) netip.Addr {
	var a [16]byte
	for i, w := range []uint32{w0, w1, w2, w3} {
		a[4*i], a[4*i+1], a[4*i+2], a[4*i+3] = byte(w>>24), byte(w>>16), byte(w>>8), byte(w)
	}
	copy(a[at:at+4], b[:])
	return netip.AddrFrom16(a)
}
