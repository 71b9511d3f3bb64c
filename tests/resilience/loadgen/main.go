// Command loadgen opens many connections at once to a tests/world load
// server, as the agent would: the resilience tests run it as UID 1000 in
// the agent namespace, so the supervisor's nft rules redirect every one of
// its connections through the proxy.
//
// It connects by IP and names the destination only in the HTTP Host
// header, so nothing depends on the agent's DNS.
//
// Modes (-path):
//
//	/hold    every connection sends its request and waits for "ready";
//	         once all are ready or failed, loadgen prints the peak report
//	         and waits for a line on stdin, then each connection sends
//	         "done", expects "bye" and closes.
//	/stream  every connection sends its request and reads the endless
//	         stream; once all stream or failed, loadgen prints the peak
//	         report, then reads until the connection ends (or a line on
//	         stdin closes them all).
//
// Reports are one JSON object per line on stdout. Every wait is bounded.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Report is one line of output.
type Report struct {
	Phase string `json:"phase"` // "peak" or "done"
	// Established: TCP connect succeeded. Ready: the world answered
	// through the proxy (hold: "ready"; stream: first body byte).
	Established int64 `json:"established"`
	Ready       int64 `json:"ready"`
	// Completed: hold connections that got "bye" and a clean EOF.
	Completed int64 `json:"completed"`
	// Failures by kind, at connect or afterwards.
	Failures map[string]int64 `json:"failures"`
	// Stream mode: how live streams ended ("eof", "reset", ...).
	Ends map[string]int64 `json:"ends,omitempty"`
	// Bytes read by all connections.
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	NoFile  uint64  `json:"nofile"`
}

type counters struct {
	mu        sync.Mutex
	failures  map[string]int64
	ends      map[string]int64
	est       atomic.Int64
	ready     atomic.Int64
	completed atomic.Int64
	bytes     atomic.Int64
}

func (c *counters) fail(kind string) {
	c.mu.Lock()
	c.failures[kind]++
	c.mu.Unlock()
}

func (c *counters) end(kind string) {
	c.mu.Lock()
	c.ends[kind]++
	c.mu.Unlock()
}

func (c *counters) report(phase string, start time.Time) Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := make(map[string]int64, len(c.failures))
	for k, v := range c.failures {
		f[k] = v
	}
	e := make(map[string]int64, len(c.ends))
	for k, v := range c.ends {
		e[k] = v
	}
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return Report{Phase: phase, Established: c.est.Load(), Ready: c.ready.Load(), Completed: c.completed.Load(),
		Failures: f, Ends: e, Bytes: c.bytes.Load(), Seconds: time.Since(start).Seconds(), NoFile: lim.Cur}
}

// errNotOK is a response other than 200: the supervisor's 403 when it
// denied the connection.
var errNotOK = errors.New("response not 200")

// kind names an error for the report.
func kind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, errNotOK):
		return "denied"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EPIPE):
		return "pipe"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "fd_limit"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no_port"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "other"
}

