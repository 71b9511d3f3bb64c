package dns

import (
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// recorder is a dns.ResponseWriter that keeps what the handler wrote.
type recorder struct {
	remote  net.Addr
	replies [][]byte
}

func (r *recorder) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: DefaultPort}
}
func (r *recorder) RemoteAddr() net.Addr { return r.remote }
func (r *recorder) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	r.replies = append(r.replies, b)
	return nil
}
func (r *recorder) Write(b []byte) (int, error) {
	r.replies = append(r.replies, append([]byte(nil), b...))
	return len(b), nil
}
func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}

func (r *recorder) scratch() (query, answer []byte) { return nil, nil }

func (r *recorder) sendReply(b []byte) error {
	_, err := r.Write(b)
	return err
}

// serveRaw feeds a packet to the proxy as its UDP readers do (servePacket:
// header screen, unpack, handle), or for TCP as miekg's server does around
// ServeDNS. Rejections the TCP server answers itself are not the
// handler's; the UDP ones are tested over a real socket in
// TestMalformedPacketsOverUDP.
func serveRaw(p *Proxy, raw []byte, w *recorder) {
	if !isTCP(w.remote) {
		p.servePacket(raw, clientAddr(w.remote), w)
		return
	}
	h, ok := wireHeader(raw)
	if !ok || p.accept(h) != dns.MsgAccept {
		return
	}
	req := new(dns.Msg)
	if err := req.Unpack(raw); err != nil {
		p.invalid(raw, err)
		return
	}
	p.ServeDNS(w, req)
}

// FuzzHandler feeds hostile packets to the handler, with a live upstream
// behind it: it must never panic, and must either stay silent or send one
// well-formed reply to the very question asked, within the UDP size.
func FuzzHandler(f *testing.F) {
	for _, hp := range hostilePackets(f) {
		f.Add(hp.raw, false)
	}
	for _, q := range []*dns.Msg{
		query("evil.test", dns.TypeA),
		query("x.allowed.test", dns.TypeANY),
		query(strings.Repeat("a", 63)+".allowed.test", dns.TypeTXT),
		query("big.allowed.test", dns.TypeA),
		query("1.2.3.4", dns.TypeA),
		query(".", dns.TypeNS),
	} {
		e := q.Copy()
		e.SetEdns0(4096, true)
		f.Add(rawQuery(f, q, nil), false)
		f.Add(rawQuery(f, e, nil), true)
	}
	up := startUpstream(f, func(network string, q *dns.Msg) *dns.Msg {
		if q.Question[0].Name == "big.allowed.test." {
			return bigAnswer(f, q, 60)
		}
		return worldAnswers(f)(network, q)
	})
	p, err := newProxy(Config{Upstreams: []string{up.addr}, Timeout: 200 * time.Millisecond, RateLimit: -1},
		func() decider { return allowlist("*.allowed.test") })
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte, overTCP bool) {
		w := &recorder{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}}
		if overTCP {
			w.remote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
		}
		serveRaw(p, raw, w)
		if len(w.replies) > 1 {
			t.Fatalf("%d replies to one packet", len(w.replies))
		}
		if len(w.replies) == 0 {
			return
		}
		r := new(dns.Msg)
		if err := r.Unpack(w.replies[0]); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if len(raw) < 12 {
			t.Fatalf("replied to a %d-byte packet", len(raw))
		}
		if id := binary.BigEndian.Uint16(raw); !r.Response || r.Id != id {
			t.Fatalf("reply QR=%v id %#x to query id %#x", r.Response, r.Id, id)
		}
		req := new(dns.Msg)
		counts := func(off int) uint16 { return binary.BigEndian.Uint16(raw[off:]) }
		screened := counts(4) != 1 || counts(6) != 0 || counts(8) != 0 || counts(10) > 2
		if err := req.Unpack(raw); err != nil || screened || req.Response || req.Opcode != dns.OpcodeQuery {
			// Screened out: only a header, FORMERR or NOTIMP, may answer
			// (as miekg's UDP server answers).
			if len(w.replies[0]) != 12 || (r.Rcode != dns.RcodeFormatError && r.Rcode != dns.RcodeNotImplemented) {
				t.Fatalf("reply to a packet that is not a query: %d bytes, rcode %s", len(w.replies[0]), dns.RcodeToString[r.Rcode])
			}
			return
		}
		if len(r.Question) != 1 || r.Question[0] != req.Question[0] {
			t.Fatalf("reply question %v, query question %v", r.Question, req.Question)
		}
		if !overTCP {
			limit := dns.MinMsgSize
			if opt := req.IsEdns0(); opt != nil {
				limit = max(limit, int(opt.UDPSize()))
			}
			if len(w.replies[0]) > limit {
				t.Fatalf("UDP reply of %d bytes, agent allows %d", len(w.replies[0]), limit)
			}
		}
	})
}
