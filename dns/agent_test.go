package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/obs"
)

// frozen is a clock that never moves: the rate limiter refills nothing, so
// exactly the burst is answered.
func frozen() func() time.Time {
	t := time.Unix(1_000_000, 0)
	return func() time.Time { return t }
}

// The rate limit is per agent, not per source address (issue #11 item 7):
// the agent may send from any of the 2^24 loopback addresses, and 1,000 of
// them must not each get a bucket of their own.
func TestRateLimitPerAgentNotPerSource(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	const burst = 100
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr}, func(c *Config) {
		c.RateLimit, c.RateBurst, c.Now = 50, burst, frozen()
	})
	server := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(p.addr))
	answered := 0
	buf := make([]byte, 512)
	for i := range 1000 {
		src := &net.UDPAddr{IP: net.IPv4(127, 1, byte(i>>8), byte(i))}
		c, err := net.DialUDP("udp4", src, server)
		if err != nil {
			t.Fatalf("source %v: %v", src, err)
		}
		for id := range 3 {
			q := query("allowed.test", dns.TypeA)
			q.Id = uint16(id + 1)
			b, _ := q.Pack()
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("source %v: no reply: %v", src, err)
			}
			r := new(dns.Msg)
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			if r.Rcode == dns.RcodeSuccess {
				answered++
			}
		}
		c.Close()
	}
	if answered > burst {
		t.Errorf("%d of 3000 queries from 1000 loopback sources answered, want at most the agent's burst of %d", answered, burst)
	}
	limited := auditLines(p.logs, obs.MsgDNSRateLimited)
	if len(limited) != 1 {
		t.Errorf("%d dns_rate_limited lines, want 1 for the window", len(limited))
	}
	if got, want := p.limited.Load(), int64(3000-answered-1); got != want {
		t.Errorf("RateLimited hook counted %d refusals, want %d", got, want)
	}
}

// The lookups the supervisor makes for the agent (SNI verification, the
// explicit proxy's CONNECT targets) draw from the agent's bucket (issue
// #11 item 7): 1,500 fresh names under a wildcard must not become 3,000
// upstream queries.
func TestResolveDrawsFromAgentBucket(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	const burst = 100
	p := startProxy(t, allowlist("*.wild.test"), []string{up.addr}, func(c *Config) {
		c.RateLimit, c.RateBurst, c.Now = 50, burst, frozen()
	})
	failed := 0
	for i := range 1500 {
		if _, err := p.Resolve(context.Background(), fmt.Sprintf("n%d.wild.test", i)); err != nil {
			failed++
		}
	}
	if got := up.queries.Load(); got > burst {
		t.Errorf("1500 Resolve calls made %d upstream queries, want at most the burst of %d", got, burst)
	}
	if failed < 1500-burst/2 {
		t.Errorf("%d of 1500 lookups refused, want at least %d", failed, 1500-burst/2)
	}
	limited := auditLines(p.logs, obs.MsgDNSRateLimited)
	if len(limited) != 1 || field(limited[0], "src_ip") != "" {
		t.Errorf("dns_rate_limited lines %v, want one without a client address", limited)
	}
	// Each lookup costs exactly its upstream queries: with a burst of
	// 100, 50 names resolved (A and AAAA each).
	if got := 1500 - failed; got != burst/2 {
		t.Errorf("%d lookups succeeded, want %d (two tokens each)", got, burst/2)
	}
	// The agent's own queries now find the bucket empty too.
	if r := ask(t, "udp", p.addr, query("x.wild.test", dns.TypeA)); r.Rcode != dns.RcodeRefused {
		t.Errorf("agent query after the lookups: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
}

// The DNS proxy listens on loopback only (issue #11 item 10): the nft
// redirect in OUTPUT rewrites to 127.0.0.1 / ::1, and a socket on every
// address answered hosts outside the pod.
func TestListensOnLoopbackOnly(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr})
	addrs := p.Addrs()
	if len(addrs) == 0 {
		t.Fatal("no listen addresses")
	}
	for _, a := range addrs {
		ip := a.(*net.UDPAddr).AddrPort().Addr()
		if !ip.IsLoopback() {
			t.Errorf("listening on %v, want loopback only", a)
		}
	}
	// Both families answer where the host has IPv6.
	v6 := net.JoinHostPort("::1", strconv.Itoa(int(p.Port())))
	if len(addrs) == 2 {
		if r := ask(t, "udp", v6, query("allowed.test", dns.TypeA)); r.Rcode != dns.RcodeSuccess {
			t.Errorf("query over ::1: %s", dns.RcodeToString[r.Rcode])
		}
	}
}

