// Command agentcli is the agent side of the kernel-path tests: small
// clients run as UID 1000 in the agent namespace, each printing one line.
//
//	agentcli hello ADDR SNI [split|tfo|hold] [LPORT]  TLS handshake, then "bye" (the server closes first);
//	                                                   prints "ok", "denied" (a TLS access_denied alert), "reset"
//	                                                   or the error, and the microseconds taken
//	agentcli banner ADDR                              connect and read the server's first line; prints the time and it
package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Println("usage: agentcli hello|banner ADDR ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "hello":
		mode, lport := "", 0
		if len(os.Args) > 4 {
			mode = os.Args[4]
		}
		if len(os.Args) > 5 {
			lport, _ = strconv.Atoi(os.Args[5])
		}
		fmt.Println(hello(os.Args[2], os.Args[3], mode, lport))
	case "banner":
		fmt.Println(banner(os.Args[2]))
	default:
		fmt.Println("unknown mode", os.Args[1])
	}
}

func dialer(mode string, lport int) *net.Dialer {
	d := &net.Dialer{Timeout: 3 * time.Second}
	if lport != 0 {
		d.LocalAddr = &net.TCPAddr{Port: lport}
	}
	d.Control = func(_, _ string, c syscall.RawConn) error {
		var err error
		_ = c.Control(func(fd uintptr) {
			if lport != 0 {
				err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			}
			if mode == "tfo" {
				err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 1)
			}
		})
		return err
	}
	return d
}

// oneByte writes every byte in a segment of its own (TCP_NODELAY is Go's
// default).
type oneByte struct{ net.Conn }

func (o oneByte) Write(b []byte) (int, error) {
	for i := range b {
		if _, err := o.Conn.Write(b[i : i+1]); err != nil {
			return i, err
		}
		time.Sleep(200 * time.Microsecond)
	}
	return len(b), nil
}

func hello(addr, sni, mode string, lport int) string {
	start := time.Now()
	c, err := dialer(mode, lport).Dial("tcp", addr)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	var conn net.Conn = c
	if mode == "fire" {
		// The whole ClientHello in one write, then close at once: the
		// socket is gone (an orphan) while its segment is judged.
		_, err := c.Write(capturedHello(sni))
		c.Close()
		if err != nil {
			return "write: " + err.Error()
		}
		return "sent"
	}
	if mode == "split" {
		conn = oneByte{c}
	}
	cfg := &tls.Config{ServerName: sni, InsecureSkipVerify: true}
	if mode == "split" {
		// A small ClientHello (no post-quantum key share): ~250 segments
		// of one byte rather than ~1,500, inside the classify deadline.
		cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	}
	tc := tls.Client(conn, cfg)
	_ = tc.SetDeadline(time.Now().Add(4 * time.Second))
	err = tc.Handshake()
	took := time.Since(start)
	if err == nil && mode == "hold" {
		// An established flow that must outlive the supervisor: wait for a
		// line on stdin, then talk.
		fmt.Println("ready")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		_ = tc.SetDeadline(time.Now().Add(4 * time.Second))
		if _, err = io.WriteString(tc, "ping\n"); err == nil {
			var line string
			if line, err = bufio.NewReader(tc).ReadString('\n'); err == nil && line != "ping\n" {
				err = fmt.Errorf("echo %q", line)
			}
		}
	}
	if err == nil {
		if _, err = io.WriteString(tc, "bye\n"); err == nil {
			_, err = io.ReadAll(tc)
		}
	}
	switch {
	case err == nil:
		return fmt.Sprintf("ok %d", took.Microseconds())
	case strings.Contains(err.Error(), "access denied"):
		return fmt.Sprintf("denied %d", took.Microseconds())
	case errors.Is(err, syscall.ECONNRESET) || strings.Contains(err.Error(), "connection reset"):
		return fmt.Sprintf("reset %d", took.Microseconds())
	default:
		return fmt.Sprintf("error %d %v", took.Microseconds(), err)
	}
}

func banner(addr string) string {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(4 * time.Second))
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		return "read: " + err.Error()
	}
	return fmt.Sprintf("%d %s", time.Since(start).Microseconds(), strings.TrimSpace(string(buf[:n])))
}

// capturedHello returns the bytes crypto/tls sends as its ClientHello.
func capturedHello(sni string) []byte {
	a, b := net.Pipe()
	go func() { _ = tls.Client(a, &tls.Config{ServerName: sni, InsecureSkipVerify: true}).Handshake() }()
	buf := make([]byte, 64<<10)
	n, _ := b.Read(buf)
	a.Close()
	b.Close()
	return buf[:n]
}
