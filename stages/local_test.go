package stages

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/sockdiag"
)

// localHarness routes the original destination 127.0.0.1:port to an echo
// server and decides with owners: port → listener UID (absent: no
// listener).
func localHarness(t *testing.T, owners map[uint16]uint32, allowed ...uint16) *harness {
	t.Helper()
	echo := echoUntilEOF(t)
	routes := map[uint16]string{}
	for p := range owners {
		routes[p] = echo
	}
	for _, p := range allowed {
		routes[p] = echo
	}
	return startHarness(t, routes, func(c *Config) {
		c.Local = &LocalPolicy{AgentUID: 1000, AllowedPorts: allowed,
			Listener: func(dst netip.AddrPort) (sockdiag.Socket, error) {
				uid, ok := owners[dst.Port()]
				if !ok {
					return sockdiag.Socket{}, sockdiag.ErrNotFound
				}
				return sockdiag.Socket{UID: uid, State: sockdiag.StateListen}, nil
			}}
	})
}

// roundTrip sends a payload, half-closes and reads the answer.
func roundTrip(t *testing.T, addr string) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err // a reset may beat connect(2) back on loopback
	}
	defer c.Close()
	_, _ = c.Write([]byte("hello"))
	_ = c.(*net.TCPConn).CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestLocalListenerOfTheAgentIsSpliced(t *testing.T) {
	h := localHarness(t, map[uint16]uint32{3000: 1000})
	h.to(netip.MustParseAddr("127.0.0.1"), 3000)
	if got, err := roundTrip(t, h.addr); err != nil || got != "got 5" {
		t.Fatalf("reply %q, %v", got, err)
	}
	if ev := h.events(1)[0]; ev["msg"] != "egress_allowed" || ev["reason"] != ReasonLocalAgentListener || ev["dst_ip"] != "127.0.0.1" {
		t.Errorf("audit = %v", ev)
	}
}

func TestLocalListenerOfAnotherUserIsDenied(t *testing.T) {
	for _, tc := range []struct {
		name   string
		owners map[uint16]uint32
		dst    string
	}{
		{"root relay on loopback", map[uint16]uint32{5000: 0}, "127.0.0.1"},
		{"Docker's embedded DNS", map[uint16]uint32{5000: 0}, "127.0.0.11"},
		{"a sidecar on ::1", map[uint16]uint32{5000: 1337}, "::1"},
		{"nobody listening", map[uint16]uint32{}, "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := localHarness(t, tc.owners)
			h.to(netip.MustParseAddr(tc.dst), 5000)
			if got, err := roundTrip(t, h.addr); got != "" || !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("reply %q, %v; want a reset", got, err)
			}
			if ev := h.events(1)[0]; ev["msg"] != "egress_denied" || ev["reason"] != ReasonLocalPort {
				t.Errorf("audit = %v", ev)
			}
		})
	}
}

func TestAllowedLocalPortIsSplicedWhoeverListens(t *testing.T) {
	h := localHarness(t, map[uint16]uint32{5432: 0}, 5432)
	h.to(netip.MustParseAddr("127.0.0.1"), 5432)
	if got, err := roundTrip(t, h.addr); err != nil || got != "got 5" {
		t.Fatalf("reply %q, %v", got, err)
	}
	if ev := h.events(1)[0]; ev["msg"] != "egress_allowed" || ev["reason"] != ReasonAllowedLocalPort {
		t.Errorf("audit = %v", ev)
	}
}
