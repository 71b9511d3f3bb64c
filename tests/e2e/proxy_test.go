// Package e2e runs the real forge-supervisor binary as PID 1 in a private
// agent namespace against a private world namespace (tests/world), and
// checks what the agent can and cannot reach, and what the audit says.
package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

const allowlist = `{"profile":"standard","mode":"allowlist",
 "allowed_domains":["allowed.test"],"tool_domains":["*.wild.test"],
 "all_domains":["allowed.test","*.wild.test"],
 "allowed_tcp":["allowed.test:7000"]}`

// startAllowlist starts the world and a supervisor whose agent just
// sleeps; test clients then run as UID 1000 in the agent namespace.
func startAllowlist(t *testing.T) (*world.World, *world.Supervisor) {
	t.Helper()
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	s := w.StartSupervisor(t, pol, nil, "sleep", "600")
	s.WaitReady()
	return w, s
}

// lastEgress waits for the audit event of a connection matching match.
func lastEgress(t *testing.T, s *world.Supervisor, match func(world.Event) bool) world.Event {
	t.Helper()
	return s.WaitEvent(func(e world.Event) bool {
		return strings.HasPrefix(e.Msg(), "egress_") && match(e)
	}, 10*time.Second)
}

func TestProxyTLSAndHTTP(t *testing.T) {
	w, s := startAllowlist(t)
	for _, fam := range []string{"-4", "-6"} {
		t.Run(fam, func(t *testing.T) {
			code, body, err := w.Curl(fam, "https://allowed.test/")
			if err != nil || code != "200" || !strings.Contains(body, "world says hello to allowed.test") {
				t.Fatalf("allowed TLS: code %s err %v body %q", code, err, body)
			}
			e := lastEgress(t, s, func(e world.Event) bool { return e.Str("sni") == "allowed.test" && e.Msg() == "egress_allowed" })
			if e.Str("reason") != "allowed_domain" || e.Str("proto") != "tls" {
				t.Errorf("allowed TLS audit: %v", e)
			}

			// A denied name gets a TLS access_denied alert. The name does
			// not resolve through the supervisor's DNS, so curl is given
			// the address directly.
			v6 := fam == "-6"
			addr := "198.51.100.1"
			if v6 {
				addr = "[2001:db8::1]"
			}
			code, body, err = w.Curl(fam, "--resolve", "evil.test:443:"+addr, "https://evil.test/")
			if err == nil || code != "000" || !strings.Contains(strings.ToLower(body), "access denied") {
				t.Fatalf("denied TLS: code %s err %v out %q, want a TLS access denied alert", code, err, body)
			}
			e = lastEgress(t, s, func(e world.Event) bool { return e.Str("sni") == "evil.test" })
			if e.Msg() != "egress_denied" || e.Str("reason") != "not_in_allowlist" {
				t.Errorf("denied TLS audit: %v", e)
			}

			code, body, err = w.Curl(fam, "http://allowed.test/")
			if err != nil || code != "200" {
				t.Fatalf("allowed HTTP: %s %v %q", code, err, body)
			}
			code, body, _ = w.Curl(fam, "--resolve", "evil.test:80:"+addr, "http://evil.test/")
			if code != "403" || !strings.Contains(body, "evil.test") {
				t.Fatalf("denied HTTP: %s %q, want 403 naming the host", code, body)
			}
		})
	}
}

func TestProxyRawTCPToUnknownIPIsReset(t *testing.T) {
	w, s := startAllowlist(t)
	for _, dst := range []string{"198.51.100.3", "2001:db8::3"} {
		out, err := w.AsAgent("sh", "-c", "printf hello | nc -w 3 "+dst+" 7000").CombinedOutput()
		if strings.Contains(string(out), "echo") {
			t.Fatalf("raw TCP to %s reached the world: %q", dst, out)
		}
		_ = err
		e := lastEgress(t, s, func(e world.Event) bool { return e.Str("dst_ip") == dst })
		if e.Msg() != "egress_denied" || e.Str("reason") != "no_name_for_ip" || e.Str("proto") != "opaque" {
			t.Errorf("raw TCP to %s: audit %v", dst, e)
		}
	}
}

func TestProxyLearnedIPAllowsOpaque(t *testing.T) {
	w, s := startAllowlist(t)
	// Resolve through the supervisor's DNS proxy, then connect raw.
	if out, err := w.AsAgent("dig", "+short", "+time=2", "+tries=1", "allowed.test").CombinedOutput(); err != nil || !strings.Contains(string(out), "198.51.100.1") {
		t.Fatalf("dig allowed.test: %v %q", err, out)
	}
	out, err := w.AsAgent("sh", "-c", "printf hello | nc -N -w 3 198.51.100.1 7000").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "echo 5 bytes") {
		t.Fatalf("raw TCP to a learned IP on an allowed port: %v %q", err, out)
	}
	e := lastEgress(t, s, func(e world.Event) bool { return e.Str("dst_ip") == "198.51.100.1" && e.Str("proto") == "opaque" })
	if e.Msg() != "egress_allowed" || e.Str("reason") != "learned_ip" {
		t.Errorf("audit %v", e)
	}
}

func TestProxySNIToWrongIPIsDenied(t *testing.T) {
	w, s := startAllowlist(t)
	// allowed.test never resolved to 198.51.100.3.
	code, out, err := w.Curl("--resolve", "allowed.test:443:198.51.100.3", "https://allowed.test/")
	if err == nil || code != "000" {
		t.Fatalf("allowed SNI to a foreign IP: code %s err %v %q", code, err, out)
	}
	e := lastEgress(t, s, func(e world.Event) bool { return e.Str("dst_ip") == "198.51.100.3" })
	if e.Msg() != "egress_denied" || e.Str("reason") != "sni_ip_mismatch" {
		t.Errorf("audit %v", e)
	}
}
