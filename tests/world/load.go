package world

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// This file holds what load and fault tests (tests/resilience) need on top
// of the world: the supervisor's memory and descriptor figures, and a world
// server whose connections hold, stream, reset or stall on request.

// ProcStatus returns a field of /proc/<supervisor>/status in KiB (VmRSS,
// VmHWM...), or an error when the process or field is gone.
func (s *Supervisor) ProcStatus(field string) (int64, error) {
	pid := s.PID1()
	if pid <= 0 {
		return 0, fmt.Errorf("world: supervisor has no pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("world: no %s in /proc/%d/status", field, pid)
}

// OpenFDs counts the supervisor's open file descriptors.
func (s *Supervisor) OpenFDs() (int, error) {
	pid := s.PID1()
	if pid <= 0 {
		return 0, fmt.Errorf("world: supervisor has no pid")
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// Load server paths. A client sends one HTTP/1.1 request head naming the
// path; what follows is the path's own protocol:
//
//	/hold    → head + "ready\n"; then waits for the client's "done\n",
//	           answers "bye\n" and closes. Holds a connection open for as
//	           long as the client wants, to measure many at once.
//	/stream  → head, then StreamChunk bytes every StreamEvery until the
//	           client goes away.
//	/reset   → a head announcing ResetLength bytes, half of them, then a
//	           reset (SO_LINGER 0 close) mid-body.
//	/stall   → a head announcing StallLength bytes, then nothing, ever
//	           (until the test ends).
const (
	StreamChunk = 4 << 10
	StreamEvery = 25 * time.Millisecond
	ResetLength = 64 << 10
	StallLength = 1000
	// loadHeadMax bounds a request head: the load clients send ~60 bytes.
	loadHeadMax = 8 << 10
	// loadHoldMax bounds how long any load connection lives, so a broken
	// test cannot leave it open past its own timeout.
	loadHoldMax = 5 * time.Minute
)

// LoadServer is a world server on one port whose connections follow the
// paths above. Every goroutine it starts ends in t.Cleanup.
type LoadServer struct {
	ln       net.Listener
	accepted atomic.Int64
	active   atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
	paths    sync.Map // path → *atomic.Int64 (connections per path)
}

// StartLoadServer listens on [::]:port in the world namespace.
func (w *World) StartLoadServer(t *testing.T, port int) *LoadServer {
	t.Helper()
	s := &LoadServer{conns: make(map[net.Conn]struct{})}
	if err := w.World.Do(func() (err error) {
		s.ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	}); err != nil {
		t.Fatalf("world: load server :%d: %v", port, err)
	}
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.close)
	return s
}

// Accepted is the number of connections the server has accepted.
func (s *LoadServer) Accepted() int64 { return s.accepted.Load() }

// Active is the number of connections open right now.
func (s *LoadServer) Active() int64 { return s.active.Load() }

// Path returns how many connections asked for path.
func (s *LoadServer) Path(path string) int64 {
	if v, ok := s.paths.Load(path); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

func (s *LoadServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *LoadServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		s.accepted.Add(1)
		s.active.Add(1)
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.active.Add(-1)
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				_ = c.Close()
			}()
			_ = c.SetDeadline(time.Now().Add(loadHoldMax))
			s.serve(c.(*net.TCPConn))
		}()
	}
}

func (s *LoadServer) serve(c *net.TCPConn) {
	r := bufio.NewReader(io.LimitReader(c, loadHeadMax))
	line, err := r.ReadString('\n')
	if err != nil {
		return
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return
	}
	path := f[1]
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if l == "\r\n" {
			break
		}
	}
	v, _ := s.paths.LoadOrStore(path, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	switch path {
	case "/hold":
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nready\n"); err != nil {
			return
		}
		if l, err := r.ReadString('\n'); err != nil || l != "done\n" {
			return
		}
		_, _ = io.WriteString(c, "bye\n")
	case "/stream":
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"); err != nil {
			return
		}
		chunk := make([]byte, StreamChunk)
		t := time.NewTicker(StreamEvery)
		defer t.Stop()
		for range t.C {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	case "/reset":
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", ResetLength)
		_, _ = c.Write(make([]byte, ResetLength/2))
		// Let the half body leave before the reset destroys the send queue.
		time.Sleep(100 * time.Millisecond)
		_ = c.SetLinger(0)
	case "/stall":
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", StallLength)
		// Nothing more; wait for the peer to go away (or the cleanup).
		_, _ = io.Copy(io.Discard, c)
	default:
		_, _ = io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	}
}
