package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses of the world (see tests/world): .1/::1 serve allowed.test and
// evil.test; .3/::3 are a host no allowed name resolves to.
const (
	worldV4  = "198.51.100.1"
	worldV6  = "2001:db8::1"
	otherV4  = "198.51.100.3"
	otherV6  = "2001:db8::3"
	agentV4  = "198.51.100.2"
	ioWindow = 3 * time.Second
)

// nextSrcPort hands out source ports below the kernel's ephemeral range
// (32768+), one per flow: two flows of one run never share a 4-tuple, so
// the suite's match of audit events by (dst, port, src_port) is exact. An
// ephemeral port could be reused by a later vector of the same run.
// The main attacker counts up from mainSrcPortBase; a daemon it starts is
// another process and counts from daemonSrcPortBase.
var nextSrcPort atomic.Int32

const (
	mainSrcPortBase   = 20000
	daemonSrcPortBase = 30000
)

func init() { nextSrcPort.Store(mainSrcPortBase) }

// hostPort joins ip and port, bracketing IPv6.
func hostPort(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }

// dialFlow connects (the kernel redirects it to the proxy; the socket
// still shows the original destination) and records the flow. The socket
// is bound before connect, so the flow is known even when the supervisor
// resets it before connect(2) returns.
func dialFlow(r *Result, ip string, port int) (*net.TCPConn, error) {
	dst := netip.MustParseAddr(ip)
	srcPort := 0
	d := net.Dialer{Timeout: ioWindow, Control: func(_, _ string, rc syscall.RawConn) error {
		var berr error
		err := rc.Control(func(fd uintptr) {
			for range 64 { // skip ports something else holds
				p := int(nextSrcPort.Add(1))
				var any unix.Sockaddr = &unix.SockaddrInet4{Port: p}
				if dst.Is6() {
					any = &unix.SockaddrInet6{Port: p}
				}
				if berr = unix.Bind(int(fd), any); berr != unix.EADDRINUSE {
					break
				}
			}
			if berr != nil {
				return
			}
			sa, gerr := unix.Getsockname(int(fd))
			switch a := sa.(type) {
			case *unix.SockaddrInet4:
				srcPort = a.Port
			case *unix.SockaddrInet6:
				srcPort = a.Port
			default:
				berr = gerr
			}
		})
		if err != nil {
			return err
		}
		return berr
	}}
	c, err := d.Dial("tcp", hostPort(ip, port))
	if srcPort != 0 {
		r.Flows = append(r.Flows, Flow{DstIP: dst.Unmap().String(), DstPort: port, SrcPort: srcPort})
	}
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	_ = tc.SetNoDelay(true)
	return tc, nil
}

// readAll reads what the other side sends until EOF, reset or the window.
func readAll(c io.Reader) ([]byte, error) {
	if d, ok := c.(interface{ SetReadDeadline(time.Time) error }); ok {
		_ = d.SetReadDeadline(time.Now().Add(ioWindow))
	}
	var buf bytes.Buffer
	_, err := io.Copy(&buf, io.LimitReader(c, 1<<20))
	return buf.Bytes(), err
}

// send writes payload on a fresh flow and reads the answer, then judges
// it.
func send(r *Result, ip string, port int, payload []byte) {
	c, err := dialFlow(r, ip, port)
	if err != nil {
		r.note("connect: %v", err)
		return
	}
	defer c.Close()
	if _, err := c.Write(payload); err != nil {
		r.note("write: %v", err)
	}
	resp, err := readAll(c)
	judge(r, resp, err)
}

// judge reads the answer: the supervisor's denials (TLS alert, 403 with
// its header, reset) are "blocked"; anything from the world is "escaped".
func judge(r *Result, resp []byte, err error) {
	switch {
	case bytes.Contains(resp, []byte("X-Forge-Supervisor: denied")):
		r.note("403 from the supervisor")
	case len(resp) >= 7 && resp[0] == 21:
		r.note("TLS alert %d", resp[6])
	case len(resp) > 0 && resp[0] == 22:
		r.escape("TLS ServerHello from the world (%d bytes)", len(resp))
	case len(resp) > 0:
		r.escape("world answered: %q", clip(resp))
	case err != nil:
		r.note("no answer: %v", err)
	default:
		r.note("closed without answer")
	}
}

func clip(b []byte) []byte {
	if len(b) > 120 {
		return b[:120]
	}
	return b
}

func caPool() *x509.CertPool {
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(os.Getenv("ESCAPE_CA")); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	return pool
}

// tlsGet runs a real crypto/tls handshake with sni and a GET; a completed
// handshake means the world answered.
func tlsGet(r *Result, ip string, port int, sni string) (string, error) {
	c, err := dialFlow(r, ip, port)
	if err != nil {
		return "", err
	}
	defer c.Close()
	tc := tls.Client(c, &tls.Config{ServerName: sni, RootCAs: caPool(), NextProtos: []string{"http/1.1", "esc-" + marker(r.Vector)}})
	_ = tc.SetDeadline(time.Now().Add(ioWindow))
	if err := tc.Handshake(); err != nil {
		return "", fmt.Errorf("handshake: %w", err)
	}
	fmt.Fprintf(tc, "GET /%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", marker(r.Vector), sni)
	b, _ := io.ReadAll(io.LimitReader(tc, 1<<16))
	return string(b), nil
}

