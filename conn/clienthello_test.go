package conn

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
)

// goHellos are ClientHellos produced by crypto/tls, with the expected
// properties of their framing.
func goHellos(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	small, _ := goClientHello(t, &tls.Config{ServerName: "example.test", NextProtos: []string{"h2", "http/1.1"},
		CurvePreferences: []tls.CurveID{tls.X25519}})
	out["classic"] = small
	pq, _ := goClientHello(t, &tls.Config{ServerName: "pq.example.test", NextProtos: []string{"h2"}})
	out["post-quantum"] = pq
	big, _ := goClientHello(t, &tls.Config{ServerName: "big.example.test", NextProtos: bigALPN(90)})
	out["large"] = big
	return out
}

func TestParseClientHelloFromGo(t *testing.T) {
	tests := []struct {
		name     string
		cfg      *tls.Config
		minLen   int // stream bytes at least
		minRecs  int
		wantName string
	}{
		{"classic", &tls.Config{ServerName: "example.test", NextProtos: []string{"h2", "http/1.1"}, CurvePreferences: []tls.CurveID{tls.X25519}}, 0, 1, "example.test"},
		// Go's default CurvePreferences lead with X25519MLKEM768: a 1216-byte key share.
		{"post-quantum default curves", &tls.Config{ServerName: "pq.example.test", NextProtos: []string{"h2"}}, 1200, 1, "pq.example.test"},
		{"no SNI (IP server name)", &tls.Config{ServerName: "192.0.2.1", InsecureSkipVerify: true}, 0, 1, ""},
		{"over 16 KiB across records", &tls.Config{ServerName: "big.example.test", NextProtos: bigALPN(90)}, 16 << 10, 2, "big.example.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, info := goClientHello(t, tc.cfg)
			if len(raw) < tc.minLen {
				t.Fatalf("hello is %d bytes, want >= %d", len(raw), tc.minLen)
			}
			ch, err := ParseClientHello(raw)
			if err != nil {
				t.Fatalf("ParseClientHello: %v", err)
			}
			if ch.ServerName != tc.wantName || ch.ServerName != info.ServerName {
				t.Errorf("ServerName = %q, want %q (Go server saw %q)", ch.ServerName, tc.wantName, info.ServerName)
			}
			if !slices.Equal(ch.ALPN, info.SupportedProtos) {
				t.Errorf("ALPN = %q, Go server saw %q", ch.ALPN, info.SupportedProtos)
			}
			if !slices.Equal(ch.SupportedVersions, info.SupportedVersions) {
				t.Errorf("SupportedVersions = %x, Go server saw %x", ch.SupportedVersions, info.SupportedVersions)
			}
			if ch.LegacyVersion != tls.VersionTLS12 {
				t.Errorf("LegacyVersion = %#x", ch.LegacyVersion)
			}
			if ch.Len != len(raw) {
				t.Errorf("Len = %d, stream is %d", ch.Len, len(raw))
			}
			if recs := countRecords(raw); recs < tc.minRecs {
				t.Errorf("%d records, want >= %d", recs, tc.minRecs)
			}
			assertPrefixesNeedMore(t, raw, ch.Len)
		})
	}
}

func countRecords(b []byte) int {
	n := 0
	for len(b) >= recordHeaderLen {
		b = b[min(len(b), recordHeaderLen+int(binary.BigEndian.Uint16(b[3:5]))):]
		n++
	}
	return n
}

// assertPrefixesNeedMore checks that no proper prefix of a valid hello
// parses to anything but ErrNeedMore.
func assertPrefixesNeedMore(t *testing.T, raw []byte, end int) {
	t.Helper()
	step := max(1, end/500)
	for k := 0; k < end; k += step {
		if _, err := ParseClientHello(raw[:k]); !errors.Is(err, ErrNeedMore) {
			t.Fatalf("prefix of %d/%d bytes: err = %v, want ErrNeedMore", k, end, err)
		}
	}
}

