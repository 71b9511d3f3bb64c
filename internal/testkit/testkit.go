// Package testkit is what the project's tests share: a locked log buffer
// that is strict about what it holds, a runner that stops a server at the
// end of a test and checks it stopped, and a loopback server that runs a
// handler per accepted connection. It is imported by tests only.
package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Log is a locked buffer for a logger's NDJSON output. Lines fails the
// test on a line that is not a JSON object: the audit log must never hold
// one (strict by default).
type Log struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Lines decodes every line written so far.
func (l *Log) Lines(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not a JSON object: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// StopWait is how long Serve waits for a server to return after its
// context ended before it fails the test.
const StopWait = 10 * time.Second

// Serve runs serve in a goroutine until the test ends; then it cancels
// serve's context and fails the test if serve returns an error or does
// not return within StopWait (a server that does not drain).
func Serve(t testing.TB, serve func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(StopWait):
			t.Errorf("Serve did not return %v after its context ended: it did not drain", StopWait)
		}
	})
}

// Listen runs handle for every connection accepted on a fresh loopback
// listener until the test ends, and returns the listener's address.
func Listen(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go AcceptEach(ln, handle)
	return ln.Addr().String()
}

// AcceptEach runs handle in a goroutine for every connection ln accepts,
// closing each after, until ln is closed.
func AcceptEach(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}
