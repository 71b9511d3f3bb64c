package dns

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestParseUpstreams: the one parser of FORGE_SUPERVISOR_DNS_UPSTREAM (the
// supervisor's config reads it through this; config_test.go checks the
// messages under the setting's names).
func TestParseUpstreams(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string // a part of the error; "" for none
	}{
		{"198.51.100.1", []string{"198.51.100.1:53"}, ""},
		{"198.51.100.1:5353, [2001:db8::1]:53 ,2001:db8::2", []string{"198.51.100.1:5353", "[2001:db8::1]:53", "[2001:db8::2]:53"}, ""},
		{"::ffff:198.51.100.1", []string{"198.51.100.1:53"}, ""},
		{"[::ffff:198.51.100.1]:5353", []string{"198.51.100.1:5353"}, ""},
		// None: the supervisor reads /etc/resolv.conf instead.
		{"", nil, ""},
		{"  ", nil, ""},
		{" , ", nil, "IP address"},
		{"198.51.100.1,,198.51.100.2", nil, "IP address"},
		// A bracketed IPv6 address is the host:port form; it needs its port.
		{"[2001:db8::3]", nil, "IP address"},
		{"dns.example:53", nil, "IP address"},
		{"198.51.100.1:0", nil, "port must be"},
		{"198.51.100.1:99999", nil, "IP address"},
		{"0.0.0.0", nil, "unicast"},
		{"[::]:53", nil, "unicast"},
		{"224.0.0.251", nil, "unicast"},
		{"fe80::1%eth0", nil, "zones"},
		{"198.51.100.1,198.51.100.1:53", nil, "listed twice"},
		{strings.Repeat("198.51.100.1,", 8) + "198.51.100.2", nil, "at most 8"},
	}
	for _, tt := range tests {
		got, err := ParseUpstreams(tt.in)
		if tt.wantErr == "" && (err != nil || !slices.Equal(got, tt.want)) {
			t.Errorf("ParseUpstreams(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("ParseUpstreams(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
		}
	}
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", `# generated
search example.internal
nameserver 198.51.100.1
nameserver   2001:db8::1
nameserver fe80::1%eth0
nameserver not-an-ip
options ndots:5 timeout:1
nameserver
`)
	got, err := UpstreamsFromResolvConf(good)
	if want := []string{"198.51.100.1:53", "[2001:db8::1]:53", "[fe80::1%eth0]:53"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("UpstreamsFromResolvConf = %v, %v; want %v", got, err, want)
	}
	if _, err := UpstreamsFromResolvConf(write("none", "search example\n")); err == nil {
		t.Error("a resolv.conf without nameservers gave no error")
	}
	if _, err := UpstreamsFromResolvConf(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing resolv.conf gave no error")
	}
}

// FuzzParseUpstreams: never a panic, and what is accepted is canonical:
// parsing the output again gives the same list.
func FuzzParseUpstreams(f *testing.F) {
	for _, s := range []string{"198.51.100.1", "[2001:db8::1]:53,198.51.100.1:5353", "::ffff:192.0.2.1", "fe80::1%eth0", " , ", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseUpstreams(in)
		if err != nil {
			return
		}
		again, err := ParseUpstreams(strings.Join(got, ","))
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("ParseUpstreams(%q) = %q, which parses again to %q, %v", in, got, again, err)
		}
	})
}
