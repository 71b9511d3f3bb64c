package dns

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// packedQuery is a query as the forwarder sends it, with upstream ID id.
func packedQuery(t testing.TB, name string, qtype uint16, id uint16) []byte {
	q := query(name, qtype)
	q.Id = id
	q.SetEdns0(1232, true)
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// packedAnswer packs the answer m to query (compressed or not).
func packedAnswer(t testing.TB, m *dns.Msg, compress bool) []byte {
	m.Compress = compress
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func replyTo(t testing.TB, query []byte, rrs ...string) *dns.Msg {
	q := new(dns.Msg)
	if err := q.Unpack(query); err != nil {
		t.Fatal(err)
	}
	return answer(t, q, rrs...)
}

func TestParseAnswerAcceptsMatching(t *testing.T) {
	qb := packedQuery(t, "www.allowed.test", dns.TypeA, 0xbeef)
	for _, compress := range []bool{false, true} {
		m := replyTo(t, qb, "www.allowed.test. 300 IN A 198.51.100.1", "www.allowed.test. 300 IN AAAA 2001:db8::1")
		m.Ns = rrs(t, "allowed.test. 60 IN NS ns.allowed.test.")
		m.Extra = append(m.Extra, rrs(t, "ns.allowed.test. 60 IN A 198.51.100.3")...)
		b := packedAnswer(t, m, compress)
		var idx [stackRRs]rrRef
		a, err := parseAnswer(b, qb, idx[:])
		if err != nil {
			t.Fatalf("compress=%v: %v", compress, err)
		}
		if a.rcode != dns.RcodeSuccess || a.truncated || len(a.answers) != 2 {
			t.Errorf("compress=%v: rcode %d TC %v answers %d, want 0 false 2", compress, a.rcode, a.truncated, len(a.answers))
		}
		got := wireChainAddrs(b, a)
		if want := []learnedAddr{{ip1, 300e9}, {ip6, 300e9}}; !slices.Equal(got, want) {
			t.Errorf("compress=%v: learned %v, want %v", compress, got, want)
		}
	}
}

func TestParseAnswerCaseRcodeAndTC(t *testing.T) {
	qb := packedQuery(t, "www.allowed.test", dns.TypeA, 7)
	var idx [stackRRs]rrRef

	// A 0x20-randomized echo of the question matches.
	m := replyTo(t, qb, "www.allowed.test. 300 IN A 198.51.100.1")
	m.Question[0].Name = "wWw.AlLoWeD.tEsT."
	if _, err := parseAnswer(packedAnswer(t, m, true), qb, idx[:]); err != nil {
		t.Errorf("0x20 spelling: %v", err)
	}
	// The OPT record's upper rcode bits count (BADVERS = 16).
	m = replyTo(t, qb)
	m.Rcode = dns.RcodeBadVers
	a, err := parseAnswer(packedAnswer(t, m, true), qb, idx[:])
	if err != nil || a.rcode != dns.RcodeBadVers {
		t.Errorf("extended rcode: %d, %v; want %d", a.rcode, err, dns.RcodeBadVers)
	}
	m = replyTo(t, qb)
	m.Truncated = true
	if a, err := parseAnswer(packedAnswer(t, m, true), qb, idx[:]); err != nil || !a.truncated {
		t.Errorf("TC: %v, %v", a.truncated, err)
	}
	// Fewer records than counted, ending at a record boundary: accepted,
	// as miekg accepts it.
	m = replyTo(t, qb, "www.allowed.test. 300 IN A 198.51.100.1")
	m.Extra = nil
	b := packedAnswer(t, m, true)
	binary.BigEndian.PutUint16(b[6:], 3)
	if a, err := parseAnswer(b, qb, idx[:]); err != nil || len(a.answers) != 1 {
		t.Errorf("overstated count: %d answers, %v", len(a.answers), err)
	}
}

func TestParseAnswerRejects(t *testing.T) {
	qb := packedQuery(t, "www.allowed.test", dns.TypeA, 0x1234)
	good := func() []byte { // ends with the A record (no OPT)
		m := replyTo(t, qb, "www.allowed.test. 300 IN CNAME e.cdn.test.", "e.cdn.test. 300 IN A 198.51.100.1")
		m.Extra = nil
		return packedAnswer(t, m, true)
	}
	edit := func(f func(b []byte) []byte) []byte { return f(good()) }
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"wrong id", edit(func(b []byte) []byte { b[1]++; return b }), errNotAnswer},
		{"not a response", edit(func(b []byte) []byte { b[2] &^= 0x80; return b }), errNotAnswer},
		{"other opcode", edit(func(b []byte) []byte { b[2] |= 2 << 3; return b }), errNotAnswer},
		{"no question", edit(func(b []byte) []byte { b[5] = 0; return b }), errNotAnswer},
		{"two questions", edit(func(b []byte) []byte { b[5] = 2; return b }), errNotAnswer},
		{"other name", edit(func(b []byte) []byte { b[13] = 'x'; return b }), errNotAnswer},
		{"other type", edit(func(b []byte) []byte { b[12+18+1] = byte(dns.TypeAAAA); return b }), errNotAnswer},
		{"header only", good()[:12], errNotAnswer},
		{"cut in a record", edit(func(b []byte) []byte { return b[:len(b)-2] }), errShort},
		{"A of 5 bytes", edit(func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[len(b)-6:], 5)
			return append(b, 0)
		}), errBadRR},
		{"pointer loop in an owner", edit(func(b []byte) []byte {
			qend, _ := questionEnd(b)
			binary.BigEndian.PutUint16(b[qend:], 0xC000|uint16(qend))
			return b
		}), errBadName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var idx [stackRRs]rrRef
			if _, err := parseAnswer(tt.msg, qb, idx[:]); !errors.Is(err, tt.want) {
				t.Errorf("parseAnswer: %v, want %v", err, tt.want)
			}
		})
	}
	// A question written with a compression pointer is refused: the proxy
	// writes the agent's question back in place, byte for byte.
	b := good()
	ptr := append(append([]byte(nil), b[:12]...), 0xC0, 12)
	if _, err := parseAnswer(append(ptr, b[12:]...), qb, nil); err == nil {
		t.Error("compressed question accepted")
	}
}

