package policy

import (
	"context"
	"net/netip"
	"strings"
	"testing"
)

// TestDeepWildcards exercises label depths past 64, where the depth bitset
// moves to its second word, and a wildcard at the 127-label limit.
func TestDeepWildcards(t *testing.T) {
	suffix70 := strings.TrimSuffix(strings.Repeat("x.", 70), ".") // 70 labels
	p := mustParse(t, `{"mode":"allowlist","allowed_domains":["*.`+suffix70+`","*.b.c"]}`)
	tests := []struct {
		name  string
		allow bool
	}{
		{"a." + suffix70, true},
		{"a.b." + suffix70, true},
		{suffix70, false},
		{"y." + suffix70[2:], false}, // 70 labels, but not under the suffix
		{"a.b.c", true},
		{strings.Repeat("z.", 124) + "b.c", true}, // 126 labels
		{"b.c", false},
	}
	for _, tt := range tests {
		if v := p.CheckName(tt.name, 443); v.Allow != tt.allow {
			t.Errorf("CheckName(%d labels) = %+v, want allow=%t", strings.Count(tt.name, ".")+1, v, tt.allow)
		}
	}
}

func TestCIDRMostSpecificAndPrivateTCP(t *testing.T) {
	p := mustParse(t, `{"mode":"allowlist","allow_private_ips":true,
		"allowed_private_cidrs":["10.0.0.0/8","10.1.0.0/16","fd00::/8","fd00:1::/32"],
		"allowed_tcp":["192.168.9.9:6379"]}`)
	tests := []struct {
		ip     string
		port   uint16
		allow  bool
		reason string
		rule   string
	}{
		// CIDRs are exemptions, never grants (issue #12).
		{"10.1.2.3", 22, false, ReasonNoNameForIP, ""},
		{"10.2.2.3", 22, false, ReasonNoNameForIP, ""},
		{"fd00:1::9", 22, false, ReasonNoNameForIP, ""},
		{"fd00:2::9", 22, false, ReasonNoNameForIP, ""},
		{"192.168.9.9", 6379, true, ReasonAllowedTCP, "allowed_tcp:192.168.9.9:6379"},
		{"192.168.9.9", 6380, false, ReasonNoNameForIP, ""},
		{"11.0.0.1", 22, false, ReasonNoNameForIP, ""},
	}
	for _, tt := range tests {
		got := p.Decide(context.Background(), Request{IP: netip.MustParseAddr(tt.ip), Port: tt.port}, nil)
		if want := (Verdict{Allow: tt.allow, Reason: tt.reason, Rule: tt.rule}); got != want {
			t.Errorf("Decide(%s:%d) = %+v, want %+v", tt.ip, tt.port, got, want)
		}
	}
}

// TestPortZeroMeansAnyPort: the DNS proxy's question "is this name allowed
// on some port" is answered by every kind of name rule.
func TestPortZeroMeansAnyPort(t *testing.T) {
	p := mustParse(t, `{"mode":"allowlist","allowed_tcp":["db.example.com:5432","*.svc.example:*"]}`)
	for _, name := range []string{"db.example.com", "a.svc.example"} {
		if v := p.CheckName(name, 0); !v.Allow {
			t.Errorf("CheckName(%s, 0) = %+v, want allow", name, v)
		}
	}
	if v := p.CheckName("svc.example", 0); v.Allow || v.Reason != ReasonNotAllowed {
		t.Errorf("CheckName(svc.example, 0) = %+v, want not_in_allowlist", v)
	}
}
