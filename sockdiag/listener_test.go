package sockdiag

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// listenAs opens a TCP listener on addr whose owner is uid: the kernel
// takes a socket's owner from the creating thread's fsuid.
func listenAs(t *testing.T, uid int, network, addr string) *net.TCPListener {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// setfsuid returns the previous fsuid and reports no error.
	_, _, _ = unix.RawSyscall(unix.SYS_SETFSUID, uintptr(uid), 0, 0)
	ln, err := net.Listen(network, addr)
	_, _, _ = unix.RawSyscall(unix.SYS_SETFSUID, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

func TestListenerOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: sockets owned by another uid are made with setfsuid")
	}
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	agent := listenAs(t, 1000, "tcp4", "127.0.0.1:0")
	root := listenAs(t, 0, "tcp6", "[::1]:0")
	dual := listenAs(t, 1234, "tcp", "[::]:0") // dual stack: takes IPv4 too
	dualPort := uint16(dual.Addr().(*net.TCPAddr).Port)
	for _, tc := range []struct {
		dst  netip.AddrPort
		want uint32
	}{
		{agent.Addr().(*net.TCPAddr).AddrPort(), 1000},
		{root.Addr().(*net.TCPAddr).AddrPort(), 0},
		{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), dualPort), 1234},
		{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.9"), dualPort), 1234},
		{netip.AddrPortFrom(netip.MustParseAddr("::1"), dualPort), 1234},
	} {
		s, err := c.Listener(tc.dst)
		if err != nil {
			t.Errorf("%v: %v", tc.dst, err)
			continue
		}
		if s.UID != tc.want || s.State != StateListen || s.Inode == 0 {
			t.Errorf("%v: %+v, want uid %d, a listener with an inode", tc.dst, s, tc.want)
		}
	}
	// The agent's listener is on 127.0.0.1 only.
	other := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(agent.Addr().(*net.TCPAddr).Port))
	if _, err := c.Listener(other); !errors.Is(err, ErrNotFound) {
		t.Errorf("%v: %v, want ErrNotFound", other, err)
	}
}