// tlsDenied: a real TLS client naming a denied host.
func tlsDenied(ip string, sni string) vectorFunc {
	return func(r *Result) {
		body, err := tlsGet(r, ip, 443, fill(r, sni))
		if err != nil {
			r.note("%v", err)
			return
		}
		r.escape("handshake completed: %q", clip([]byte(body)))
	}
}

// rawHello sends a hand-built ClientHello naming sni.
func rawHello(ip string, sni []byte) vectorFunc {
	return func(r *Result) {
		if sni != nil {
			sni = []byte(fill(r, string(sni)))
		}
		send(r, ip, 443, rawClientHello(sni, []string{"http/1.1", "esc-" + marker(r.Vector)}))
	}
}

// httpRequest sends one HTTP/1.1 request head.
func httpRequest(ip string, port int, head string) vectorFunc {
	return func(r *Result) { send(r, ip, port, []byte(fill(r, head))) }
}

// splitHello: a crypto/tls ClientHello for a denied name re-framed into
// 8-byte TLS records (about 200 of them) and written a few bytes per TCP
// segment, so record headers are split across segments too. The supervisor
// must reassemble the records to find the name (not_in_allowlist); one
// that reads only the first record sees no server_name at all.
//
// The segments go back to back. They used to be paced (a sleep after each
// of some 500 writes): on a loaded machine those sleeps added up to more
// than the classification deadline and the vector ended in
// classify_timeout, a result about the machine, not the supervisor. Only
// the first record is held back a moment, so the supervisor's first read
// most likely ends at a record boundary inside the hello.
func splitHello(ip string) vectorFunc {
	return func(r *Result) {
		sni := marker(r.Vector) + ".evil.test"
		rec, err := capturedClientHello(&tls.Config{ServerName: sni, NextProtos: []string{"esc-" + marker(r.Vector)}})
		if err != nil {
			r.Observed = "error"
			r.note("capture hello: %v", err)
			return
		}
		framed := reframe(rec, splitRecordSize)
		c, err := dialFlow(r, ip, 443)
		if err != nil {
			r.note("connect: %v", err)
			return
		}
		defer c.Close()
		start := time.Now()
		first := recordHeaderLen + splitRecordSize
		writes, err := writeSegments(c, framed[:first])
		if err == nil {
			time.Sleep(firstRecordPause)
			var n int
			n, err = writeSegments(c, framed[first:])
			writes += n
		}
		if err != nil {
			r.note("write: %v", err)
		}
		sent := time.Since(start)
		resp, err := readAll(c)
		r.note("%d records in %d writes, sent in %v", (len(rec)-recordHeaderLen+splitRecordSize-1)/splitRecordSize, writes, sent.Round(time.Millisecond))
		judge(r, resp, err)
	}
}

// writeSegments writes b splitSegment bytes per write, back to back, and
// returns the number of writes.
func writeSegments(c net.Conn, b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		k := min(splitSegment, len(b))
		if _, err := c.Write(b[:k]); err != nil {
			return n, err
		}
		b = b[k:]
		n++
	}
	return n, nil
}

// The shape of splitHello's stream.
const (
	recordHeaderLen  = 5
	splitRecordSize  = 8 // handshake bytes per record
	splitSegment     = 5 // bytes per write (TCP_NODELAY: per segment)
	firstRecordPause = 50 * time.Millisecond
)

// silent connects and sends nothing for hold; the supervisor must end the
// connection by itself (classification deadline, then deny).
func silent(ip string, port int, hold time.Duration) vectorFunc {
	return func(r *Result) {
		c, err := dialFlow(r, ip, port)
		if err != nil {
			r.note("connect: %v", err)
			return
		}
		defer c.Close()
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(hold))
		b, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			r.escape("connection still open after %v of silence: no classification deadline", hold)
			return
		}
		if len(b) > 0 {
			r.escape("world spoke first: %q", clip(b))
			return
		}
		r.note("supervisor closed the silent connection after %v (%v)", time.Since(start).Round(10*time.Millisecond), err)
	}
}

// h2cPreface: HTTP/2 prior knowledge with a HEADERS frame naming host.
func h2cPreface(ip string, host string) []byte {
	b := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	b = append(b, 0, 0, 0, 4, 0, 0, 0, 0, 0) // empty SETTINGS
	var hp []byte
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", host}} {
		hp = append(hp, 0, byte(len(kv[0])))
		hp = append(hp, kv[0]...)
		hp = append(hp, byte(len(kv[1])))
		hp = append(hp, kv[1]...)
	}
	n := len(hp)
	b = append(b, byte(n>>16), byte(n>>8), byte(n), 1, 5, 0, 0, 0, 1) // HEADERS, END_STREAM|END_HEADERS, stream 1
	return append(b, hp...)
}
