package dns

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestParseUpstreams(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"198.51.100.1", []string{"198.51.100.1:53"}, false},
		{"198.51.100.1:5353, [2001:db8::1]:53 ,2001:db8::2", []string{"198.51.100.1:5353", "[2001:db8::1]:53", "[2001:db8::2]:53"}, false},
		{"[2001:db8::3]", []string{"[2001:db8::3]:53"}, false},
		{"::ffff:198.51.100.1", []string{"198.51.100.1:53"}, false},
		{"", nil, true},
		{" , ", nil, true},
		{"dns.example:53", nil, true},
		{"198.51.100.1:0", nil, true},
		{"198.51.100.1:99999", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseUpstreams(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("ParseUpstreams(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
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
