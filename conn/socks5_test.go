package conn

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// The testdata files are what curl 7.88 sent to a loopback listener that
// accepted "no authentication": the greeting followed by the request.
func TestSOCKS5CapturedClients(t *testing.T) {
	tests := []struct {
		file string
		want SOCKS5Request
	}{
		// curl --socks5-hostname: the proxy resolves the name.
		{"socks5_curl_hostname.bin", SOCKS5Request{Name: "allowed.test", Port: 80}},
		// curl --socks5 with IP destinations.
		{"socks5_curl_ipv4.bin", SOCKS5Request{Addr: netip.MustParseAddr("198.51.100.1"), Port: 8080}},
		{"socks5_curl_ipv6.bin", SOCKS5Request{Addr: netip.MustParseAddr("2001:db8::1"), Port: 443}},
		// socks5h://user:pw@ offers no-auth, GSSAPI and user/password.
		{"socks5_curl_userpass.bin", SOCKS5Request{Name: "allowed.test", Port: 80}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			g, err := ParseSOCKS5Greeting(b)
			if err != nil {
				t.Fatalf("greeting: %v", err)
			}
			// Every proper prefix of the greeting is only "need more".
			for i := range g {
				if _, err := ParseSOCKS5Greeting(b[:i]); !errors.Is(err, ErrNeedMore) {
					t.Fatalf("greeting prefix %d: %v, want ErrNeedMore", i, err)
				}
			}
			rest := b[g:]
			r, n, err := ParseSOCKS5Request(rest)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			if r != tt.want || n != len(rest) {
				t.Fatalf("request = %+v (%d bytes), want %+v (%d bytes)", r, n, tt.want, len(rest))
			}
			for i := range n {
				if _, _, err := ParseSOCKS5Request(rest[:i]); !errors.Is(err, ErrNeedMore) {
					t.Fatalf("request prefix %d: %v, want ErrNeedMore", i, err)
				}
			}
			// Pipelined bytes after the request are not consumed.
			_, n2, err := ParseSOCKS5Request(append(append([]byte(nil), rest...), 0x16, 3, 1))
			if err != nil || n2 != n {
				t.Fatalf("with trailing bytes: n=%d err=%v, want n=%d", n2, err, n)
			}
		})
	}
}

func TestSOCKS5GreetingErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"SOCKS4", []byte{4, 1, 0, 80, 1, 2, 3, 4, 0}, ErrMalformedSOCKS5},
		{"HTTP", []byte("GET / HTTP/1.1\r\n"), ErrMalformedSOCKS5},
		{"no methods", []byte{5, 0}, ErrMalformedSOCKS5},
		{"user/password only", []byte{5, 1, 2}, ErrSOCKS5NoAcceptableMethod},
		{"GSSAPI and user/password", []byte{5, 2, 1, 2}, ErrSOCKS5NoAcceptableMethod},
		{"empty", nil, ErrNeedMore},
		{"version only", []byte{5}, ErrNeedMore},
		{"methods cut short", []byte{5, 3, 2, 1}, ErrNeedMore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseSOCKS5Greeting(tt.in)
			if !errors.Is(err, tt.want) || n != 0 {
				t.Fatalf("ParseSOCKS5Greeting = %d, %v; want 0, %v", n, err, tt.want)
			}
		})
	}
	// 255 methods with no-auth last is accepted: the longest greeting.
	long := append([]byte{5, 255}, bytes.Repeat([]byte{0x80}, 254)...)
	long = append(long, SOCKS5MethodNoAuth)
	if n, err := ParseSOCKS5Greeting(long); err != nil || n != MaxSOCKS5Greeting {
		t.Fatalf("255 methods: %d, %v", n, err)
	}
}

