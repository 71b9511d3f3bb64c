package main

import (
	"crypto/rand"
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
func exfilName(vector string) string {
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
	// The marker goes first so the test finds the query in the world's log.
	return marker(vector) + "." + strings.Join(labels, ".") + ".wild.test"
}

func dnsExfil(r *Result) {
	dnsQuery("udp", worldV4+":53", exfilName(r.Vector), dns.TypeA)(r)
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
