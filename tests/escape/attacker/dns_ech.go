package main

import (
	"time"

	"github.com/miekg/dns"
)

// echName has an HTTPS record with an ECH config at the world's resolver
// (tests/escape/world_test.go). With it a client hides the name it
// connects to behind the config's outer name, so the supervisor would see
// only the outer SNI: the DNS proxy must strip the ech SvcParam.
const echName = "ech.wild.test."

func dnsHTTPSECH(r *Result) {
	r.Queries = append(r.Queries, Query{Qname: echName, Qtype: "HTTPS"})
	m := new(dns.Msg)
	m.SetQuestion(echName, dns.TypeHTTPS)
	m.SetEdns0(1232, false)
	resp, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, worldV4+":53")
	if err != nil {
		r.note("query: %v", err)
		return
	}
	for _, rr := range resp.Answer {
		https, ok := rr.(*dns.HTTPS)
		if !ok {
			continue
		}
		for _, kv := range https.Value {
			if kv.Key() == dns.SVCB_ECHCONFIG {
				r.escape("ECH config passed through: %s", rr.String())
				return
			}
		}
		r.note("HTTPS record without ech: %s", rr.String())
		return
	}
	r.note("rcode %s, no HTTPS record", dns.RcodeToString[resp.Rcode])
}
