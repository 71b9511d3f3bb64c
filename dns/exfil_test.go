package dns

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/forge/forge-supervisor/policy"
)

// TestDNSNamesAllowed: names DNS accepts (RFC 2181) are answered when a
// rule allows them — SRV of every mongodb+srv client, the gRPC client's
// _grpc_config TXT, _dmarc, "--" labels, underscores in host labels. They
// used to be refused as invalid_name, even in dev-open (issue #12).
func TestDNSNamesAllowed(t *testing.T) {
	allowlist := mustParse(t, `{"mode":"allowlist","allowed_domains":["*.mongodb.net","*.allowed.test","my_svc.internal"]}`)
	devOpen := mustParse(t, `{"mode":"dev-open"}`)
	for _, name := range []string{
		"_mongodb._tcp.cluster0.xxxx.mongodb.net.",
		"_grpc_config.api.allowed.test.",
		"_dmarc.allowed.test.",
		"r3---sn-abc.allowed.test.",
		"my_svc.internal.",
		"MY_SVC.Internal.",
	} {
		for _, pol := range []*policy.Policy{allowlist, devOpen} {
			if _, v := decide(pol, name, nameLimits{}, nil, nil); !v.Allow {
				t.Errorf("%s (%s): %+v, want allowed", name, pol.Mode(), v)
			}
		}
	}
	if _, v := decide(allowlist, "bad!name.allowed.test.", nameLimits{}, nil, nil); v.Allow || v.Reason != policy.ReasonInvalidName {
		t.Errorf("bad!name: %+v, want invalid_name", v)
	}
}

// TestExfilGuardBoundsEveryPath: under a wildcard the agent's queries and
// the supervisor's own lookups (Resolve: explicit proxy, SNI verification)
// draw on one budget; beyond it names are refused with exfil_budget,
// audited, and never sent upstream; names already admitted stay free, and
// the budget comes back with time.
func TestExfilGuardBoundsEveryPath(t *testing.T) {
	var asked atomic.Int64
	up := startUpstream(t, func(_ string, q *dns.Msg) *dns.Msg {
		asked.Add(1)
		return answer(t, q, q.Question[0].Name+" 300 IN A 198.51.100.1")
	})
	var clock atomic.Int64 // nanoseconds since start
	start := time.Now()
	now := func() time.Time { return start.Add(time.Duration(clock.Load())) }
	const budget = 1024
	p := startProxy(t, mustParse(t, `{"mode":"allowlist","allowed_domains":["*.allowed.test","exact.test"]}`), []string{up.addr},
		func(c *Config) { c.WildcardBudget, c.Now = budget, now })

	label := strings.Repeat("x", 60)
	name := func(i int) string { return fmt.Sprintf("%03d.%s.allowed.test", i, label) } // 65 agent-chosen bytes
	cost := len(name(0)) - len("allowed.test")
	ctx := context.Background()
	admitted, refusedAt := 0, -1
	for i := 0; i < 3*budget/cost; i++ {
		var ok bool
		if i%2 == 0 {
			ok = ask(t, "udp", p.addr, query(name(i), dns.TypeA)).Rcode == dns.RcodeSuccess
		} else {
			_, err := p.Resolve(ctx, name(i))
			ok = err == nil
		}
		if !ok {
			refusedAt = i
			break
		}
		admitted += cost
	}
	if refusedAt < 0 || admitted > budget {
		t.Fatalf("admitted %d bytes under the wildcard (refused at %d), budget %d", admitted, refusedAt, budget)
	}
	if admitted < budget-cost {
		t.Errorf("admitted only %d bytes of a %d budget", admitted, budget)
	}
	before := asked.Load()
	if _, err := p.Resolve(ctx, name(900)); err == nil || !strings.Contains(err.Error(), policy.ReasonExfilBudget) {
		t.Errorf("Resolve over budget: %v", err)
	}
	if r := ask(t, "tcp", p.addr, query(name(901), dns.TypeTXT)); r.Rcode != dns.RcodeRefused {
		t.Errorf("query over budget: %s", dns.RcodeToString[r.Rcode])
	}
	if n := asked.Load() - before; n != 0 {
		t.Errorf("%d queries over budget reached the upstream", n)
	}
	// Admitted names are free; exact rules are never charged.
	if r := ask(t, "udp", p.addr, query(name(0), dns.TypeAAAA)); r.Rcode != dns.RcodeSuccess {
		t.Errorf("admitted name again: %s", dns.RcodeToString[r.Rcode])
	}
	if r := ask(t, "udp", p.addr, query("exact.test", dns.TypeA)); r.Rcode != dns.RcodeSuccess {
		t.Errorf("exact rule: %s", dns.RcodeToString[r.Rcode])
	}
	// Refusals are audited as denials with the reason and the rule: every
	// query of the agent, and the supervisor's own lookups once per rule
	// per 10 s (a flood of fresh SNIs does not double the log).
	budgetLines := func() int {
		n := 0
		for _, e := range auditLines(p.logs, "dns_denied") {
			if m := e.ContextMap(); m["reason"] == policy.ReasonExfilBudget && m["rule"] == "*.allowed.test" {
				n++
			}
		}
		return n
	}
	denied := budgetLines()
	if denied < 2 {
		t.Errorf("%d dns_denied exfil_budget lines, want the query's and the first lookup's", denied)
	}
	for i := range 10 {
		_, _ = p.Resolve(ctx, name(910+i))
	}
	if n := budgetLines(); n != denied {
		t.Errorf("10 more refused lookups wrote %d more lines, want none within 10 s", n-denied)
	}
	// A minute later the budget is back.
	clock.Add(int64(time.Minute))
	if _, err := p.Resolve(ctx, name(902)); err != nil {
		t.Errorf("a minute later: %v", err)
	}
}
