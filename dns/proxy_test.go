package dns

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
)

// worldAnswers is an upstream that knows a few names of every type.
func worldAnswers(t testing.TB) handleFunc {
	return func(_ string, q *dns.Msg) *dns.Msg {
		n := q.Question[0].Name
		switch q.Question[0].Qtype {
		case dns.TypeA:
			return answer(t, q, n+" 300 IN A 198.51.100.1")
		case dns.TypeAAAA:
			return answer(t, q, n+" 300 IN AAAA 2001:db8::1")
		case dns.TypeCNAME:
			return answer(t, q, n+" 300 IN CNAME target.allowed.test.")
		case dns.TypeTXT:
			return answer(t, q, n+` 300 IN TXT "v=spf1 -all"`)
		case dns.TypeHTTPS:
			return answer(t, q, n+` 300 IN HTTPS 1 . alpn="h2,h3"`)
		}
		return answer(t, q)
	}
}

func TestAllowedQueriesAnswered(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	p := startProxy(t, allowlist("allowed.test", "*.allowed.test"), []string{up.addr})
	tests := []struct {
		qtype uint16
		want  string // answer RR as text
	}{
		{dns.TypeA, "www.allowed.test.\t300\tIN\tA\t198.51.100.1"},
		{dns.TypeAAAA, "www.allowed.test.\t300\tIN\tAAAA\t2001:db8::1"},
		{dns.TypeCNAME, "www.allowed.test.\t300\tIN\tCNAME\ttarget.allowed.test."},
		{dns.TypeTXT, "www.allowed.test.\t300\tIN\tTXT\t\"v=spf1 -all\""},
		{dns.TypeHTTPS, "www.allowed.test.\t300\tIN\tHTTPS\t1 . alpn=\"h2,h3\""},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			name := fmt.Sprintf("%s/%s", network, dns.TypeToString[tt.qtype])
			t.Run(name, func(t *testing.T) {
				q := query("www.allowed.test", tt.qtype)
				q.Id = 0x4242
				r := ask(t, network, p.addr, q)
				if r.Id != 0x4242 || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
					t.Fatalf("reply id %#x rcode %s answers %d, want id 0x4242 NOERROR 1", r.Id, dns.RcodeToString[r.Rcode], len(r.Answer))
				}
				if got := r.Answer[0].String(); got != tt.want {
					t.Errorf("answer %q, want %q", got, tt.want)
				}
			})
		}
	}
	lines := auditLines(p.logs, obs.MsgDNSAllowed)
	if len(lines) != 2*len(tests) {
		t.Fatalf("%d dns_allowed lines, want %d (one per query)", len(lines), 2*len(tests))
	}
	e := lines[0]
	for k, want := range map[string]any{
		"qname": "www.allowed.test", "qtype": "A", "rcode": "NOERROR",
		"reason": policy.ReasonAllowedDomain, "rule": "*.allowed.test", "answers": int64(1),
	} {
		if got := field(e, k); got != want {
			t.Errorf("audit field %s = %v, want %v", k, got, want)
		}
	}
	if n := len(auditLines(p.logs, obs.MsgDNSDenied)); n != 0 {
		t.Errorf("%d dns_denied lines for allowed queries", n)
	}
	// Learned A and AAAA (and nothing from CNAME/TXT/HTTPS answers).
	for _, ip := range []string{"198.51.100.1", "2001:db8::1"} {
		if !p.Cache().Knows("www.allowed.test", netip.MustParseAddr(ip)) {
			t.Errorf("cache does not know www.allowed.test → %s", ip)
		}
	}
}

func TestQueryIDRandomizedUpstream(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	// Without the answer cache, so that every query goes upstream.
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr}, noAnswerCache)
	const n = 8
	for range n {
		q := query("allowed.test", dns.TypeA)
		q.Id = 7
		if r := ask(t, "udp", p.addr, q); r.Id != 7 {
			t.Fatalf("reply id %d, want the agent's 7", r.Id)
		}
	}
	ids := map[uint16]bool{}
	for _, q := range up.received() {
		ids[q.Id] = true
	}
	if ids[7] && len(ids) == 1 || len(ids) < n/2 {
		t.Errorf("upstream saw ids %v for %d queries with id 7: not re-randomized", ids, n)
	}
}