func TestParseClientHelloReframed(t *testing.T) {
	for name, raw := range goHellos(t) {
		want, err := ParseClientHello(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, sizes := range [][]int{{1}, {7}, {3, 1000}, {100}, {maxRecordPayload}, {4, 1}} {
			framed := reframe(t, raw, sizes...)
			if len(framed) > MaxPeek {
				continue // fragmenting this far is rejected; tested below
			}
			got, err := ParseClientHello(framed)
			if err != nil {
				t.Fatalf("%s in records of %v: %v", name, sizes, err)
			}
			want.Len = len(framed)
			if got.ServerName != want.ServerName || !slices.Equal(got.ALPN, want.ALPN) || got.Len != want.Len {
				t.Errorf("%s in records of %v: got %+v", name, sizes, got)
			}
		}
	}
}

func TestParseClientHelloCaptures(t *testing.T) {
	tests := []struct {
		file, sni string
		alpn      []string
	}{
		{"curl.bin", "allowed.test", []string{"h2", "http/1.1"}},
		{"openssl.bin", "openssl.test", []string{"h2", "http/1.1"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw := readTestdata(t, tc.file)
			ch, err := ParseClientHello(raw)
			if err != nil {
				t.Fatal(err)
			}
			if ch.ServerName != tc.sni || !slices.Equal(ch.ALPN, tc.alpn) {
				t.Errorf("got SNI %q ALPN %q, want %q %q", ch.ServerName, ch.ALPN, tc.sni, tc.alpn)
			}
			if !slices.Contains(ch.SupportedVersions, tls.VersionTLS13) {
				t.Errorf("SupportedVersions %x lacks TLS 1.3", ch.SupportedVersions)
			}
			assertPrefixesNeedMore(t, raw, ch.Len)
		})
	}
}

func TestParseClientHelloNames(t *testing.T) {
	tests := []struct {
		name   string
		exts   []tlsExt
		sni    string
		isIP   bool
		reason string // substring of the error; "" for success
	}{
		{"host name", []tlsExt{hostSNI("Mixed.Example.test.")}, "Mixed.Example.test.", false, ""},
		{"no extensions at all", nil, "", false, ""},
		{"no server_name", []tlsExt{alpnExt("h2")}, "", false, ""},
		{"IPv4 literal flagged", []tlsExt{hostSNI("192.0.2.7")}, "192.0.2.7", true, ""},
		{"IPv6 literal flagged", []tlsExt{hostSNI("2001:db8::7")}, "2001:db8::7", true, ""},
		{"NUL", []tlsExt{hostSNI("allowed.test\x00.evil")}, "allowed.test\x00.evil", false, "byte 0x00 at offset 12"},
		{"newline", []tlsExt{hostSNI("a.test\nx")}, "a.test\nx", false, "byte 0x0a at offset 6"},
		{"space", []tlsExt{hostSNI("a test")}, "a test", false, "byte 0x20 at offset 1"},
		{"control byte", []tlsExt{hostSNI("\x7fa.test")}, "\x7fa.test", false, "byte 0x7f at offset 0"},
		{"at sign", []tlsExt{hostSNI("allowed.test@evil")}, "allowed.test@evil", false, "byte 0x40"},
		{"zone in IPv6 literal", []tlsExt{hostSNI("fe80::1%eth0")}, "fe80::1%eth0", false, "byte 0x3a at offset 4"},
		{"empty host_name", []tlsExt{hostSNI("")}, "", false, "empty host_name"},
		{"too long", []tlsExt{hostSNI(strings.Repeat("a", 256))}, strings.Repeat("a", 256), false, "exceeds 255"},
		{"two host_names", []tlsExt{sniExt(0, "a.test", 0, "b.test")}, "a.test", false, "more than one host_name"},
		{"unknown name_type", []tlsExt{sniExt(1, "a.test")}, "", false, "unknown name_type 1"},
		{"empty list", []tlsExt{{extServerName, []byte{0, 0}}}, "", false, "empty server_name_list"},
		{"empty extension", []tlsExt{{extServerName, nil}}, "", false, "list length does not match"},
		{"list longer than extension", []tlsExt{{extServerName, []byte{0, 9, 0, 0, 1, 'a'}}}, "", false, "list length does not match"},
		{"name overruns list", []tlsExt{{extServerName, []byte{0, 4, 0, 0, 9, 'a'}}}, "", false, "overruns the list"},
		{"duplicate extension", []tlsExt{hostSNI("a.test"), hostSNI("b.test")}, "a.test", false, "duplicate extension 0"},
		{"ALPN empty name", []tlsExt{alpnExt("h2", "")}, "", false, "alpn: empty protocol name"},
		{"ALPN empty list", []tlsExt{{extALPN, []byte{0, 0}}}, "", false, "alpn: empty protocol_name_list"},
		{"supported_versions odd", []tlsExt{{extSupportedVersions, []byte{3, 3, 4, 3}}}, "", false, "supported_versions: list of 3 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := ParseClientHello(buildHello(tc.exts...))
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else if !errors.Is(err, ErrMalformedClientHello) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("err = %v, want ErrMalformedClientHello with %q", err, tc.reason)
			}
			if ch.ServerName != tc.sni || ch.ServerNameIsIP != tc.isIP {
				t.Errorf("ServerName %q IsIP %v, want %q %v", ch.ServerName, ch.ServerNameIsIP, tc.sni, tc.isIP)
			}
		})
	}
}