// The chain cases of TestChainAddrs, over real wire bytes, compressed and
// not: the wire walker learns exactly what the reference learns.
func TestWireChainAddrsMatchesReference(t *testing.T) {
	cases := [][]string{
		{"www.allowed.test. 300 IN A 198.51.100.1", "www.allowed.test. 200 IN AAAA 2001:db8::1"},
		{"www.allowed.test. 30 IN CNAME edge.cdn.test.", "edge.cdn.test. 600 IN CNAME e1.cdn.test.", "e1.cdn.test. 300 IN A 198.51.100.1"},
		{"www.allowed.test. 300 IN CNAME e1.cdn.test.", "e1.cdn.test. 20 IN A 198.51.100.1"},
		{"WWW.Allowed.TEST. 300 IN CNAME E1.cdn.test.", "e1.CDN.test. 300 IN A 198.51.100.1"},
		{"www.allowed.test. 300 IN CNAME e1.cdn.test.", "e1.cdn.test. 300 IN A 198.51.100.1", "bank.example. 300 IN A 198.51.100.3", "www.allowed.test. 300 IN A 198.51.100.3"},
		{"www.allowed.test. 300 IN CNAME a.loop.test.", "a.loop.test. 300 IN CNAME www.allowed.test."},
		{"www.allowed.test. 300 IN CNAME gone.test."},
		{"www.allowed.test. 300 CH A 198.51.100.1", "www.allowed.test. 300 IN AAAA ::ffff:198.51.100.2"},
	}
	qb := packedQuery(t, "www.allowed.test", dns.TypeA, 1)
	for i, c := range cases {
		for _, compress := range []bool{false, true} {
			m := replyTo(t, qb, c...)
			b := packedAnswer(t, m, compress)
			var idx [stackRRs]rrRef
			a, err := parseAnswer(b, qb, idx[:])
			if err != nil {
				t.Fatalf("case %d compress=%v: %v", i, compress, err)
			}
			got, want := wireChainAddrs(b, a), chainAddrs("www.allowed.test.", m.Answer)
			if !slices.Equal(got, want) {
				t.Errorf("case %d compress=%v: wire %v, reference %v", i, compress, got, want)
			}
		}
	}
	// More records than the stack index holds spill to the heap.
	many := make([]string, 3*stackRRs)
	for i := range many {
		many[i] = "www.allowed.test. 300 IN A 198.51.100.1"
	}
	b := packedAnswer(t, replyTo(t, qb, many...), true)
	var idx [stackRRs]rrRef
	a, err := parseAnswer(b, qb, idx[:])
	if err != nil || len(wireChainAddrs(b, a)) != len(many) {
		t.Errorf("large answer: %v", err)
	}
}