func main() {
	addr := flag.String("addr", "198.51.100.1:8000", "world address (IP:port)")
	host := flag.String("host", "allowed.test", "HTTP Host header (the name the policy allows)")
	path := flag.String("path", "/hold", "/hold or /stream")
	n := flag.Int("n", 100, "connections")
	dialTimeout := flag.Duration("dial-timeout", 60*time.Second, "connect timeout of one connection")
	readyTimeout := flag.Duration("ready-timeout", 90*time.Second, "time for all connections to become ready")
	endTimeout := flag.Duration("end-timeout", 90*time.Second, "time for all connections to end after the release")
	flag.Parse()
	if *path != "/hold" && *path != "/stream" {
		fmt.Fprintln(os.Stderr, "loadgen: -path must be /hold or /stream")
		os.Exit(2)
	}
	// The Go runtime raised the soft RLIMIT_NOFILE to the hard limit;
	// the test raised the hard limit before starting us.
	start := time.Now()
	c := &counters{failures: map[string]int64{}, ends: map[string]int64{}}
	// A hold connection's later "done\n" is this request's body, declared
	// up front: the supervisor checks every request on a cleartext HTTP
	// connection, and undeclared bytes after a head are not HTTP.
	body := ""
	if *path == "/hold" {
		body = "Content-Length: 5\r\n"
	}
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: forge-loadgen\r\n%s\r\n", *path, *host, body)
	release := make(chan struct{})
	var settled, all sync.WaitGroup
	settled.Add(*n)
	all.Add(*n)
	for range *n {
		go func() {
			defer all.Done()
			var once sync.Once
			settle := func() { once.Do(settled.Done) }
			defer settle()
			conn(c, *addr, req, *path, *dialTimeout, *readyTimeout, *endTimeout, settle, release)
		}()
	}
	enc := json.NewEncoder(os.Stdout)
	waitTimeout(&settled, *readyTimeout+*dialTimeout)
	_ = enc.Encode(c.report("peak", start))
	// Release on a line from stdin, or EOF of stdin.
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		close(release)
	}()
	waitTimeout(&all, *readyTimeout+*dialTimeout+*endTimeout+time.Minute)
	_ = enc.Encode(c.report("done", start))
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// conn runs one connection. settle is called once it is ready or has
// failed; release says when hold connections finish (or streams close).
func conn(c *counters, addr, req, path string, dialTimeout, readyTimeout, endTimeout time.Duration, settle func(), release <-chan struct{}) {
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		c.fail("connect_" + kind(err))
		return
	}
	defer nc.Close()
	c.est.Add(1)
	_ = nc.SetDeadline(time.Now().Add(readyTimeout))
	if _, err := io.WriteString(nc, req); err != nil {
		c.fail("write_" + kind(err))
		return
	}
	r := bufio.NewReader(nc)
	if err := readHead(r); err != nil {
		c.fail("head_" + kind(err))
		return
	}
	if path == "/stream" {
		stream(c, nc, r, settle, release, endTimeout)
		return
	}
	line, err := r.ReadString('\n')
	if err != nil || line != "ready\n" {
		c.fail("ready_" + kindOr(err, "garbled"))
		return
	}
	c.ready.Add(1)
	settle()
	_ = nc.SetDeadline(time.Time{})
	<-release
	_ = nc.SetDeadline(time.Now().Add(endTimeout))
	if _, err := io.WriteString(nc, "done\n"); err != nil {
		c.fail("done_" + kind(err))
		return
	}
	_ = nc.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "bye\n" {
		c.fail("bye_" + kindOr(err, "garbled"))
		return
	}
	c.completed.Add(1)
}

func kindOr(err error, otherwise string) string {
	if err != nil {
		return kind(err)
	}
	return otherwise
}

// readHead reads the response head and checks it is a 200.
func readHead(r *bufio.Reader) error {
	status, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(status, "HTTP/1.1 200") {
		return fmt.Errorf("%w: %q", errNotOK, strings.TrimSpace(status))
	}
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if l == "\r\n" {
			return nil
		}
	}
}

// stream reads the endless body until the connection ends or release
// closes it.
func stream(c *counters, nc net.Conn, r *bufio.Reader, settle func(), release <-chan struct{}, endTimeout time.Duration) {
	buf := make([]byte, 32<<10)
	first := true
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-release:
			_ = nc.SetReadDeadline(time.Now())
		case <-stop:
		}
	}()
	for {
		n, err := r.Read(buf)
		c.bytes.Add(int64(n))
		if n > 0 && first {
			first = false
			c.ready.Add(1)
			settle()
			// Streams run until the test ends them (bounded by endTimeout
			// after the first byte plus the ready wait).
			_ = nc.SetDeadline(time.Now().Add(endTimeout))
		}
		if err != nil {
			if first {
				c.fail("stream_" + kind(err))
			} else {
				c.end(kind(err))
			}
			return
		}
	}
}
