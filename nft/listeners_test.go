package nft

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/forge/forge-supervisor/tests/netenv"
	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// eventBuffer is how many events a test listener holds before dropping;
// a subtest produces a handful, and a dropped event only fails a test.
const eventBuffer = 64

// eventWait is how long a test waits for an expected event, and
// quietWait how long it watches for an unexpected one after the client
// has finished (the accept loop may still be waking up).
const (
	eventWait = 3 * time.Second
	quietWait = 300 * time.Millisecond
)

// soOriginalDst is SO_ORIGINAL_DST (SOL_IP) and IP6T_SO_ORIGINAL_DST
// (SOL_IPV6); both are 80.
const soOriginalDst = 80

// accepted is one connection a test listener took.
type accepted struct {
	Remote  netip.AddrPort
	OrigDst netip.AddrPort // zero unless the listener asked for it
}

// listenTCP listens on addr inside ns and reports every accepted
// connection, which it closes at once. With origDst it reads the
// pre-redirect destination, the way the transparent proxy does.
func listenTCP(t *testing.T, ns netenv.NS, network, addr string, origDst bool) <-chan accepted {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, ns.Name, err)
	}
	events := make(chan accepted, eventBuffer)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		acceptLoop(ln, events, origDst)
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return events
}

// acceptLoop runs until the listener is closed.
func acceptLoop(ln net.Listener, events chan<- accepted, origDst bool) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		ev := accepted{Remote: c.RemoteAddr().(*net.TCPAddr).AddrPort()}
		if origDst {
			ev.OrigDst = originalDst(c.(*net.TCPConn))
		}
		_ = c.Close()
		select {
		case events <- ev:
		default:
		}
	}
}

// originalDst returns the destination before redirection, or the zero
// value if the kernel has none.
func originalDst(c *net.TCPConn) netip.AddrPort {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}
	}
	var dst netip.AddrPort
	_ = rc.Control(func(fd uintptr) {
		if c.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Is4() {
			// struct sockaddr_in: family, port, address.
			if b, err := getsockopt(int(fd), unix.SOL_IP, soOriginalDst, unix.SizeofSockaddrInet4); err == nil {
				dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4]))
			}
			return
		}
		// struct sockaddr_in6: family, port, flowinfo, address, scope.
		if b, err := getsockopt(int(fd), unix.SOL_IPV6, soOriginalDst, unix.SizeofSockaddrInet6); err == nil {
			dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), binary.BigEndian.Uint16(b[2:4]))
		}
	})
	return dst
}

func getsockopt(fd, level, opt, size int) ([]byte, error) {
	buf := make([]byte, size)
	n := uint32(size)
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return nil, errno
	}
	return buf[:n], nil
}

// serveDNS answers every A query with answer, over UDP and TCP on addr
// inside ns, and reports each question as "name transport".
func serveDNS(t *testing.T, ns netenv.NS, addr string, answer netip.Addr) <-chan string {
	t.Helper()
	var pc net.PacketConn
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("dns listen %s in %s: %v", addr, ns.Name, err)
	}
	questions := make(chan string, eventBuffer)
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 {
			name := q.Question[0].Name
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   answer.AsSlice(),
			})
			select {
			case questions <- fmt.Sprintf("%s %s", name, w.LocalAddr().Network()):
			default:
			}
		}
		_ = w.WriteMsg(m)
	})
	servers := []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}}
	var wg sync.WaitGroup
	for _, s := range servers {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.ActivateAndServe()
		}()
		<-started
	}
	t.Cleanup(func() {
		for _, s := range servers {
			_ = s.Shutdown()
		}
		wg.Wait()
	})
	return questions
}

// expect waits for the next event on ch.
func expect[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(eventWait):
		var zero T
		t.Fatalf("%s: nothing arrived within %s", what, eventWait)
		return zero
	}
}

// expectNone fails if anything arrives on ch shortly.
func expectNone[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case ev := <-ch:
		t.Errorf("%s: unexpected %+v", what, ev)
	case <-time.After(quietWait):
	}
}

// drain discards events left over from an earlier subtest.
func drain[T any](ch <-chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// listenUDP reports the source of every datagram received on addr in ns.
func listenUDP(t *testing.T, ns netenv.NS, addr string) <-chan string {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", addr)
		return err
	}); err != nil {
		t.Fatalf("udp listen %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	heard := make(chan string, eventBuffer)
	go func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case heard <- from.String():
			default:
			}
		}
	}()
	return heard
}
