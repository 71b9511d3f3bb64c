package obs

import "testing"

func TestSiteOf(t *testing.T) {
	for in, want := range map[string]string{
		"api.Evil.test.":    "evil.test",
		"evil.test":         "evil.test",
		"test":              "test",
		"evil.test:8080":    "evil.test",
		"198.51.100.3":      "",
		"198.51.100.3:80":   "",
		"[2001:db8::3]:80":  "",
		"2001:db8::3":       "",
		"":                  "",
		"a.b.c.d.wild.test": "wild.test",
	} {
		if got := siteOf(in); got != want {
			t.Errorf("siteOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOpsMetricsBounded: the agent chooses the names, so their series stop
// at maxDeniedNameLabels and the rest counts as other.
func TestOpsMetricsBounded(t *testing.T) {
	a, _, m, _ := newTestAuditor(t)
	for i := range maxDeniedNameLabels + 50 {
		a.DNS(DNSQuery{QName: string(rune('a'+i%26)) + "x" + itoa(i) + ".test", QType: "A", Reason: "not_in_allowlist"})
	}
	a.Egress(Flow{Proto: "tls", SNI: "x.evil.test", Reason: "not_in_allowlist", Source: "transparent"})
	a.Egress(Flow{Allowed: true, Proto: "tls", SNI: "allowed.test", Reason: "allowed_domain"})
	if n := seriesCount(m.ops.deniedNames); n != maxDeniedNameLabels+1 {
		t.Errorf("%d denied-name series, want %d plus other", n, maxDeniedNameLabels)
	}
	if v := value(t, m.ops.dnsDenials); v != maxDeniedNameLabels+50 {
		t.Errorf("dns_denials_total = %v", v)
	}
	if v := value(t, m.ops.flowsBySource); v != 2 {
		t.Errorf("connections_by_source_total = %v, want 2 (an empty source counts as transparent)", v)
	}
}

func itoa(i int) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		if i /= 10; i == 0 {
			return string(b)
		}
	}
}
