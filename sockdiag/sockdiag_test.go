package sockdiag

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func newClient(t *testing.T) *Client {
	t.Helper()
	c, err := New()
	if err != nil {
		t.Skipf("sock_diag unavailable: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// inodeOf is the inode /proc/self/fd shows for a socket's descriptor.
func inodeOf(t *testing.T, sc syscall.Conn) uint32 {
	t.Helper()
	raw, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return uint32(st.Ino)
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

func TestFindTCPConnection(t *testing.T) {
	c := newClient(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			host := "127.0.0.1:0"
			if network == "tcp6" {
				host = "[::1]:0"
			}
			ln, err := net.Listen(network, host)
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			defer ln.Close()
			cl, err := net.Dial(network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			s, err := c.Find(TCP, addrPort(cl.LocalAddr()), addrPort(cl.RemoteAddr()))
			if err != nil {
				t.Fatal(err)
			}
			if want := inodeOf(t, cl.(*net.TCPConn)); s.Inode != want {
				t.Errorf("inode %d, want %d (the client's socket)", s.Inode, want)
			}
			if s.UID != uint32(os.Geteuid()) || s.State != StateEstablished {
				t.Errorf("uid %d state %d, want %d and established", s.UID, s.State, os.Geteuid())
			}
			if s.Src != addrPort(cl.LocalAddr()) || s.Dst != addrPort(cl.RemoteAddr()) {
				t.Errorf("addresses %s→%s, want %s→%s", s.Src, s.Dst, cl.LocalAddr(), cl.RemoteAddr())
			}
			// Without a destination the port's sockets are listed instead.
			s2, err := c.Find(TCP, addrPort(cl.LocalAddr()), netip.AddrPort{})
			if err != nil || s2.Inode != s.Inode {
				t.Errorf("find without dst: %+v %v, want inode %d", s2, err, s.Inode)
			}
		})
	}
}

// A dual-stack IPv6 socket talking IPv4 is found by its IPv4 addresses.
func TestFindDualStackSocket(t *testing.T) {
	c := newClient(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no IPv6: %v", err)
	}
	defer unix.Close(fd)
	port := ln.Addr().(*net.TCPAddr).Port
	sa := &unix.SockaddrInet6{Port: port, Addr: netip.MustParseAddr("::ffff:127.0.0.1").As16()}
	if err := unix.Connect(fd, sa); err != nil {
		t.Fatal(err)
	}
	local, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	l6 := local.(*unix.SockaddrInet6)
	src := netip.AddrPortFrom(netip.AddrFrom16(l6.Addr).Unmap(), uint16(l6.Port))
	s, err := c.Find(TCP, src, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)))
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	if s.Inode != uint32(st.Ino) || s.Family != unix.AF_INET6 || !s.Src.Addr().Is4() {
		t.Errorf("got %+v, want inode %d, family AF_INET6, IPv4 source", s, st.Ino)
	}
}

func TestFindUDPSocket(t *testing.T) {
	c := newClient(t)
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// Unconnected, bound to the wildcard: as a resolver library's socket.
	unconnected, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer unconnected.Close()
	if _, err := unconnected.WriteToUDPAddrPort([]byte("q"), addrPort(srv.LocalAddr())); err != nil {
		t.Fatal(err)
	}
	_, from, err := srv.ReadFromUDPAddrPort(make([]byte, 10))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Find(UDP, from, netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	if want := inodeOf(t, unconnected); s.Inode != want {
		t.Errorf("unconnected: inode %d, want %d", s.Inode, want)
	}
	// Connected (glibc's resolver connects its UDP socket).
	connected, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer connected.Close()
	s, err = c.Find(UDP, addrPort(connected.LocalAddr()), addrPort(srv.LocalAddr()))
	if err != nil {
		t.Fatal(err)
	}
	if want := inodeOf(t, connected); s.Inode != want {
		t.Errorf("connected: inode %d, want %d", s.Inode, want)
	}
	// Connected elsewhere: not the sender of a packet to srv.
	if _, err := c.Find(UDP, addrPort(connected.LocalAddr()), netip.MustParseAddrPort("127.0.0.2:53")); !errors.Is(err, ErrNotFound) {
		t.Errorf("connected to another peer: %v, want ErrNotFound", err)
	}
}

func TestFindNotFound(t *testing.T) {
	c := newClient(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dst := addrPort(ln.Addr())
	ln.Close()
	if _, err := c.Find(TCP, netip.MustParseAddrPort("127.0.0.1:1"), dst); !errors.Is(err, ErrNotFound) {
		t.Errorf("tcp: %v, want ErrNotFound", err)
	}
	if _, err := c.Find(UDP, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), dst.Port()), netip.AddrPort{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("udp: %v, want ErrNotFound", err)
	}
	if _, err := c.Find(TCP, netip.AddrPort{}, dst); err == nil {
		t.Error("no source: no error")
	}
}

func TestListListeners(t *testing.T) {
	c := newClient(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := addrPort(ln.Addr()).Port()
	cl, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	socks, err := c.List(TCP, Query{States: StateMask(StateListen), SrcPort: port})
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 1 || socks[0].Inode != inodeOf(t, ln.(*net.TCPListener)) || socks[0].State != StateListen {
		t.Fatalf("listeners on %d: %+v, want just ours", port, socks)
	}
	// Every state on the port: the listener and the accepted side.
	socks, err = c.List(TCP, Query{SrcPort: port})
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) < 2 {
		t.Errorf("all states on %d: %+v, want the listener and the accepted socket", port, socks)
	}
	for _, s := range socks {
		if s.Src.Port() != port {
			t.Errorf("filter let through %+v", s)
		}
	}
}

func TestBestFit(t *testing.T) {
	src := netip.MustParseAddrPort("198.51.100.2:40000")
	dst := netip.MustParseAddrPort("198.51.100.1:53")
	wild := Socket{Src: netip.MustParseAddrPort("0.0.0.0:40000"), State: StateClose, Inode: 1}
	exact := Socket{Src: src, State: StateClose, Inode: 2}
	conn := Socket{Src: src, Dst: dst, State: StateEstablished, Inode: 3}
	other := Socket{Src: src, Dst: netip.MustParseAddrPort("198.51.100.9:53"), State: StateEstablished, Inode: 4}
	elsewhere := Socket{Src: netip.MustParseAddrPort("198.51.100.3:40000"), Inode: 5}
	for _, tc := range []struct {
		name  string
		socks []Socket
		dst   netip.AddrPort
		want  uint32
		err   error
	}{
		{"wildcard only", []Socket{wild}, dst, 1, nil},
		{"exact beats wildcard", []Socket{wild, exact}, dst, 2, nil},
		{"connected to dst beats unconnected", []Socket{exact, conn}, dst, 3, nil},
		{"connected elsewhere never fits", []Socket{other}, dst, 0, ErrNotFound},
		{"another address never fits", []Socket{elsewhere}, dst, 0, ErrNotFound},
		{"two equal fits are ambiguous", []Socket{conn, other}, netip.AddrPort{}, 0, ErrAmbiguous},
		{"none", nil, dst, 0, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := bestFit(tc.socks, src, tc.dst)
			if !errors.Is(err, tc.err) || (err == nil && s.Inode != tc.want) {
				t.Errorf("got inode %d, %v; want %d, %v", s.Inode, err, tc.want, tc.err)
			}
		})
	}
}