func TestSOCKS5RequestErrors(t *testing.T) {
	name := func(s string) []byte {
		return append(append([]byte{5, 1, 0, 3, byte(len(s))}, s...), 0, 80)
	}
	tests := []struct {
		name  string
		in    []byte
		want  error
		reply SOCKS5Reply
	}{
		{"BIND", []byte{5, 2, 0, 1, 198, 51, 100, 1, 0, 80}, ErrSOCKS5Command, SOCKS5CommandNotSupported},
		{"UDP ASSOCIATE", []byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}, ErrSOCKS5Command, SOCKS5CommandNotSupported},
		{"unknown command", append([]byte{5, 9, 0, 3, 1, 'a'}, 0, 80), ErrSOCKS5Command, SOCKS5CommandNotSupported},
		{"unknown address type", []byte{5, 1, 0, 2, 1, 2, 3, 4}, ErrSOCKS5AddrType, SOCKS5AddrNotSupported},
		{"version 4", []byte{4, 1, 0, 1, 1, 2, 3, 4, 0, 80}, ErrMalformedSOCKS5, SOCKS5GeneralFailure},
		{"reserved byte set", []byte{5, 1, 7, 1, 1, 2, 3, 4, 0, 80}, ErrMalformedSOCKS5, SOCKS5GeneralFailure},
		{"empty name", []byte{5, 1, 0, 3, 0, 0, 80}, ErrMalformedSOCKS5, SOCKS5GeneralFailure},
		{"NUL in name", name("allowed.test\x00.evil.test"), ErrMalformedSOCKS5, SOCKS5GeneralFailure},
		{"newline in name", name("a.test\r\nX-Injected: 1"), ErrMalformedSOCKS5, SOCKS5GeneralFailure},
		{"space in name", name("a .test"), ErrMalformedSOCKS5, SOCKS5GeneralFailure},
		{"UTF-8 in name", name("bücher.test"), ErrMalformedSOCKS5, SOCKS5GeneralFailure},
		{"bad byte before the name is complete", []byte{5, 1, 0, 3, 20, 'a', 0x7f}, ErrMalformedSOCKS5, SOCKS5GeneralFailure},
		{"port 0", []byte{5, 1, 0, 1, 198, 51, 100, 1, 0, 0}, ErrMalformedSOCKS5, SOCKS5GeneralFailure},
		{"IPv4 cut short", []byte{5, 1, 0, 1, 198, 51}, ErrNeedMore, SOCKS5GeneralFailure},
		{"name cut short", []byte{5, 1, 0, 3, 12, 'a', 'l'}, ErrNeedMore, SOCKS5GeneralFailure},
		{"port cut short", []byte{5, 1, 0, 4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1}, ErrNeedMore, SOCKS5GeneralFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, n, err := ParseSOCKS5Request(tt.in)
			if !errors.Is(err, tt.want) || n != 0 || r != (SOCKS5Request{}) {
				t.Fatalf("ParseSOCKS5Request = %+v, %d, %v; want zero, 0, %v", r, n, err, tt.want)
			}
			if got := SOCKS5ReplyFor(err); got != tt.reply {
				t.Errorf("reply for %v = %#x, want %#x", err, got, tt.reply)
			}
		})
	}
	// The longest name (255 bytes) is accepted and the request is then
	// exactly MaxSOCKS5Request long.
	long := bytes.Repeat([]byte{'a'}, 255)
	r, n, err := ParseSOCKS5Request(name(string(long)))
	if err != nil || n != MaxSOCKS5Request || r.Name != string(long) || r.Port != 80 {
		t.Fatalf("255-byte name: %d, %v", n, err)
	}
}

func TestSOCKS5Replies(t *testing.T) {
	tests := []struct {
		name  string
		code  SOCKS5Reply
		bound netip.AddrPort
		want  []byte
	}{
		{"unspecified", SOCKS5Succeeded, netip.AddrPort{}, []byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"IPv4", SOCKS5NotAllowed, netip.MustParseAddrPort("198.51.100.2:40000"), []byte{5, 2, 0, 1, 198, 51, 100, 2, 0x9c, 0x40}},
		{"IPv4-mapped is sent as IPv4", SOCKS5Succeeded, netip.MustParseAddrPort("[::ffff:198.51.100.2]:1"), []byte{5, 0, 0, 1, 198, 51, 100, 2, 0, 1}},
		{"IPv6", SOCKS5HostUnreachable, netip.MustParseAddrPort("[2001:db8::2]:443"),
			[]byte{5, 4, 0, 4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0xbb}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SOCKS5ReplyMessage(tt.code, tt.bound); !bytes.Equal(got, tt.want) {
				t.Fatalf("reply = % x, want % x", got, tt.want)
			}
		})
	}
	if got := SOCKS5MethodReply(SOCKS5MethodNoAcceptable); !bytes.Equal(got, []byte{5, 0xff}) {
		t.Fatalf("method refusal = % x", got)
	}
}

// FuzzSOCKS5 feeds arbitrary client streams through both parsers: they must
// never panic, never claim more bytes than given, return a name only of
// printable ASCII, and agree with themselves on every prefix (a prefix of a
// complete message is only ever ErrNeedMore).
func FuzzSOCKS5(f *testing.F) {
	for _, name := range []string{"socks5_curl_hostname.bin", "socks5_curl_ipv4.bin", "socks5_curl_ipv6.bin", "socks5_curl_userpass.bin"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{5, 1, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ParseSOCKS5Greeting(b)
		if err != nil {
			return
		}
		if g < 3 || g > len(b) || g > MaxSOCKS5Greeting {
			t.Fatalf("greeting length %d of %d bytes", g, len(b))
		}
		rest := b[g:]
		r, n, err := ParseSOCKS5Request(rest)
		if err != nil {
			if n != 0 || r != (SOCKS5Request{}) {
				t.Fatalf("error %v with result %+v, %d", err, r, n)
			}
			return
		}
		if n > len(rest) || n > MaxSOCKS5Request {
			t.Fatalf("request length %d of %d bytes", n, len(rest))
		}
		if (r.Name == "") == !r.Addr.IsValid() || r.Port == 0 {
			t.Fatalf("request %+v: want exactly one of name and address, and a port", r)
		}
		if err := checkSOCKS5Name([]byte(r.Name)); err != nil {
			t.Fatalf("name %q passed: %v", r.Name, err)
		}
		for i := range n {
			if _, _, err := ParseSOCKS5Request(rest[:i]); !errors.Is(err, ErrNeedMore) {
				t.Fatalf("prefix %d of a valid request: %v", i, err)
			}
		}
	})
}
