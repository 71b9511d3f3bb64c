package dns

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The reply leaves from the address the query was sent to: a client with
// a connected socket (which drops datagrams from any other source) asking
// 127.0.0.2 or ::1 of a wildcard listener (not the default, which is
// loopback only) gets its answer.
func TestUDPReplyFromQueriedAddress(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr}, func(c *Config) {
		c.ListenAddrs = []string{"0.0.0.0", "::"}
	})
	port := fmt.Sprint(p.Port())
	for _, host := range []string{"127.0.0.2", "::1"} {
		t.Run(host, func(t *testing.T) {
			c, err := net.Dial("udp", net.JoinHostPort(host, port))
			if err != nil {
				t.Skipf("no %s here: %v", host, err)
			}
			defer c.Close()
			co := &dns.Conn{Conn: c}
			q := query("allowed.test", dns.TypeA)
			q.Id = 0x5151
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if err := co.WriteMsg(q); err != nil {
				t.Fatal(err)
			}
			r, err := co.ReadMsg()
			if err != nil {
				t.Fatalf("no reply from %s (sent from another address?): %v", host, err)
			}
			if r.Id != 0x5151 || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Errorf("reply id %#x rcode %s answers %d", r.Id, dns.RcodeToString[r.Rcode], len(r.Answer))
			}
		})
	}
}

// Many clients at once through the reader pool: every reply carries its
// own query's ID and question and the answer for that name, and every
// query gets its audit line. Run with -race.
func TestUDPReadersUnderConcurrentLoad(t *testing.T) {
	const (
		clients = 24
		each    = 40
	)
	up := startUpstream(t, func(_ string, q *dns.Msg) *dns.Msg {
		// The address encodes the name, so a mixed-up reply shows.
		var n, i int
		fmt.Sscanf(strings.ToLower(q.Question[0].Name), "c%d-q%d.allowed.test.", &n, &i)
		return answer(t, q, fmt.Sprintf("%s 300 IN A 198.51.%d.%d", q.Question[0].Name, n, i))
	})
	// Load, not the exfiltration guard: 960 distinct names under one wildcard.
	p := startProxy(t, allowlist("*.allowed.test"), []string{up.addr}, func(c *Config) { c.WildcardBudget = -1 })
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for n := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dns.Dial("udp", p.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for i := range each {
				name := fmt.Sprintf("C%d-Q%d.Allowed.Test.", n, i)
				q := query(name, dns.TypeA)
				q.Id = uint16(n<<8 | i)
				_ = c.SetDeadline(time.Now().Add(3 * time.Second))
				if err := c.WriteMsg(q); err != nil {
					errs <- err
					return
				}
				r, err := c.ReadMsg()
				if err != nil {
					errs <- fmt.Errorf("%s: %w", name, err)
					return
				}
				want := fmt.Sprintf("198.51.%d.%d", n, i)
				if r.Id != q.Id || len(r.Question) != 1 || r.Question[0].Name != name || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != want {
					errs <- fmt.Errorf("%s id %#x: reply id %#x question %v answer %v, want %s", name, q.Id, r.Id, r.Question, r.Answer, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(auditLines(p.logs, "dns_allowed")); n != clients*each {
		t.Errorf("%d audit lines, want %d", n, clients*each)
	}
}

func TestRejectHeader(t *testing.T) {
	p, err := newProxy(Config{Upstreams: []string{"127.0.0.1:53"}}, func() decider { return nil })
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		bits  uint16
		rcode int
		want  uint16
	}{
		{"formerr keeps RD only", 1<<8 | 1<<4 | 1<<5, dns.RcodeFormatError, bitQR | 1<<8 | uint16(dns.RcodeFormatError)},
		{"notimp keeps the opcode", uint16(dns.OpcodeUpdate) << 11, dns.RcodeNotImplemented, bitQR | uint16(dns.OpcodeUpdate)<<11 | uint16(dns.RcodeNotImplemented)},
	}
	for _, tt := range tests {
		w := &recorder{}
		p.rejectHeader(w, dns.Header{Id: 0xabcd, Bits: tt.bits, Qdcount: 3}, tt.rcode)
		if len(w.replies) != 1 {
			t.Fatalf("%s: %d replies", tt.name, len(w.replies))
		}
		want := []byte{0xab, 0xcd, byte(tt.want >> 8), byte(tt.want), 0, 0, 0, 0, 0, 0, 0, 0}
		if got := w.replies[0]; string(got) != string(want) {
			t.Errorf("%s: reply % x, want % x", tt.name, got, want)
		}
	}
}

// An upstream that echoes the question in another case (0x20) is matched,
// and the agent gets its own spelling and ID back, byte for byte.
func TestAgentSpellingAndIDRestored(t *testing.T) {
	up := startUpstream(t, func(_ string, q *dns.Msg) *dns.Msg {
		m := answer(t, q, q.Question[0].Name+" 300 IN A 198.51.100.1")
		m.Question[0].Name = strings.ToUpper(q.Question[0].Name)
		return m
	})
	p := startProxy(t, allowlist("www.allowed.test"), []string{up.addr})
	for _, network := range []string{"udp", "tcp"} {
		q := query("wWw.allowed.TEST", dns.TypeA)
		q.Id = 0x0102
		r := ask(t, network, p.addr, q)
		if r.Id != 0x0102 || r.Question[0].Name != "wWw.allowed.TEST." || len(r.Answer) != 1 {
			t.Errorf("%s: reply id %#x question %q answers %d, want id 0x102, the agent's spelling, 1 answer", network, r.Id, r.Question[0].Name, len(r.Answer))
		}
	}
	if !p.Cache().Knows("www.allowed.test", ip1) {
		t.Error("answer not learned")
	}
}

// Ending Serve cuts the wait on a silent upstream at once, rather than
// after the upstream timeout.
func TestServeEndCutsUpstreamWait(t *testing.T) {
	p, err := newProxy(Config{Upstreams: []string{silentUpstream(t)}, Timeout: 5 * time.Second, RateLimit: -1},
		func() decider { return allowlist("allowed.test") })
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	c, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", fmt.Sprint(p.Port())))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := query("allowed.test", dns.TypeA).Pack()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the query is now waiting upstream
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Serve took %v to end with a query upstream", d)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("Serve did not end while a query waited on a silent upstream")
	}
	// The waiting query was answered SERVFAIL on the way out.
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	r := new(dns.Msg)
	if err != nil || r.Unpack(buf[:n]) != nil || r.Rcode != dns.RcodeServerFailure {
		t.Errorf("waiting query: %v, reply %v; want SERVFAIL", err, r)
	}
}
