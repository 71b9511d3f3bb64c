package stages

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/conn"
	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
)

// Stages are plain functions of one connection: these tests call them
// directly, without channels or a running engine.

// stageEngine is an engine that is built but not serving; orig is what
// its OrigDst answers.
func stageEngine(t *testing.T, dryRun bool, orig func() (netip.AddrPort, error)) *Engine {
	t.Helper()
	p, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	var holder atomic.Pointer[policy.Policy]
	holder.Store(p)
	e, err := New(Config{
		Policy: &holder, Resolver: fakeResolver{}, Audit: obs.NewAuditor(nil, nil, nil),
		OrigDst:   func(*net.TCPConn) (netip.AddrPort, error) { return orig() },
		SelfPorts: []uint16{15001, 15002, 15000}, DryRun: dryRun,
		ClassifyTimeout: 200 * time.Millisecond,
		Lookup: func(_ context.Context, name string) ([]netip.Addr, error) {
			if name == "allowed.test" {
				return []netip.Addr{strangerIP, worldIP}, nil
			}
			return nil, errors.New("nxdomain")
		},
		DialUpstream: func(context.Context, netip.AddrPort) (*net.TCPConn, error) { return nil, errors.New("no dial here") },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.proxyPort = 15001
	return e
}

// stageConn returns a connection whose client has written sent (and
// closed its side when closeAfter).
func stageConn(t *testing.T, sent []byte, closeAfter bool) *conn.Conn {
	t.Helper()
	client, server := tcpPair(t)
	t.Cleanup(func() { client.Close(); server.Close() })
	client.Write(sent)
	if closeAfter {
		client.CloseWrite()
	}
	return &conn.Conn{Client: server, Accepted: time.Now()}
}

func TestOrigDstStage(t *testing.T) {
	cases := []struct {
		name   string
		dst    netip.AddrPort
		err    error
		want   route
		reason string
	}{
		{"redirected", netip.MustParseAddrPort("198.51.100.1:443"), nil, routeClassify, ""},
		{"v4-mapped is unmapped", netip.MustParseAddrPort("[::ffff:198.51.100.1]:443"), nil, routeClassify, ""},
		{"the proxy's own address", netip.MustParseAddrPort("127.0.0.1:15001"), nil, routeHandshake, ""},
		{"another own port", netip.MustParseAddrPort("127.0.0.1:15002"), nil, routeDeny, ReasonLoop},
		{"no original destination", netip.AddrPort{}, errors.New("ENOENT"), routeDeny, ReasonOrigDstFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := stageEngine(t, true, func() (netip.AddrPort, error) { return tc.dst, tc.err })
			c := stageConn(t, nil, false)
			if got := e.origDst(c); got != tc.want || c.Reason != tc.reason {
				t.Fatalf("route %d reason %q, want %d %q", got, c.Reason, tc.want, tc.reason)
			}
			if tc.want == routeClassify && c.Dst != netip.MustParseAddrPort("198.51.100.1:443") {
				t.Errorf("dst %v", c.Dst)
			}
			if tc.reason != "" && (c.Allowed || c.WouldDeny) {
				t.Errorf("a hard denial was softened in a dry run: %+v", c)
			}
		})
	}
}

func TestClassifyStage(t *testing.T) {
	hello := captureHello(t, "allowed.test")
	cases := []struct {
		name      string
		dryRun    bool
		sent      []byte
		close     bool
		want      route
		proto     conn.Proto
		name_     string
		reason    string
		wouldDeny bool
	}{
		{"TLS", false, hello, false, routePolicy, conn.ProtoTLS, "allowed.test", "", false},
		{"HTTP", false, []byte("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"), false, routePolicy, conn.ProtoHTTP, "allowed.test", "", false},
		{"silent", false, nil, false, routePolicy, conn.ProtoOpaque, "", "", false},
		{"partial hello, closed", false, hello[:20], true, routeDeny, conn.ProtoTLS, "", ReasonClientClosed, false},
		{"partial hello, closed, dry run", true, hello[:20], true, routeDeny, conn.ProtoTLS, "", ReasonClientClosed, false},
		{"partial hello, silence", false, hello[:20], false, routeDeny, conn.ProtoTLS, "", ReasonClassifyTimeout, false},
		{"partial hello, silence, dry run", true, hello[:20], false, routePolicy, conn.ProtoTLS, "", ReasonClassifyTimeout, true},
		{"Host names another port", false, []byte("GET / HTTP/1.1\r\nHost: allowed.test:8080\r\n\r\n"), false, routeDeny, conn.ProtoHTTP, "allowed.test", ReasonHostPort, false},
		{"Host names another port, dry run", true, []byte("GET / HTTP/1.1\r\nHost: allowed.test:8080\r\n\r\n"), false, routePolicy, conn.ProtoHTTP, "allowed.test", ReasonHostPort, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := stageEngine(t, tc.dryRun, func() (netip.AddrPort, error) { return netip.MustParseAddrPort("198.51.100.9:443"), nil })
			c := stageConn(t, tc.sent, tc.close)
			if tc.proto == conn.ProtoHTTP {
				e.cfg.OrigDst = func(*net.TCPConn) (netip.AddrPort, error) { return netip.MustParseAddrPort("198.51.100.9:80"), nil }
			}
			got := e.classify(context.Background(), c)
			if got != tc.want || c.Proto != tc.proto || c.Name() != tc.name_ || c.Reason != tc.reason || c.WouldDeny != tc.wouldDeny {
				t.Fatalf("route %d proto %v name %q reason %q would_deny %v", got, c.Proto, c.Name(), c.Reason, c.WouldDeny)
			}
			if string(c.Peeked) != string(tc.sent) {
				t.Errorf("peeked %d bytes, want all %d sent", len(c.Peeked), len(tc.sent))
			}
		})
	}
}