func TestDeniedQueries(t *testing.T) {
	tests := []struct {
		name       string
		pol        decider
		opts       []proxyOpt
		qname      string
		wantRcode  int
		wantReason string
		wantRule   string
	}{
		{"not in allowlist", allowlist("allowed.test"), nil, "evil.test", dns.RcodeRefused, policy.ReasonNotAllowed, ""},
		{"nxdomain rcode", allowlist("allowed.test"), []proxyOpt{func(c *Config) { c.DenyRcode = dns.RcodeNameError }}, "evil.test", dns.RcodeNameError, policy.ReasonNotAllowed, ""},
		{"deny-all", &fakePolicy{mode: policy.ModeDenyAll, rules: []string{"allowed.test"}}, nil, "allowed.test", dns.RcodeRefused, policy.ReasonDenyAll, ""},
		{"no policy loaded", nil, nil, "allowed.test", dns.RcodeRefused, policy.ReasonNoPolicy, ""},
		{"label count cap under wildcard", allowlist("*.allowed.test"), []proxyOpt{func(c *Config) { c.MaxLabels = 4 }}, "a.b.c.allowed.test", dns.RcodeRefused, ReasonLabelLimit, "*.allowed.test"},
		{"label length cap under wildcard", allowlist("*.allowed.test"), []proxyOpt{func(c *Config) { c.MaxLabelLen = 16 }}, "aGVsbG8gd29ybGQgc2VjcmV0.allowed.test", dns.RcodeRefused, ReasonLabelLimit, "*.allowed.test"},
		{"escaped bytes in name", allowlist("*.allowed.test"), nil, `a\000b.allowed.test`, dns.RcodeRefused, policy.ReasonInvalidName, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, worldAnswers(t))
			p := startProxy(t, tt.pol, []string{up.addr}, tt.opts...)
			for _, network := range []string{"udp", "tcp"} {
				r := ask(t, network, p.addr, query(tt.qname, dns.TypeA))
				if r.Rcode != tt.wantRcode || len(r.Answer) != 0 {
					t.Errorf("%s: rcode %s with %d answers, want %s and none", network, dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[tt.wantRcode])
				}
			}
			if n := up.queries.Load(); n != 0 {
				t.Errorf("denied query reached the upstream %d times", n)
			}
			lines := waitAuditLines(p.logs, obs.MsgDNSDenied, 2)
			if len(lines) != 2 {
				t.Fatalf("%d dns_denied lines, want 2 (one per query)", len(lines))
			}
			for k, want := range map[string]any{
				"qtype": "A", "reason": tt.wantReason, "rule": tt.wantRule,
				"rcode": dns.RcodeToString[tt.wantRcode], "would_deny": false,
			} {
				if got := field(lines[0], k); got != want {
					t.Errorf("audit field %s = %v, want %v", k, got, want)
				}
			}
		})
	}
}

func TestDevOpenForwardsAndLogs(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	p := startProxy(t, &fakePolicy{mode: policy.ModeDevOpen}, []string{up.addr})
	r := ask(t, "udp", p.addr, query("anything.example", dns.TypeA))
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("dev-open: rcode %s, %d answers", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	lines := auditLines(p.logs, obs.MsgDNSAllowed)
	if len(lines) != 1 || field(lines[0], "reason") != policy.ReasonDevOpen {
		t.Fatalf("dev-open audit lines %v, want one dns_allowed with reason dev_open", lines)
	}
}

func TestDryRunForwardsWouldDeny(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr}, func(c *Config) { c.DryRun = true })
	r := ask(t, "udp", p.addr, query("evil.test", dns.TypeA))
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("dry run: rcode %s, %d answers; want the upstream's answer", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	lines := auditLines(p.logs, obs.MsgDNSAllowed)
	if len(lines) != 1 || field(lines[0], "would_deny") != true || field(lines[0], "reason") != policy.ReasonNotAllowed {
		t.Fatalf("dry run audit %v, want dns_allowed would_deny=true reason=not_in_allowlist", lines)
	}
	if p.Cache().Len() != 0 {
		t.Error("dry run learned addresses of a name the policy denies")
	}
}