// FuzzParseAnswer holds the wire walker to miekg's unpacking: whenever
// miekg unpacks an answer and the old matching (ID, QR, opcode, one
// question equal case-insensitively) accepts it, and its question is
// written out uncompressed, the walker accepts it too and learns exactly
// what chainAddrs learns from miekg's records, with the same rcode and TC.
// It must never panic on any input.
func FuzzParseAnswer(f *testing.F) {
	qb := packedQuery(f, "www.allowed.test", dns.TypeA, 0x4242)
	seed := func(m *dns.Msg, compress bool) { f.Add(packedAnswer(f, m, compress)) }
	for _, compress := range []bool{false, true} {
		seed(replyTo(f, qb, "www.allowed.test. 30 IN CNAME edge.cdn.test.", "edge.cdn.test. 600 IN CNAME e1.cdn.test.", "e1.cdn.test. 300 IN A 198.51.100.1"), compress)
		seed(replyTo(f, qb, "www.allowed.test. 300 IN A 198.51.100.1", "www.allowed.test. 300 IN AAAA 2001:db8::1", `www.allowed.test. 300 IN TXT "x"`), compress)
		m := replyTo(f, qb)
		m.Rcode = dns.RcodeBadVers
		seed(m, compress)
	}
	f.Add(append(qb[:2:2], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0))
	ref := new(dns.Msg)
	if err := ref.Unpack(qb); err != nil {
		f.Fatal(err)
	}
	qend, err := questionEnd(qb)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var idx [stackRRs]rrRef
		a, werr := parseAnswer(msg, qb, idx[:])
		if werr == nil {
			_ = wireChainAddrs(msg, a)
		}
		m := new(dns.Msg)
		if m.Unpack(msg) != nil || m.Id != 0x4242 || !m.Response || m.Opcode != ref.Opcode || len(m.Question) != 1 {
			return
		}
		got, want := m.Question[0], ref.Question[0]
		if got.Qtype != want.Qtype || got.Qclass != want.Qclass || !strings.EqualFold(got.Name, want.Name) ||
			len(msg) < qend || !equalFoldASCII(msg[headerLen:qend], qb[headerLen:qend]) {
			return
		}
		if werr != nil {
			t.Fatalf("miekg accepts, walker refuses: %v", werr)
		}
		if a.rcode != m.Rcode || a.truncated != m.Truncated {
			t.Fatalf("walker rcode %d TC %v, miekg %d %v", a.rcode, a.truncated, m.Rcode, m.Truncated)
		}
		if w, r := wireChainAddrs(msg, a), chainAddrs(m.Question[0].Name, m.Answer); !slices.Equal(w, r) {
			t.Fatalf("walker learns %v, reference %v", w, r)
		}
	})
}
