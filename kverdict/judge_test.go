package kverdict

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"testing"

	"github.com/forge/forge-supervisor/conn"
	"github.com/forge/forge-supervisor/policy"
)

// clientHello captures the bytes crypto/tls sends for a ClientHello.
func clientHello(t *testing.T, sni string) []byte {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		_ = tls.Client(a, &tls.Config{ServerName: sni, InsecureSkipVerify: true}).Handshake()
	}()
	buf := make([]byte, 64<<10)
	n, err := b.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()
	return buf[:n]
}

type fakeNames map[string]netip.Addr

func (f fakeNames) Resolves(_ context.Context, name string, ip netip.Addr) bool { return f[name] == ip }
func (f fakeNames) NamesFor(netip.Addr) []string                                { return nil }
func (f fakeNames) Knows(name string, ip netip.Addr) bool                       { return f[name] == ip }

// TestJudge: the kernel path's verdict on first bytes is the proxy's
// policy call, fed by conn's sniffer a segment at a time.
func TestJudge(t *testing.T) {
	p, err := policy.Parse([]byte(`{"mode":"allowlist","allowed_domains":["allowed.test"],"allowed_tcp":["allowed.test:2222"]}`))
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("198.51.100.1")
	names := fakeNames{"allowed.test": ip}
	dst443 := netip.AddrPortFrom(ip, 443)
	sniff := func(b []byte, step int) (conn.Sniffed, error) {
		var z conn.Sniffer
		for n := step; ; n += step {
			n = min(n, len(b))
			s, done, err := z.Add(b[:n], min(step, n))
			if done || n == len(b) {
				return s, err
			}
		}
	}
	for _, tc := range []struct {
		name   string
		bytes  []byte
		step   int
		dst    netip.AddrPort
		allow  bool
		reason string
	}{
		{"allowed SNI", clientHello(t, "allowed.test"), 1 << 20, dst443, true, policy.ReasonAllowedDomain},
		{"allowed SNI, one byte at a time", clientHello(t, "allowed.test"), 1, dst443, true, policy.ReasonAllowedDomain},
		{"denied SNI on the shared address", clientHello(t, "evil.test"), 1 << 20, dst443, false, policy.ReasonNotAllowed},
		{"allowed SNI, another address", clientHello(t, "allowed.test"), 1 << 20, netip.MustParseAddrPort("198.51.100.3:443"), false, policy.ReasonSNIIPMismatch},
		{"cleartext HTTP", []byte("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"), 1 << 20, netip.AddrPortFrom(ip, 2222), false, ReasonHTTPNeedsProxy},
		{"opaque on an allowed_tcp port", []byte("SSH-2.0-OpenSSH_9.2\r\n"), 1 << 20, netip.AddrPortFrom(ip, 2222), false, policy.ReasonNoNameForIP},
		{"garbage TLS", []byte{22, 3, 1, 0, 0}, 1 << 20, dst443, false, ReasonMalformedTLS},
	} {
		s, err := sniff(tc.bytes, tc.step)
		j := judge(context.Background(), p, s, err, tc.dst, cacheOnly{names})
		if j.verdict.Allow != tc.allow || j.verdict.Reason != tc.reason {
			t.Errorf("%s: %+v", tc.name, j.verdict)
		}
	}
}