func TestAnyGetsRFC8482Answer(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr})
	q := query("allowed.test", dns.TypeANY)
	q.SetEdns0(1232, true)
	r := ask(t, "udp", p.addr, q)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("ANY: rcode %s, %d answers", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	h, ok := r.Answer[0].(*dns.HINFO)
	if !ok || h.Cpu != "RFC8482" {
		t.Fatalf("ANY answer %v, want HINFO \"RFC8482\"", r.Answer[0])
	}
	if opt := r.IsEdns0(); opt == nil || !opt.Do() {
		t.Error("ANY answer lost the EDNS0 OPT / DO bit of the query")
	}
	if up.queries.Load() != 0 {
		t.Error("ANY was forwarded upstream")
	}
	if r := ask(t, "udp", p.addr, query("evil.test", dns.TypeANY)); r.Rcode != dns.RcodeRefused {
		t.Errorf("ANY for a denied name: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
}

func TestEDNSAndDOPassThrough(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr})
	q := query("allowed.test", dns.TypeA)
	q.SetEdns0(1400, true)
	r := ask(t, "udp", p.addr, q)
	if opt := r.IsEdns0(); opt == nil || !opt.Do() {
		t.Fatalf("answer OPT %v, want the upstream's OPT with DO", r.IsEdns0())
	}
	seen := up.received()
	if len(seen) != 1 {
		t.Fatalf("upstream saw %d queries", len(seen))
	}
	opt := seen[0].IsEdns0()
	if opt == nil || !opt.Do() || opt.UDPSize() != 1400 {
		t.Errorf("upstream query OPT %v, want the agent's (size 1400, DO)", opt)
	}
}

func TestUnsupportedQueries(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr})
	chaos := query("allowed.test", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	for _, q := range []*dns.Msg{chaos, query("allowed.test", dns.TypeAXFR)} {
		r := ask(t, "tcp", p.addr, q)
		if r.Rcode != dns.RcodeNotImplemented {
			t.Errorf("%s: rcode %s, want NOTIMP", q.Question[0].String(), dns.RcodeToString[r.Rcode])
		}
	}
	lines := auditLines(p.logs, obs.MsgDNSDenied)
	if len(lines) != 2 || field(lines[0], "reason") != ReasonUnsupported {
		t.Errorf("audit %v, want two dns_denied with reason %s", lines, ReasonUnsupported)
	}
	if up.queries.Load() != 0 {
		t.Error("unsupported query forwarded")
	}
}

func TestRateLimit(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr}, func(c *Config) {
		c.RateLimit = 1
		c.RateBurst = 5
	})
	refused := 0
	for range 20 {
		if r := ask(t, "udp", p.addr, query("allowed.test", dns.TypeA)); r.Rcode == dns.RcodeRefused {
			refused++
		}
	}
	if refused < 14 {
		t.Fatalf("%d of 20 queries refused at 1 qps with burst 5, want at least 14", refused)
	}
	events := auditLines(p.logs, obs.MsgDNSRateLimited)
	if len(events) != 1 {
		t.Fatalf("%d dns_rate_limited events, want exactly 1 per window", len(events))
	}
	if field(events[0], "reason") != obs.ReasonRateLimited || field(events[0], "qname") != "allowed.test" {
		t.Errorf("rate limit event fields %v", events[0].ContextMap())
	}
	if got := p.limited.Load(); got != int64(refused-1) {
		t.Errorf("RateLimited hook called %d times, want %d (refusals not carried by the event)", got, refused-1)
	}
	if n := len(auditLines(p.logs, obs.MsgDNSAllowed)); n != 20-refused {
		t.Errorf("%d dns_allowed lines, want %d", n, 20-refused)
	}
}

func TestRateLimiterRefillAndWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	rl := newRateLimiter(10, 2, func() time.Time { return now })
	steps := []struct {
		advance time.Duration
		ok      bool
		report  int
	}{
		{0, true, 0}, {0, true, 0}, // burst
		{0, false, 1}, // first refusal logs at once
		{0, false, 0}, {0, false, 0},
		{100 * time.Millisecond, true, 0}, // one token refilled
		{0, false, 0},
		{rateLogWindow, true, 0},
		{0, true, 0},
		{0, false, 4}, // next event covers the 4 refusals since the last one
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		ok, report := rl.allow(1)
		if ok != s.ok || report != s.report {
			t.Fatalf("step %d: allow = %v, report %d; want %v, %d", i, ok, report, s.ok, s.report)
		}
	}
	now = now.Add(time.Second)
	if ok, _ := rl.allow(3); ok {
		t.Error("took 3 tokens from a bucket of 2")
	}
	if ok, _ := rl.allow(2); !ok {
		t.Error("a refused take of 3 spent tokens")
	}
}