func TestParseClientHelloFraming(t *testing.T) {
	good := buildHello(hostSNI("a.test"))
	msg := good[recordHeaderLen:]
	with := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name   string
		in     []byte
		reason string
	}{
		{"alert record", []byte{21, 3, 1, 0, 2, 2, 40}, "record 0 has content type 21"},
		{"application data", []byte{23, 3, 3, 0, 1}, "content type 23"},
		{"SSLv2-style major version", []byte{22, 2, 0, 0, 1}, "version major 2"},
		{"record version 3.9", []byte{22, 3, 9}, "version 3.9"},
		{"empty record", []byte{22, 3, 1, 0, 0}, "record 0 is empty"},
		{"record over 2^14", []byte{22, 3, 1, 0x40, 0x01}, "exceeds 2^14"},
		{"handshake type ServerHello", with(func(b []byte) []byte { b[5] = 2; return b }), "handshake type 2"},
		{"message over MaxClientHello", []byte{22, 3, 1, 0, 4, 1, 0, 0x80, 0x01}, "exceeds the 32768-byte limit"},
		{"alert interleaved", append(frameRecords(msg[:10], 10), 21, 3, 1, 0, 2, 2, 40), "record 1 has content type 21"},
		{"data past the hello in its record", with(func(b []byte) []byte {
			b = append(b, 0xff)
			binary.BigEndian.PutUint16(b[3:5], uint16(len(b)-recordHeaderLen))
			return b
		}), "1 bytes past the end"},
		{"too fragmented for MaxPeek", frameRecords(append([]byte{1, 0, 0x7f, 0xfc}, make([]byte, 0x7ffc)...), 1), "peek limit"},
		{"body truncated inside", frameRecords([]byte{1, 0, 0, 3, 3, 3, 0}, 100), "truncated random"},
		{"no cipher suites", frameRecords(append(append([]byte{1, 0, 0, 39, 3, 3}, make([]byte, 32)...), 0, 0, 0, 1, 0), 100), "bad cipher_suites"},
		{"trailing junk after extensions", with(func(b []byte) []byte {
			b = append(b, 0)
			binary.BigEndian.PutUint16(b[3:5], uint16(len(b)-recordHeaderLen))
			n := len(b) - recordHeaderLen - handshakeHeaderLen
			b[6], b[7], b[8] = byte(n>>16), byte(n>>8), byte(n)
			return b
		}), "1 trailing bytes after extensions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseClientHello(tc.in)
			if !errors.Is(err, ErrMalformedClientHello) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("err = %v, want ErrMalformedClientHello with %q", err, tc.reason)
			}
		})
	}
}

func TestLooksLikeTLS(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"", false},
		{"\x16", true},
		{"\x16\x03", true},
		{"\x16\x03\x01\x02\x00\x01", true},
		{"\x16\x04", false},
		{"\x17\x03\x03", false},
		{"GET / HTTP/1.1", false},
		{"SSH-2.0-OpenSSH", false},
	}
	for _, tc := range tests {
		if got := LooksLikeTLS([]byte(tc.in)); got != tc.want {
			t.Errorf("LooksLikeTLS(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func BenchmarkParseClientHello(b *testing.B) {
	inputs := map[string][]byte{"curl": readTestdata(b, "curl.bin")}
	for k, v := range goHellos(b) {
		inputs["go-"+k] = v
	}
	for _, name := range []string{"curl", "go-classic", "go-post-quantum", "go-large"} {
		raw := inputs[name]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseClientHello(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
