package dns

import (
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// rawQuery packs q and lets mangle edit the bytes.
func rawQuery(t testing.TB, q *dns.Msg, mangle func(b []byte) []byte) []byte {
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if mangle != nil {
		b = mangle(b)
	}
	return b
}

func setCount(off int, n uint16) func([]byte) []byte {
	return func(b []byte) []byte { binary.BigEndian.PutUint16(b[off:], n); return b }
}

// hostilePackets are raw packets an agent could send; want is the rcode of
// the reply, or -1 for no reply at all.
func hostilePackets(t testing.TB) []struct {
	name string
	raw  []byte
	want int
} {
	q := query("www.allowed.test", dns.TypeA)
	q.Id = 0x1111
	update := query("allowed.test", dns.TypeSOA)
	update.Opcode = dns.OpcodeUpdate
	notify := query("allowed.test", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	return []struct {
		name string
		raw  []byte
		want int
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), dns.RcodeFormatError},
		{"short header", []byte{0x12, 0x34, 0x01}, -1},
		{"response bit set", rawQuery(t, q, func(b []byte) []byte { b[2] |= 0x80; return b }), -1},
		{"no question", rawQuery(t, q, setCount(4, 0)), dns.RcodeFormatError},
		{"two questions claimed", rawQuery(t, q, setCount(4, 2)), dns.RcodeFormatError},
		{"answer section in a query", rawQuery(t, q, setCount(6, 1)), dns.RcodeFormatError},
		{"body cut short", rawQuery(t, q, func(b []byte) []byte { return b[:len(b)-3] }), dns.RcodeFormatError},
		{"compression pointer loop", append(rawQuery(t, q, func(b []byte) []byte { return b[:12] }), 0xc0, 12, 0, 1, 0, 1), dns.RcodeFormatError},
		{"label over 63", append(rawQuery(t, q, func(b []byte) []byte { return b[:12] }), append(append([]byte{64}, []byte(strings.Repeat("a", 64))...), 0, 0, 1, 0, 1)...), dns.RcodeFormatError},
		{"opcode update", rawQuery(t, update, nil), dns.RcodeNotImplemented},
		{"opcode notify", rawQuery(t, notify, nil), dns.RcodeNotImplemented},
		{"valid query", rawQuery(t, q, nil), dns.RcodeSuccess},
	}
}

func TestMalformedPacketsOverUDP(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	p := startProxy(t, allowlist("*.allowed.test"), []string{up.addr})
	c, err := net.Dial("udp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4096)
	for _, tt := range hostilePackets(t) {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Write(tt.raw); err != nil {
				t.Fatal(err)
			}
			wait := 2 * time.Second
			if tt.want < 0 {
				wait = 300 * time.Millisecond
			}
			_ = c.SetReadDeadline(time.Now().Add(wait))
			n, err := c.Read(buf)
			if tt.want < 0 {
				if err == nil {
					t.Fatalf("got a %d-byte reply, want none", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("no reply, want rcode %s: %v", dns.RcodeToString[tt.want], err)
			}
			r := new(dns.Msg)
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if r.Rcode != tt.want || !r.Response || r.Id != binary.BigEndian.Uint16(tt.raw) {
				t.Errorf("reply rcode %s id %#x, want %s id %#x", dns.RcodeToString[r.Rcode], r.Id, dns.RcodeToString[tt.want], binary.BigEndian.Uint16(tt.raw))
			}
		})
	}
	// Every packet that is not a query counts; the NOTIMP opcodes are
	// well-formed, just unsupported, and the valid query is valid.
	if got := p.malformed.Load(); got != 9 {
		t.Errorf("malformed count %d, want 9", got)
	}
	// The server still answers after all that.
	if r := ask(t, "udp", p.addr, query("www.allowed.test", dns.TypeA)); r.Rcode != dns.RcodeSuccess {
		t.Errorf("after hostile packets: rcode %s", dns.RcodeToString[r.Rcode])
	}
}
