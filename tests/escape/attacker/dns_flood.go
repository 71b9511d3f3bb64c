package main

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Rate-limit vectors (issue #11 item 7). The supervisor's DNS budget is
// per agent: the default is 200 queries per second with a burst of 400.
// Each vector ends by waiting for the bucket to refill, so the vectors
// after it are not refused.
const (
	sprayQueriesPerSource = 3
	spraySources          = 1000
	sniFloodNames         = 1500
	sniFloodParallel      = 64
	bucketRefill          = 2500 * time.Millisecond
)

// dnsSpraySources sends 3 queries for an allowed name (its own, so the
// control vectors' audit lines stay theirs) from each of 1,000
// loopback source addresses (any of 127.0.0.0/8 is the agent's to bind).
// A budget per source address would answer all 3,000; a budget per agent
// answers about its burst. Escaped when more than half are answered.
func dnsSpraySources(r *Result) {
	defer time.Sleep(bucketRefill)
	server := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 53), Port: 53}
	answered, refused, silent := 0, 0, 0
	buf := make([]byte, 1232)
	name := marker(r.Vector) + ".wild.test."
	for i := range spraySources {
		src := &net.UDPAddr{IP: net.IPv4(127, 1, byte(i>>8), byte(i))}
		c, err := net.DialUDP("udp4", src, server)
		if err != nil {
			r.note("bind %v: %v", src, err)
			return
		}
		for range sprayQueriesPerSource {
			m := new(dns.Msg)
			m.SetQuestion(name, dns.TypeA)
			b, _ := m.Pack()
			if _, err := c.Write(b); err != nil {
				silent++
				continue
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, err := c.Read(buf)
			resp := new(dns.Msg)
			switch {
			case err != nil || resp.Unpack(buf[:n]) != nil:
				silent++
			case resp.Rcode == dns.RcodeSuccess && len(resp.Answer) > 0:
				answered++
			default:
				refused++
			}
		}
		c.Close()
	}
	total := spraySources * sprayQueriesPerSource
	r.note("%d sources: %d of %d answered, %d refused, %d unanswered", spraySources, answered, total, refused, silent)
	if answered > total/2 {
		r.escape("the DNS budget is per source address: %d of %d answered", answered, total)
	}
}

// sniFlood opens 1,500 TLS connections to an address no allowed name
// resolves to, each with a fresh SNI under the allowed wildcard: each
// makes the supervisor look the name up (A and AAAA) to check the
// address. Those lookups spend the agent's DNS budget; the test counts
// the marker's queries at the upstream resolver.
func sniFlood(ip string) vectorFunc {
	return func(r *Result) {
		defer time.Sleep(bucketRefill)
		var (
			mu      sync.Mutex
			next    atomic.Int64
			alerts  atomic.Int64
			wg      sync.WaitGroup
			escapes []string
		)
		start := time.Now()
		for range sniFloodParallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= sniFloodNames {
						return
					}
					sni := fmt.Sprintf("%s-%d.wild.test", marker(r.Vector), i)
					mu.Lock()
					r.SNIs = append(r.SNIs, sni)
					mu.Unlock()
					resp, err := helloOnce(ip, sni)
					switch {
					case err != nil:
					case len(resp) > 0 && resp[0] == 22:
						mu.Lock()
						escapes = append(escapes, sni)
						mu.Unlock()
					default:
						alerts.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		r.note("%d ClientHellos in %v, %d denied with an alert", sniFloodNames, time.Since(start).Round(time.Millisecond), alerts.Load())
		if len(escapes) > 0 {
			r.escape("ServerHello for %d fresh names (e.g. %s)", len(escapes), escapes[0])
		}
	}
}

// helloOnce sends one ClientHello for sni to ip:443 and returns what came
// back before the connection closed.
func helloOnce(ip, sni string) ([]byte, error) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "443"), ioWindow)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioWindow))
	if _, err := c.Write(rawClientHello([]byte(sni), []string{"http/1.1"})); err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(c, 4096))
}
