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

// fullListener returns a listening socket whose accept queue is full, so
// the kernel drops further SYNs: a connect to it stays in progress, as to
// a distant or silent host. accept frees the queue.
func fullListener(t *testing.T) (dst netip.AddrPort, accept func()) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
	filler, err := net.Dial("tcp4", dst.String()) // takes the one queue slot
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })
	return dst, func() {
		if nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC); err == nil {
			t.Cleanup(func() { unix.Close(nfd) })
		}
	}
}

// A handshake still in progress after the first connect call is left to
// the net package, which waits for it within the context's deadline.
func TestDialTCPInProgressTimesOut(t *testing.T) {
	dst, _ := fullListener(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := DialTCP(ctx, dst, 0)
	if err == nil {
		c.Close()
		t.Fatal("dial to a listener with a full queue succeeded at once")
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Fatalf("dial ended after %v (%v), want about the 300 ms deadline", d, err)
	}
}

func TestDialTCPInProgressCompletes(t *testing.T) {
	dst, accept := fullListener(t)
	// Free the queue while the dial waits: the SYN's retransmission (after
	// about a second) completes the handshake.
	time.AfterFunc(200*time.Millisecond, accept)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := DialTCP(ctx, dst, 0)
	if err != nil {
		t.Fatalf("dial after the queue freed: %v", err)
	}
	c.Close()
}