func TestPolicyStage(t *testing.T) {
	cases := []struct {
		name      string
		dryRun    bool
		c         conn.Conn
		want      route
		reason    string
		dst       netip.AddrPort
		wouldDeny bool
	}{
		{"allowed SNI", false, conn.Conn{SNI: "allowed.test", Dst: netip.AddrPortFrom(worldIP, 443)}, routeDial, policy.ReasonAllowedDomain, netip.AddrPortFrom(worldIP, 443), false},
		{"denied SNI", false, conn.Conn{SNI: "evil.test", Dst: netip.AddrPortFrom(worldIP, 443)}, routeDeny, policy.ReasonNotAllowed, netip.AddrPortFrom(worldIP, 443), false},
		{"denied SNI, dry run", true, conn.Conn{SNI: "evil.test", Dst: netip.AddrPortFrom(worldIP, 443)}, routeDial, policy.ReasonNotAllowed, netip.AddrPortFrom(worldIP, 443), true},
		{"an earlier soft denial keeps its reason", true, conn.Conn{Dst: netip.AddrPortFrom(worldIP, 443), WouldDeny: true, Reason: ReasonClassifyTimeout}, routeDial, ReasonClassifyTimeout, netip.AddrPortFrom(worldIP, 443), true},
		{"explicit name resolved to the allowed address", false,
			conn.Conn{Front: conn.FrontHTTPProxy, Host: "allowed.test", Dst: netip.AddrPortFrom(netip.Addr{}, 443)},
			routeDial, policy.ReasonAllowedDomain, netip.AddrPortFrom(worldIP, 443), false},
		{"explicit denied name, never resolved", false,
			conn.Conn{Front: conn.FrontHTTPProxy, Host: "evil.test", Dst: netip.AddrPortFrom(netip.Addr{}, 443)},
			routeDeny, policy.ReasonNotAllowed, netip.AddrPortFrom(netip.Addr{}, 443), false},
		{"explicit name that does not resolve", false,
			conn.Conn{Front: conn.FrontHTTPProxy, Host: "x.wild.test", Dst: netip.AddrPortFrom(netip.Addr{}, 443)},
			routeDeny, ReasonDNSFailed, netip.AddrPortFrom(netip.Addr{}, 443), false},
		{"explicit request for an own port", true,
			conn.Conn{Front: conn.FrontSOCKS5, Dst: netip.MustParseAddrPort("127.0.0.1:15000")},
			routeDeny, ReasonLoop, netip.MustParseAddrPort("127.0.0.1:15000"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := stageEngine(t, tc.dryRun, nil)
			c := tc.c
			c.Client, _ = tcpPair(t)
			got := e.decide(context.Background(), &c)
			if got != tc.want || c.Reason != tc.reason || c.Dst != tc.dst || c.WouldDeny != tc.wouldDeny || c.Allowed != (got == routeDial) {
				t.Fatalf("route %d reason %q dst %v would_deny %v allowed %v", got, c.Reason, c.Dst, c.WouldDeny, c.Allowed)
			}
		})
	}
}

// captureHello returns the first flight of a real crypto/tls client.
func captureHello(t *testing.T, sni string) []byte {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		tls.Client(a, &tls.Config{ServerName: sni, InsecureSkipVerify: true}).Handshake()
		a.Close()
	}()
	buf := make([]byte, 64<<10)
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.ReadAtLeast(b, buf, 5)
	if err != nil {
		t.Fatal(err)
	}
	for n < 5+int(buf[3])<<8|int(buf[4]) {
		m, err := b.Read(buf[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += m
	}
	b.Close()
	return buf[:n]
}
