package dns

import (
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
// 127.0.0.2 or ::1 of the wildcard listener gets its answer.
func TestUDPReplyFromQueriedAddress(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr})
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
	p := startProxy(t, allowlist("*.allowed.test"), []string{up.addr})
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
