package dns

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/forge/forge-supervisor/obs"
)

// silentUpstream is a bound UDP socket that reads nothing and answers
// nothing: a resolver that is up but never replies.
func silentUpstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// closedUpstream is a loopback port nothing listens on: UDP gets ICMP
// port unreachable, TCP gets RST.
func closedUpstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

func bigAnswer(t testing.TB, q *dns.Msg, n int) *dns.Msg {
	rrs := make([]string, n)
	for i := range rrs {
		rrs[i] = fmt.Sprintf("%s 300 IN A 198.51.100.%d", q.Question[0].Name, i+1)
	}
	return answer(t, q, rrs...)
}

func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	const records = 60 // 60 A records ≈ 1 KiB compressed, 1.7 KiB without
	up := startUpstream(t, func(network string, q *dns.Msg) *dns.Msg {
		if network == "udp" {
			m := answer(t, q)
			m.Truncated = true
			return m
		}
		return bigAnswer(t, q, records)
	})
	p := startProxy(t, allowlist("big.allowed.test"), []string{up.addr})

	// An EDNS0 client with room gets every record over UDP.
	q := query("big.allowed.test", dns.TypeA)
	q.SetEdns0(4096, false)
	r := ask(t, "udp", p.addr, q)
	if r.Truncated || len(r.Answer) != records {
		t.Fatalf("EDNS 4096 client: TC=%v with %d answers, want all %d", r.Truncated, len(r.Answer), records)
	}
	// A plain client gets what fits 512 bytes, with TC set, so it retries
	// over TCP ...
	r = ask(t, "udp", p.addr, query("big.allowed.test", dns.TypeA))
	r.Compress = true // measure the size it had on the wire
	if !r.Truncated || r.Len() > dns.MinMsgSize {
		t.Fatalf("512-byte client: TC=%v, %d bytes; want TC and ≤ 512", r.Truncated, r.Len())
	}
	// ... where it gets everything.
	r = ask(t, "tcp", p.addr, query("big.allowed.test", dns.TypeA))
	if r.Truncated || len(r.Answer) != records {
		t.Fatalf("TCP client: TC=%v with %d answers, want %d", r.Truncated, len(r.Answer), records)
	}
	if got := len(p.Cache().NamesFor(netip.MustParseAddr("198.51.100.60"))); got != 1 {
		t.Errorf("last record of the TCP answer not learned")
	}
}

func TestUpstreamDownIsQuickServfail(t *testing.T) {
	const timeout = 200 * time.Millisecond
	tests := []struct {
		name      string
		upstreams func(t *testing.T) []string
	}{
		{"silent", func(t *testing.T) []string { return []string{silentUpstream(t)} }},
		{"two silent", func(t *testing.T) []string { return []string{silentUpstream(t), silentUpstream(t)} }},
		{"closed port", func(t *testing.T) []string { return []string{closedUpstream(t)} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ups := tt.upstreams(t)
			p := startProxy(t, allowlist("allowed.test"), ups, func(c *Config) { c.Timeout = timeout })
			for _, network := range []string{"udp", "tcp"} {
				start := time.Now()
				r := ask(t, network, p.addr, query("allowed.test", dns.TypeA))
				elapsed := time.Since(start)
				if r.Rcode != dns.RcodeServerFailure {
					t.Errorf("%s: rcode %s, want SERVFAIL", network, dns.RcodeToString[r.Rcode])
				}
				if limit := timeout*time.Duration(len(ups)) + 300*time.Millisecond; elapsed > limit {
					t.Errorf("%s: SERVFAIL after %v, want within %v", network, elapsed, limit)
				}
			}
			lines := auditLines(p.logs, obs.MsgDNSAllowed)
			if len(lines) != 2 || field(lines[0], "reason") != ReasonUpstreamFailed || field(lines[0], "rcode") != "SERVFAIL" {
				t.Errorf("audit %v, want dns_allowed reason=%s rcode=SERVFAIL", lines, ReasonUpstreamFailed)
			}
		})
	}
}

