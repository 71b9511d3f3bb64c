//go:build ignore

// capture records the first bytes real TLS clients send, for the parser
// tests. It listens on loopback only, runs each client against it, keeps
// what arrived until the client went quiet, and writes testdata/*.bin.
//
//	go run ./conn/testdata/capture.go   (from the module root)
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// quiet is how long a client may pause before its first flight is deemed
// complete: a TLS client waits for the ServerHello, which never comes.
const quiet = 500 * time.Millisecond

func main() {
	clients := []struct {
		file string
		args func(port int) []string
	}{
		{"curl.bin", func(p int) []string {
			return []string{"curl", "-sk", "--max-time", "3", "--resolve", fmt.Sprintf("allowed.test:%d:127.0.0.1", p), fmt.Sprintf("https://allowed.test:%d/", p)}
		}},
		{"curl-http.bin", func(p int) []string {
			return []string{"curl", "-s", "--max-time", "3", "--resolve", fmt.Sprintf("allowed.test:%d:127.0.0.1", p), fmt.Sprintf("http://allowed.test:%d/path?q=1", p)}
		}},
		{"curl-proxy.bin", func(p int) []string {
			return []string{"curl", "-s", "--max-time", "3", "-x", fmt.Sprintf("http://127.0.0.1:%d", p), "http://proxied.test:8080/path"}
		}},
		{"curl-connect.bin", func(p int) []string {
			return []string{"curl", "-sk", "--max-time", "3", "-p", "-x", fmt.Sprintf("http://127.0.0.1:%d", p), "https://tunnel.test:443/"}
		}},
		{"openssl.bin", func(p int) []string {
			return []string{"openssl", "s_client", "-connect", "127.0.0.1:" + strconv.Itoa(p), "-servername", "openssl.test", "-alpn", "h2,http/1.1"}
		}},
	}
	dir := filepath.Join("conn", "testdata")
	for _, c := range clients {
		b, err := capture(c.args)
		if err != nil {
			fmt.Fprintf(os.Stderr, "capture %s: %v\n", c.file, err)
			os.Exit(1)
		}
		if err := os.WriteFile(filepath.Join(dir, c.file), b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("%s: %d bytes\n", c.file, len(b))
	}
}

func capture(args func(port int) []string) ([]byte, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	argv := args(ln.Addr().(*net.TCPAddr).Port)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = nil // /dev/null: s_client quits when the handshake fails
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	n := 0
	for n < len(buf) {
		_ = c.SetReadDeadline(time.Now().Add(quiet))
		k, err := c.Read(buf[n:])
		n += k
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && n > 0 {
				break
			}
			return nil, fmt.Errorf("read after %d bytes: %w", n, err)
		}
	}
	return buf[:n], nil
}
