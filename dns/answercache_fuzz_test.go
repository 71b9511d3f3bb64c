package dns

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzCachedAnswer runs any upstream answer the walker accepts through the
// answer cache: making an entry, serving it aged, respelling its question.
// It must never panic; an entry's copy is as long as the entry and has its
// ID zeroed; aging only lowers TTLs; and when miekg unpacks the upstream
// answer, it unpacks the served copy too, with the same records, an OPT
// without options, and no ech SvcParam where the proxy stripped them.
func FuzzCachedAnswer(f *testing.F) {
	qb := packedQuery(f, "www.allowed.test", dns.TypeA, 0x4242)
	seed := func(m *dns.Msg, compress bool) { f.Add(packedAnswer(f, m, compress), uint32(30)) }
	const soa = "allowed.test. 3600 IN SOA ns.allowed.test. admin.allowed.test. 1 7200 900 1209600 30"
	for _, compress := range []bool{false, true} {
		seed(replyTo(f, qb, "www.allowed.test. 30 IN CNAME edge.cdn.test.", "edge.cdn.test. 600 IN CNAME e1.cdn.test.", "e1.cdn.test. 300 IN A 198.51.100.1"), compress)
		m := replyTo(f, qb)
		m.Rcode = dns.RcodeNameError
		nsrr, _ := dns.NewRR(soa)
		m.Ns = []dns.RR{nsrr}
		seed(m, compress)
		m = replyTo(f, qb, `www.allowed.test. 300 IN HTTPS 1 . alpn="h2" ech="AEX+DQBBpQAgACB/RJQvYL2fqhSI4mV8QhF6QPbPNl7Y3l0v1aFmeHdbIAAEAAEAAQASY2xvdWRmbGFyZS1lY2guY29tAAA="`)
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		seed(m, compress)
	}
	key := answerKey{name: "www.allowed.test", qtype: dns.TypeA, edns: true, do: true}
	stored := time.Unix(5_000_000, 0)
	f.Fuzz(func(t *testing.T, raw []byte, age uint32) {
		var idx [stackRRs]rrRef
		msg := append([]byte(nil), raw...)
		a, err := parseAnswer(msg, qb, idx[:])
		if err != nil {
			return
		}
		addrs := wireChainAddrs(msg, a)
		hadECH := a.ech
		if hadECH {
			if msg, err = withoutECH(msg); err != nil {
				return // the proxy answers SERVFAIL
			}
			if a, err = parseAnswer(msg, qb, idx[:]); err != nil {
				t.Fatalf("walker refuses the answer repacked without ech: %v", err)
			}
		}
		e, ok := newCachedAnswer(key, msg, a, addrs, stored)
		if !ok {
			return
		}
		if !e.expires.After(stored) || e.expires.Sub(stored) > maxPositiveTTL {
			t.Fatalf("entry lives %v", e.expires.Sub(stored))
		}
		elapsed := time.Duration(age%100_000) * time.Second
		out := e.copyAnswer(make([]byte, 0, maxUpstreamMsg), elapsed)
		if len(out) != len(e.msg) || binary.BigEndian.Uint16(out) != 0 {
			t.Fatalf("copy of %d bytes (id %#x) from an entry of %d", len(out), binary.BigEndian.Uint16(out), len(e.msg))
		}
		for _, off := range e.ttlOffs {
			if binary.BigEndian.Uint32(out[off:]) > binary.BigEndian.Uint32(e.msg[off:]) {
				t.Fatal("aging raised a TTL")
			}
		}
		setQuestionSpelling(out, "WWW.Allowed.Test.")
		orig, got := new(dns.Msg), new(dns.Msg)
		if orig.Unpack(raw) != nil {
			return
		}
		if err := got.Unpack(out); err != nil {
			t.Fatalf("miekg unpacks the upstream answer but not the cached copy: %v", err)
		}
		if len(got.Answer) != len(orig.Answer) || len(got.Ns) != len(orig.Ns) {
			t.Fatalf("cached copy has %d/%d records, upstream %d/%d", len(got.Answer), len(got.Ns), len(orig.Answer), len(orig.Ns))
		}
		if opt := got.IsEdns0(); opt != nil && len(opt.Option) != 0 {
			t.Fatalf("cached copy keeps OPT options %v", opt.Option)
		}
		if hadECH && bytes.Contains([]byte(got.String()), []byte("ech=")) {
			t.Fatal("cached copy carries ech")
		}
	})
}