func TestFailoverToLiveUpstream(t *testing.T) {
	live := startUpstream(t, worldAnswers(t))
	servfail := startUpstream(t, func(_ string, q *dns.Msg) *dns.Msg {
		m := new(dns.Msg)
		return m.SetRcode(q, dns.RcodeServerFailure)
	})
	tests := []struct {
		name string
		dead func(t *testing.T) string
	}{
		{"silent first", silentUpstream},
		{"closed first", closedUpstream},
		{"servfail first", func(*testing.T) string { return servfail.addr }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, allowlist("allowed.test"), []string{tt.dead(t), live.addr})
			for _, network := range []string{"udp", "tcp"} {
				r := ask(t, network, p.addr, query("allowed.test", dns.TypeA))
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
					t.Errorf("%s: rcode %s with %d answers, want the live upstream's answer", network, dns.RcodeToString[r.Rcode], len(r.Answer))
				}
			}
		})
	}
}

func TestHostileUpstreamRejected(t *testing.T) {
	tests := []struct {
		name   string
		mangle func(q, m *dns.Msg)
	}{
		{"wrong id", func(q, m *dns.Msg) { m.Id = q.Id + 1 }},
		{"wrong name", func(q, m *dns.Msg) { m.Question[0].Name = "evil.test." }},
		{"wrong type", func(q, m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA }},
		{"no question", func(q, m *dns.Msg) { m.Question = nil }},
		{"not a response", func(q, m *dns.Msg) { m.Response = false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, func(_ string, q *dns.Msg) *dns.Msg {
				m := answer(t, q, q.Question[0].Name+" 300 IN A 203.0.113.66")
				tt.mangle(q, m)
				return m
			})
			p := startProxy(t, allowlist("allowed.test"), []string{up.addr}, func(c *Config) { c.Timeout = 150 * time.Millisecond })
			for _, network := range []string{"udp", "tcp"} {
				r := ask(t, network, p.addr, query("allowed.test", dns.TypeA))
				if r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
					t.Errorf("%s: rcode %s with %d answers, want SERVFAIL and none", network, dns.RcodeToString[r.Rcode], len(r.Answer))
				}
			}
			if p.Cache().Len() != 0 {
				t.Error("learned from a mismatched answer")
			}
		})
	}
}

// A spoofed packet ahead of the real answer must not end the wait.
func TestSpoofedPacketSkipped(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			spoof := answer(t, q, q.Question[0].Name+" 300 IN A 203.0.113.66")
			spoof.Id = q.Id ^ 0xffff
			real := answer(t, q, q.Question[0].Name+" 300 IN A 198.51.100.1")
			for _, m := range []*dns.Msg{spoof, real} {
				b, _ := m.Pack()
				_, _ = pc.WriteTo(b, from)
			}
		}
	}()
	p := startProxy(t, allowlist("allowed.test"), []string{pc.LocalAddr().String()})
	r := ask(t, "udp", p.addr, query("allowed.test", dns.TypeA))
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "198.51.100.1" {
		t.Fatalf("answer %v, want the real 198.51.100.1", r.Answer)
	}
	if p.Cache().Knows("allowed.test", netip.MustParseAddr("203.0.113.66")) {
		t.Error("learned the spoofed address")
	}
}

func TestSOMarkOnUpstreamSockets(t *testing.T) {
	const mark = 0x4f5247
	d := net.Dialer{Control: markControl(mark)}
	c, err := d.Dial("udp", "127.0.0.1:53")
	if err != nil {
		t.Fatalf("dial with SO_MARK (needs CAP_NET_ADMIN; tests run as root): %v", err)
	}
	defer c.Close()
	got, err := getMark(c.(*net.UDPConn))
	if err != nil {
		t.Fatal(err)
	}
	if got != mark {
		t.Errorf("SO_MARK %#x, want %#x", got, mark)
	}
	if markControl(0) != nil {
		t.Error("mark 0 should install no Control function")
	}
}
