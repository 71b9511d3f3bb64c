package bench

import (
	"io"
	"net"
	"time"

	"github.com/forge/forge-supervisor/internal/testkit"
)

// serveBare is the least a proxy that decides before it connects must do,
// with nothing else: a goroutine per connection reads the client's first
// bytes, connects to upstream, writes them, and relays both ways with
// io.Copy (splice(2) between TCP sockets). No classification, policy,
// stages, limits, timeouts or audit. It is the floor the engine is
// measured against: what the engine adds over it is the engine's own cost,
// and what the floor adds over direct is the price of any such proxy on
// this machine. It serves until ln is closed.
func serveBare(ln net.Listener, upstream string) {
	testkit.AcceptEach(ln, func(c net.Conn) { bareRelay(c, upstream) })
}

func bareRelay(c net.Conn, upstream string) {
	first := make([]byte, 16<<10)
	n, err := c.Read(first)
	if err != nil {
		return
	}
	up, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer up.Close()
	if _, err := up.Write(first[:n]); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		_ = up.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, up)
	_ = c.(*net.TCPConn).CloseWrite()
	<-done
}

// bareDNSReaders is how many goroutines the bare DNS forwarder runs, as
// many as the proxy's UDP readers.
const bareDNSReaders = 128

// serveBareDNS is the DNS counterpart of serveBare: UDP datagrams relayed
// to upstream and back by bareDNSReaders goroutines, each with its own
// upstream socket, with no parsing, policy, ID rewriting, learning or
// audit. It is the floor for any forwarder written in Go on this machine.
// It serves until conn is closed.
func serveBareDNS(conn *net.UDPConn, upstream string) error {
	ups := make([]net.Conn, bareDNSReaders)
	for i := range ups {
		u, err := net.Dial("udp", upstream)
		if err != nil {
			return err
		}
		defer u.Close()
		ups[i] = u
	}
	done := make(chan struct{}, len(ups))
	for _, up := range ups {
		go func() {
			defer func() { done <- struct{}{} }()
			q, a := make([]byte, 4096), make([]byte, 4096)
			for {
				n, from, err := conn.ReadFromUDPAddrPort(q)
				if err != nil {
					return
				}
				_ = up.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := up.Write(q[:n]); err != nil {
					continue
				}
				m, err := up.Read(a)
				if err != nil {
					continue
				}
				_, _ = conn.WriteToUDPAddrPort(a[:m], from)
			}
		}()
	}
	for range ups {
		<-done
	}
	return nil
}
