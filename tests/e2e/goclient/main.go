// Command goclient is the second binary of the process-identity e2e test:
// an agent-side HTTPS client that is not curl.
//
//	goclient -ca FILE URL        GET URL, print the status code
//	goclient -cork-exit HOST:PORT NAME
//	                             send a TLS ClientHello for NAME and exit at
//	                             once: the hello is corked (TCP_CORK), so
//	                             it leaves only when the exiting process's
//	                             socket is closed, and its owner is gone
//	                             before the supervisor can look it up
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

func main() {
	ca := flag.String("ca", "", "CA file")
	corkExit := flag.Bool("cork-exit", false, "send a corked ClientHello and exit")
	flag.Parse()
	if *corkExit && flag.NArg() == 2 {
		os.Exit(sendHelloAndExit(flag.Arg(0), flag.Arg(1)))
	}
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: goclient -ca FILE URL | goclient -cork-exit HOST:PORT NAME")
		os.Exit(2)
	}
	os.Exit(get(*ca, flag.Arg(0)))
}

func get(caFile, url string) int {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 8 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Println("000", err)
		return 1
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	return 0
}

// exitAfterWrite is the client's socket: its first write (the whole
// ClientHello) is corked, then the process exits without closing
// anything itself.
type exitAfterWrite struct{ *net.TCPConn }

func (c exitAfterWrite) Write(b []byte) (int, error) {
	n, err := c.TCPConn.Write(b)
	if err == nil {
		syscall.Exit(0)
	}
	return n, err
}

func sendHelloAndExit(addr, name string) int {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tc := conn.(*net.TCPConn)
	raw, err := tc.SyscallConn()
	if err != nil {
		return 1
	}
	raw.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, 1) })
	err = tls.Client(exitAfterWrite{tc}, &tls.Config{ServerName: name, InsecureSkipVerify: true}).Handshake()
	fmt.Fprintln(os.Stderr, "handshake returned:", err)
	return 1
}
