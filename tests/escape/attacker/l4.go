package main

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockaddr for ip:port.
func sockaddr(ip string, port int) (int, unix.Sockaddr) {
	a := netip.MustParseAddr(ip)
	if a.Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: port, Addr: a.As4()}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Port: port, Addr: a.As16()}
}

// datagram sends payload from a socket of (family-derived, typ, proto) to
// ip:port, optionally bound to a device, and waits briefly for any answer.
func datagram(r *Result, typ, proto int, ip string, port int, device string, payload []byte) {
	fam, sa := sockaddr(ip, port)
	fd, err := unix.Socket(fam, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		r.note("socket: %v", err)
		return
	}
	defer unix.Close(fd)
	if device != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, device); err != nil {
			r.note("SO_BINDTODEVICE %s: %v", device, err)
			return
		}
		r.note("bound to %s", device)
	}
	sent := 0
	for range 3 {
		if err := unix.Sendto(fd, payload, 0, sa); err != nil {
			r.note("sendto: %v", err)
			break
		}
		sent++
		time.Sleep(50 * time.Millisecond)
	}
	if sent > 0 {
		r.note("%d datagrams accepted by the local stack", sent)
	}
	tv := unix.NsecToTimeval(int64(700 * time.Millisecond))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 2048)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if !errors.Is(err, unix.EAGAIN) {
				r.note("recv: %v", err)
			}
			return
		}
		if proto == unix.IPPROTO_ICMP && n > 0 && buf[0] == 0 || proto == unix.IPPROTO_ICMPV6 && n > 0 && buf[0] == 129 {
			r.escape("echo reply from %s", ip)
			return
		}
		if proto != unix.IPPROTO_ICMP && proto != unix.IPPROTO_ICMPV6 && n > 0 {
			r.escape("reply from the world: %q", clip(buf[:n]))
			return
		}
	}
}

func udp(ip string, port int, device string) vectorFunc {
	return func(r *Result) {
		datagram(r, unix.SOCK_DGRAM, unix.IPPROTO_UDP, ip, port, device, []byte("esc-"+marker(r.Vector)))
	}
}

// quic sends a QUIC-looking long-header Initial to port 443.
func quic(ip string) vectorFunc {
	return func(r *Result) {
		p := append([]byte{0xc3, 0, 0, 0, 1, 8}, random(8)...)
		p = append(p, []byte("esc-"+marker(r.Vector))...)
		p = append(p, make([]byte, 1200-len(p))...)
		datagram(r, unix.SOCK_DGRAM, unix.IPPROTO_UDP, ip, 443, "", p)
	}
}

func udplite(ip string, port int) vectorFunc {
	return func(r *Result) {
		datagram(r, unix.SOCK_DGRAM, unix.IPPROTO_UDPLITE, ip, port, "", []byte("esc-"+marker(r.Vector)))
	}
}

func sctp(ip string, port int) vectorFunc {
	return func(r *Result) {
		fam, sa := sockaddr(ip, port)
		fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
		if err != nil {
			r.note("socket: %v", err)
			return
		}
		defer unix.Close(fd)
		tv := unix.NsecToTimeval(int64(2 * time.Second))
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
		if err := unix.Connect(fd, sa); err != nil {
			r.note("connect: %v", err)
			return
		}
		r.escape("SCTP association established")
	}
}

// ping sends ICMP echo requests from an unprivileged ICMP socket (the test
// sets net.ipv4.ping_group_range so the socket itself is allowed).
func ping(ip string) vectorFunc {
	return func(r *Result) {
		proto, typ := unix.IPPROTO_ICMP, byte(8)
		if netip.MustParseAddr(ip).Is6() {
			proto, typ = unix.IPPROTO_ICMPV6, 128
		}
		msg := append([]byte{typ, 0, 0, 0, 0, 0, 0, 1}, []byte("esc-"+marker(r.Vector))...)
		datagram(r, unix.SOCK_DGRAM, proto, ip, 0, "", msg)
	}
}

// rawSocket: raw IP and packet sockets need CAP_NET_RAW.
func rawSocket(r *Result) {
	for _, s := range []struct {
		name           string
		fam, typ, prot int
	}{
		{"AF_INET SOCK_RAW IPPROTO_RAW", unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW},
		{"AF_INET SOCK_RAW IPPROTO_ICMP", unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP},
		{"AF_INET6 SOCK_RAW IPPROTO_RAW", unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_RAW},
		{"AF_PACKET SOCK_RAW", unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL))},
		{"AF_PACKET SOCK_DGRAM", unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP))},
	} {
		fd, err := unix.Socket(s.fam, s.typ|unix.SOCK_CLOEXEC, s.prot)
		if err == nil {
			unix.Close(fd)
			r.escape("%s: socket created", s.name)
			continue
		}
		r.note("%s: %v", s.name, err)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// mptcp: a multipath TCP socket still starts with a TCP SYN, which the
// redirect catches; the proxy answers as plain TCP.
func mptcp(ip string, port int) vectorFunc {
	return func(r *Result) {
		fam, sa := sockaddr(ip, port)
		fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_MPTCP)
		if err != nil {
			r.note("socket: %v", err)
			return
		}
		if err := unix.Connect(fd, sa); err != nil {
			unix.Close(fd)
			r.note("connect: %v", err)
			return
		}
		f := os.NewFile(uintptr(fd), "mptcp")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			r.note("fileconn: %v", err)
			return
		}
		defer c.Close()
		la := c.LocalAddr().(*net.TCPAddr)
		r.Flows = append(r.Flows, Flow{DstIP: ip, DstPort: port, SrcPort: la.Port})
		_, _ = c.Write([]byte("esc-" + marker(r.Vector)))
		resp, err := readAll(c)
		judge(r, resp, err)
	}
}

// setsockoptBytes is setsockopt with a raw option value.
func setsockoptBytes(fd, level, opt int, b []byte) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0)
	if e != 0 {
		return e
	}
	return nil
}
