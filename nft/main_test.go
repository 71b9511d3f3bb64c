package nft

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"net/netip"

	"github.com/forge/forge-supervisor/tests/netenv"
	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite testdata/ruleset.golden from the installed ruleset")

// helperEnv selects a helper mode: the test binary re-executes itself under
// setpriv (another UID, fewer capabilities) to act as the agent, since a Go
// process cannot change the credentials of one thread only.
const helperEnv = "FORGE_NFT_TEST_HELPER"

// helperTimeout bounds every helper's network wait: longer than any answer
// on a veth pair, shorter than the test's patience.
const helperTimeout = 3 * time.Second

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		fmt.Println(runHelper(mode))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runHelper performs one action and returns a one-line outcome.
func runHelper(mode string) string {
	addr := os.Getenv("FORGE_NFT_TEST_ADDR")
	switch mode {
	case "probe":
		if err := Probe(Config{}); err != nil {
			return "probe: " + err.Error()
		}
		return "probe: ok"
	case "dial":
		mark, _ := strconv.ParseUint(os.Getenv("FORGE_NFT_TEST_MARK"), 0, 32)
		return helperDial(addr, uint32(mark))
	case "udp":
		return helperUDP(addr)
	case "listen":
		return helperListen(addr)
	case "udpfrom":
		return helperUDPFrom(os.Getenv("FORGE_NFT_TEST_SRC"), addr, os.Getenv("FORGE_NFT_TEST_DEV"))
	default:
		return "unknown helper mode " + mode
	}
}

// helperDial connects over TCP, optionally from a marked socket, and says
// whether the connection was established.
func helperDial(addr string, mark uint32) string {
	d := net.Dialer{Timeout: helperTimeout}
	if mark != 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
			}); err != nil {
				return err
			}
			return serr
		}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	return "dial: connected"
}

// helperUDP sends one datagram on a connected UDP socket and waits for the
// first sign of life, reporting the errno and how long it took.
func helperUDP(addr string) string {
	start := time.Now()
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "udp: dial: " + err.Error()
	}
	defer c.Close()
	outcome := func(err error) string {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return fmt.Sprintf("udp: errno=%s after=%s", unix.ErrnoName(errno), time.Since(start).Round(time.Millisecond))
		}
		return fmt.Sprintf("udp: %v after=%s", err, time.Since(start).Round(time.Millisecond))
	}
	if _, err := c.Write([]byte("quic?")); err != nil {
		return outcome(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(helperTimeout))
	if _, err := c.Read(make([]byte, 64)); err != nil {
		return outcome(err)
	}
	return "udp: got a reply"
}

// helperListen listens on addr for helperTimeout, accepting and closing
// whatever arrives, and reports how many connections it accepted.
func helperListen(addr string) string {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "listen: " + err.Error()
	}
	defer ln.Close()
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(helperTimeout))
	n := 0
	for {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Sprintf("listen: accepted %d", n)
		}
		n++
		c.Close()
	}
}

// helperUDPFrom sends one DNS query from src (bound with IP_FREEBIND /
// IPV6_FREEBIND, which need no privilege), or from a socket bound to
// device dev, to addr and reports whether send(2) accepted it.
func helperUDPFrom(src, addr, dev string) string {
	dst := netip.MustParseAddrPort(addr)
	fam := unix.AF_INET
	if dst.Addr().Is6() {
		fam = unix.AF_INET6
	}
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "udpfrom: socket: " + err.Error()
	}
	defer unix.Close(fd)
	if dev != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev); err != nil {
			return "udpfrom: SO_BINDTODEVICE: " + err.Error()
		}
	}
	if src != "" {
		s := netip.MustParseAddr(src)
		var sa unix.Sockaddr
		level, opt := unix.SOL_IP, unix.IP_FREEBIND
		if s.Is6() {
			sa, level, opt = &unix.SockaddrInet6{Addr: s.As16()}, unix.SOL_IPV6, unix.IPV6_FREEBIND
		} else {
			sa = &unix.SockaddrInet4{Addr: s.As4()}
		}
		if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
			return "udpfrom: freebind: " + err.Error()
		}
		if err := unix.Bind(fd, sa); err != nil {
			return "udpfrom: bind: " + err.Error()
		}
	}
	var to unix.Sockaddr
	if dst.Addr().Is6() {
		to = &unix.SockaddrInet6{Addr: dst.Addr().As16(), Port: int(dst.Port())}
	} else {
		to = &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}
	}
	m := new(dns.Msg)
	m.SetQuestion("spoofed.test.", dns.TypeA)
	wire, _ := m.Pack()
	if err := unix.Sendto(fd, wire, 0, to); err != nil {
		return "udpfrom: sendto: " + unix.ErrnoName(err.(syscall.Errno))
	}
	return "udpfrom: sent"
}

// helperBinary copies the test binary where an unprivileged user may run it
// (go test builds into a directory only root can enter).
func helperBinary(t testing.TB) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "nft-helper-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(dir, "nft.test")
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// testConfig is the supervisor's default configuration for namespace ns.
func testConfig(t testing.TB, ns netenv.NS) Config {
	t.Helper()
	f, err := os.Open(filepath.Join("/var/run/netns", ns.Name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return Config{
		Table: DefaultTable, AgentUID: 1000, AgentGID: 1000,
		ProxyPort: 15001, DNSPort: 15002, HealthPort: 15000, Mark: DefaultMark,
		LogGroup: DefaultLogGroup, NetNS: int(f.Fd()),
	}
}
