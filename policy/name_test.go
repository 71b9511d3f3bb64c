package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeName(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	name253 := strings.Repeat(label63+".", 3) + strings.Repeat("b", 61) // 3*64 + 61 = 253
	tests := []struct {
		in      string
		want    string
		wantErr error
	}{
		{"example.com", "example.com", nil},
		{"Example.COM", "example.com", nil},
		{"example.com.", "example.com", nil},
		{"EXAMPLE.COM.", "example.com", nil},
		{"localhost", "localhost", nil},
		{"1password.com", "1password.com", nil},
		{"a-b.example", "a-b.example", nil},
		{"bücher.example", "xn--bcher-kva.example", nil},
		{"BÜCHER.example", "xn--bcher-kva.example", nil},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", nil},
		{"ＡＰＩ．example.com", "api.example.com", nil}, // fullwidth letters and full stop
		{"a\u00adb.example", "ab.example", nil},     // soft hyphen maps to nothing
		{label63 + ".com", label63 + ".com", nil},
		{name253, name253, nil},
		{name253 + ".", name253, nil},
		// What DNS accepts (RFC 2181 §11), as real names use it: issue #12.
		{"_mongodb._tcp.cluster0.xxxx.mongodb.net", "_mongodb._tcp.cluster0.xxxx.mongodb.net", nil},
		{"_grpc_config.api.example.com", "_grpc_config.api.example.com", nil},
		{"_dmarc.example.com", "_dmarc.example.com", nil},
		{"r3---sn-abc.googlevideo.com", "r3---sn-abc.googlevideo.com", nil},
		{"my_svc.internal", "my_svc.internal", nil},
		{"MY_SVC.Internal.", "my_svc.internal", nil},
		{"ab--cd.com", "ab--cd.com", nil},
		{"-a.com", "-a.com", nil},
		{"a-.com", "a-.com", nil},
		{"xn--a.com", "xn--a.com", nil}, // ASCII is taken as DNS carries it
		{"_sip._tcp.bücher.example", "_sip._tcp.xn--bcher-kva.example", nil},

		{"", "", ErrInvalidName},
		{".", "", ErrInvalidName},
		{"..", "", ErrInvalidName},
		{".example.com", "", ErrInvalidName},
		{"example..com", "", ErrInvalidName},
		{"example.com..", "", ErrInvalidName},
		{"a b.com", "", ErrInvalidName},
		{"a\tb.com", "", ErrInvalidName},
		{"a\x00b.com", "", ErrInvalidName},
		{"a\x7fb.com", "", ErrInvalidName},
		{"example.com\n", "", ErrInvalidName},
		{"a!b.com", "", ErrInvalidName},
		{"a/b.com", "", ErrInvalidName},
		{"a\\.b.com", "", ErrInvalidName},
		{"bü\u00a0cher.example", "", ErrInvalidName}, // no-break space maps to a space
		{"*.example.com", "", ErrInvalidName},
		{"*", "", ErrInvalidName},
		{"example.com:443", "", ErrInvalidName},
		{"user@example.com", "", ErrInvalidName},
		{strings.Repeat("a", 64) + ".com", "", ErrInvalidName},
		{name253 + "c", "", ErrInvalidName},
		{"b" + name253, "", ErrInvalidName},
		{strings.Repeat("a.", 600) + "com", "", ErrInvalidName},
		{"\xff\xfe.com", "", ErrInvalidName},

		{"198.51.100.7", "", ErrIPLiteral},
		{"198.51.100.7.", "", ErrIPLiteral},
		{"2001:db8::1", "", ErrIPLiteral},
		{"[2001:db8::1]", "", ErrIPLiteral},
		{"::ffff:127.0.0.1", "", ErrIPLiteral},
		{"127.1", "", ErrIPLiteral},
		{"2130706433", "", ErrIPLiteral},
		{"0x7f000001", "", ErrIPLiteral},
		{"0X7F.1", "", ErrIPLiteral},
		{"example.123", "", ErrIPLiteral},
	}
	for _, tt := range tests {
		got, err := NormalizeName(tt.in)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("NormalizeName(%q) = %q, %v; want error %v", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		// Normal form is a fixed point, and on the fast path.
		if again, err := NormalizeName(got); err != nil || again != got {
			t.Errorf("NormalizeName(%q) = %q, %v; normal form must be a fixed point", got, again, err)
		}
	}
}

// TestCanonicalFastPathAgrees holds the allocation-free fast path to the
// full normalization: whatever it accepts, normalizeSlow returns unchanged.
func TestCanonicalFastPathAgrees(t *testing.T) {
	for _, name := range []string{
		"example.com", "a", "a-b.c", "1password.com", "a.b.c.d.e.f.g",
		"ab-cd.com", "abc-d.com", "a--b.com", "xn--bcher-kva.example", "0x.com",
		"_dmarc.example.com", "r3---sn-abc.googlevideo.com", "-a.b", "a_.b",
	} {
		checkFastPath(t, name)
	}
}

func checkFastPath(t *testing.T, name string) {
	t.Helper()
	if !isCanonicalName(name) {
		return
	}
	got, err := normalizeSlow(name)
	if err != nil || got != name {
		t.Errorf("fast path accepts %q but normalization gives %q, %v", name, got, err)
	}
}

func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{"example.com", "Example.COM.", "bücher.example", "xn--bcher-kva.example", "127.1", "a--b.com", "ab--c.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		checkFastPath(t, name)
		n, err := NormalizeName(name)
		if err != nil {
			return
		}
		if !isCanonicalName(n) {
			t.Errorf("NormalizeName(%q) = %q, which the fast path does not accept", name, n)
		}
		if again, err := NormalizeName(n); err != nil || again != n {
			t.Errorf("NormalizeName(%q) = %q, %v; not a fixed point", n, again, err)
		}
	})
}
