package stages

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestDialTCPConnects(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "tcp6" {
				addr = "[::1]:0"
			}
			ln, err := net.Listen(network, addr)
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			defer ln.Close()
			dst := ln.Addr().(*net.TCPAddr).AddrPort()
			// An IPv4-mapped form of the address must reach the same place.
			dsts := []netip.AddrPort{dst}
			if dst.Addr().Is4() {
				dsts = append(dsts, netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port()))
			}
			for _, d := range dsts {
				c, err := DialTCP(context.Background(), d, 0)
				if err != nil {
					t.Fatalf("dial %s: %v", d, err)
				}
				s, err := ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Write([]byte("x")); err != nil {
					t.Fatalf("write after dial %s: %v", d, err)
				}
				b := make([]byte, 1)
				if _, err := s.Read(b); err != nil || b[0] != 'x' {
					t.Fatalf("read: %q %v", b, err)
				}
				if got := c.RemoteAddr().(*net.TCPAddr).AddrPort(); got.Addr().Unmap() != dst.Addr() || got.Port() != dst.Port() {
					t.Errorf("remote address %s, want %s", got, dst)
				}
				c.Close()
				s.Close()
			}
		})
	}
}

func TestDialTCPRefused(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dst := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	if c, err := DialTCP(context.Background(), dst, 0); err == nil {
		c.Close()
		t.Fatalf("dial to a closed port succeeded")
	}
}

// A destination that never answers (or has no route) fails within the
// context's deadline instead of hanging.
func TestDialTCPDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := DialTCP(ctx, netip.MustParseAddrPort("192.0.2.1:9"), 0)
	if err == nil {
		c.Close()
		t.Fatal("dial to TEST-NET-1 succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("dial gave up after %v", d)
	}
}

// The mark is on the socket before its SYN leaves: the nft ruleset
// exempts marked sockets from interception.
func TestDialTCPMark(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SO_MARK needs CAP_NET_ADMIN: run as root (CI does)")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := DialTCP(context.Background(), ln.Addr().(*net.TCPAddr).AddrPort(), 0x2a)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var mark int
	var gerr error
	if err := rc.Control(func(fd uintptr) { mark, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK) }); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if mark != 0x2a {
		t.Fatalf("SO_MARK %#x, want 0x2a", mark)
	}
}
