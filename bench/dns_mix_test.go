package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// The DNS comparison asks what an agent's build asks: a few hundred names,
// some far more often than others (a registry, a CDN and the API are asked
// all the time, most dependencies once or twice), for A, AAAA and HTTPS
// (which browsers and curl ask beside the addresses).
const (
	mixNames   = 300
	mixQueries = 20000 // lines of the dnsperf file (it cycles through them)
	mixZipfS   = 1.1   // Zipf exponent of name popularity
	mixSeed    = 17
)

type mixQuery struct {
	name  string
	qtype uint16
}

// dnsMix returns the query sequence: names n0…n299.allowed.test drawn with
// Zipf popularity, 50% A, 35% AAAA, 15% HTTPS. It is the same on every run.
func dnsMix() []mixQuery {
	r := rand.New(rand.NewPCG(mixSeed, mixSeed))
	z := rand.NewZipf(r, mixZipfS, 1, mixNames-1)
	out := make([]mixQuery, mixQueries)
	for i := range out {
		qt := dns.TypeA
		switch p := r.IntN(100); {
		case p >= 85:
			qt = dns.TypeHTTPS
		case p >= 50:
			qt = dns.TypeAAAA
		}
		out[i] = mixQuery{name: fmt.Sprintf("n%d.allowed.test.", z.Uint64()), qtype: qt}
	}
	return out
}

// dnsperfData is the mix as a dnsperf input file.
func dnsperfData(mix []mixQuery) string {
	var sb strings.Builder
	for _, q := range mix {
		fmt.Fprintf(&sb, "%s %s\n", strings.TrimSuffix(q.name, "."), dns.TypeToString[q.qtype])
	}
	return sb.String()
}

// distinctShare is the share of queries in mix[:n] that ask a question
// asked before in it: the hit rate of a cache that keeps everything for
// the run (every answer's TTL outlives it).
func distinctShare(mix []mixQuery, n int) float64 {
	seen := make(map[mixQuery]bool)
	repeats := 0
	for _, q := range mix[:n] {
		if seen[q] {
			repeats++
		}
		seen[q] = true
	}
	return float64(repeats) / float64(n)
}

// upstreamDelay is how long the benchmark's upstream resolver takes to
// answer: a cluster resolver one node away answering from its cache. The
// machine has no netem, so the server waits itself (TESTING.md).
const upstreamDelay = 500 * time.Microsecond

// upstreamTTL of every answer: longer than the run, as for most names.
const upstreamTTL = 300

const upstreamReaders = 16

// serveSlowUpstream is the benchmark's upstream: authoritative for
// nN.allowed.test (A 198.51.100.x, AAAA 2001:db8::x, HTTPS with alpn) and
// allowed.test, NXDOMAIN with an SOA for other names, each answer sent
// upstreamDelay after its query arrived.
func serveSlowUpstream(ctx context.Context) error {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	fmt.Println(conn.LocalAddr())
	go func() { <-ctx.Done(); conn.Close() }()
	soa, err := dns.NewRR("allowed.test. 300 IN SOA ns.allowed.test. admin.allowed.test. 1 7200 900 1209600 60")
	if err != nil {
		return err
	}
	done := make(chan struct{}, upstreamReaders)
	for range upstreamReaders {
		go func() {
			defer func() { done <- struct{}{} }()
			buf := make([]byte, 4096)
			for {
				n, from, err := conn.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				arrived := time.Now()
				q := new(dns.Msg)
				if q.Unpack(buf[:n]) != nil || len(q.Question) != 1 {
					continue
				}
				out, err := upstreamAnswer(q, soa).Pack()
				if err != nil {
					continue
				}
				time.AfterFunc(upstreamDelay-time.Since(arrived), func() { _, _ = conn.WriteToUDPAddrPort(out, from) })
			}
		}()
	}
	for range upstreamReaders {
		<-done
	}
	return nil
}

func upstreamAnswer(q *dns.Msg, soa dns.RR) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	if opt := q.IsEdns0(); opt != nil {
		m.SetEdns0(1232, opt.Do())
	}
	name := strings.ToLower(q.Question[0].Name)
	hdr := dns.RR_Header{Name: q.Question[0].Name, Class: dns.ClassINET, Ttl: upstreamTTL, Rrtype: q.Question[0].Qtype}
	var n int
	switch {
	case name == "allowed.test." || name == "www.allowed.test." || name == "api.allowed.test.":
	case strings.HasPrefix(name, "n") && strings.HasSuffix(name, ".allowed.test."):
		v, err := strconv.Atoi(strings.TrimSuffix(name[1:], ".allowed.test."))
		if err != nil {
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{soa}
			return m
		}
		n = v
	default:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{soa}
		return m
	}
	switch q.Question[0].Qtype {
	case dns.TypeA:
		m.Answer = []dns.RR{&dns.A{Hdr: hdr, A: net.IPv4(198, 51, 100, byte(n%250+1))}}
	case dns.TypeAAAA:
		m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: net.ParseIP(fmt.Sprintf("2001:db8::%x", n+1))}}
	case dns.TypeHTTPS:
		m.Answer = []dns.RR{&dns.HTTPS{SVCB: dns.SVCB{Hdr: hdr, Priority: 1, Target: ".",
			Value: []dns.SVCBKeyValue{&dns.SVCBAlpn{Alpn: []string{"h2", "h3"}}}}}}
	default:
		m.Ns = []dns.RR{soa}
	}
	return m
}