// dns_* events carry the client's address and port (issue #11 item 10),
// so a line can be told from one an outsider caused.
func TestEventsCarryClientAddress(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	p := startProxy(t, allowlist("allowed.test"), []string{up.addr})
	c, err := net.Dial("udp4", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn := &dns.Conn{Conn: c}
	for _, name := range []string{"allowed.test", "denied.test"} {
		if err := conn.WriteMsg(query(name, dns.TypeA)); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ReadMsg(); err != nil {
			t.Fatal(err)
		}
	}
	local := c.LocalAddr().(*net.UDPAddr)
	for _, msg := range []string{obs.MsgDNSAllowed, obs.MsgDNSDenied} {
		lines := auditLines(p.logs, msg)
		if len(lines) != 1 {
			t.Fatalf("%d %s lines", len(lines), msg)
		}
		if ip, port := field(lines[0], "src_ip"), field(lines[0], "src_port"); ip != "127.0.0.1" || port != uint16(local.Port) {
			t.Errorf("%s: src_ip %v src_port %v (%T), want 127.0.0.1 %d", msg, ip, port, port, local.Port)
		}
	}
}

// A query whose source is not an address of the host gets no answer and
// no audit line (issue #11 item 1): the agent can send from any IPv6
// address with IPV6_FREEBIND, and the answer would go to that address — a
// reflection channel carrying the agent's qname. The test runs in a
// network namespace of its own, with only loopback, so nothing can leave.
func TestNonLocalSourceNotAnswered(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	var nonLocal atomic.Int64
	up := startUpstream(t, worldAnswers(t))
	var (
		tp   *testProxy
		send func(src, dst netip.AddrPort) error
	)
	inNetns(t, func() {
		tp = startProxy(t, allowlist("allowed.test"), []string{up.addr}, func(c *Config) {
			c.LocalAddrs = func() ([]netip.Addr, error) { return nil, nil }
			c.Hooks.NonLocal = func() { nonLocal.Add(1) }
		})
		send = freebindSender(t)
	})
	// IPv4 routing refuses a non-local source towards 127.0.0.1 by
	// itself; IPv6 delivers it to ::1.
	src := netip.MustParseAddrPort("[2001:db8::3]:5353")
	if err := send(src, netip.AddrPortFrom(netip.IPv6Loopback(), tp.Port())); err != nil {
		t.Fatalf("send from %s: %v", src, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for nonLocal.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(auditLines(tp.logs, obs.MsgDNSDenied)); n != 0 {
		t.Errorf("%d dns_denied lines for a query from a spoofed source, want none (never handled)", n)
	}
	if got := nonLocal.Load(); got != 1 {
		t.Errorf("NonLocal hook counted %d, want 1", got)
	}
}

// inNetns runs fn on an OS thread moved into a new network namespace with
// loopback up, so the sockets fn creates live there. The thread is never
// given back to the runtime (it exits with the goroutine).
func inNetns(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Errorf("socket: %v", err)
			return
		}
		defer unix.Close(fd)
		ifr, err := unix.NewIfreq("lo")
		if err != nil {
			t.Errorf("ifreq: %v", err)
			return
		}
		ifr.SetUint16(unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			t.Errorf("lo up: %v", err)
			return
		}
		fn()
	}()
	<-done
	if t.Failed() {
		t.FailNow()
	}
}

// freebindSender returns a function that sends a denied query from a
// source address the host does not have (IP_FREEBIND / IPV6_FREEBIND),
// with sockets of the calling thread's network namespace. The socket is
// created now, on the namespace's thread.
func freebindSender(t *testing.T) func(src, dst netip.AddrPort) error {
	fds := map[bool]int{}
	for _, v6 := range []bool{false, true} {
		family, level, opt := unix.AF_INET, unix.IPPROTO_IP, unix.IP_FREEBIND
		if v6 {
			family, level, opt = unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_FREEBIND
		}
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("socket: %v", err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
			t.Fatalf("freebind: %v", err)
		}
		fds[v6] = fd
	}
	q := query("denied.test", dns.TypeA)
	b, _ := q.Pack()
	return func(src, dst netip.AddrPort) error {
		v6 := src.Addr().Is6()
		fd := fds[v6]
		var sa, da unix.Sockaddr
		if v6 {
			sa = &unix.SockaddrInet6{Addr: src.Addr().As16(), Port: int(src.Port())}
			da = &unix.SockaddrInet6{Addr: dst.Addr().As16(), Port: int(dst.Port())}
		} else {
			sa = &unix.SockaddrInet4{Addr: src.Addr().As4(), Port: int(src.Port())}
			da = &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}
		}
		if err := unix.Bind(fd, sa); err != nil {
			return fmt.Errorf("bind %v: %w", src, err)
		}
		return unix.Sendto(fd, b, 0, da)
	}
}
