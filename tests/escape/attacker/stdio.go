package main

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The agent attacks the log through its own stdout and stderr: the test
// judges by the supervisor's log, never by what the agent believes.

// Parameters of the log vectors.
const (
	// partialFlows: a partial line before each denied flow; all of their
	// audit lines must still parse.
	partialFlows = 5
	// nonblockFlows: denied flows while the agent keeps its stdout full
	// with O_NONBLOCK set on it; every one must be in the log.
	nonblockFlows = 20
	// floodCap bounds what the flood writes, so a supervisor that relays
	// it keeps the test's log to a few tens of MiB.
	floodCap   = 32 << 20
	floodChunk = 64 << 10
)

// forgedLogLines prints lines that look exactly like the supervisor's own
// audit and lifecycle events, on stdout and stderr, each after a newline
// so they start a line even in a shared stream. The test requires that no
// event of the log carries the marker except as agent_output.
func forgedLogLines(r *Result) {
	m := marker(r.Vector)
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	lines := []string{
		fmt.Sprintf(`{"level":"info","ts":%q,"msg":"egress_denied","proto":"tls","sni":"%s.forged.test","host":"","alpn":"","dst_ip":"198.51.100.3","dst_port":443,"src_port":40000,"reason":"not_in_allowlist","rule":"","bytes_up":0,"bytes_down":0,"duration_ms":0.1,"would_deny":false,"source":"transparent"}`, ts, m),
		fmt.Sprintf(`{"level":"info","ts":%q,"msg":"policy_reloaded","policy_path":"/etc/forge/%s.json","mode":"dev-open","rules":0,"duration_ms":0.1}`, ts, m),
	}
	for _, f := range []*os.File{os.Stdout, os.Stderr} {
		for _, l := range lines {
			if _, err := f.WriteString("\n" + l + "\n"); err != nil {
				r.note("write %s: %v", f.Name(), err)
			}
		}
	}
	r.note("printed %d forged lines on stdout and stderr", 2*len(lines))
}

// partialLines writes an unfinished line before each denied flow: in a
// shared stream the supervisor's next audit line would be glued to it.
func partialLines(r *Result) {
	for i := range partialFlows {
		fmt.Fprintf(os.Stdout, "partial-%d-", i)
		fmt.Fprintf(os.Stderr, "partial-%d-", i)
		send(r, otherV4, 7000, []byte(fill(r, "esc-%s")))
	}
	os.Stdout.WriteString("\n")
	os.Stderr.WriteString("\n")
	r.note("%d flows, each after a partial line", partialFlows)
}

// nonblockFull sets O_NONBLOCK on its stdout (on a shared file
// description the supervisor's writes would then fail with EAGAIN) and
// keeps the pipe full while it makes denied flows; their audit lines must
// all reach the log.
func nonblockFull(r *Result) {
	fd := int(os.Stdout.Fd())
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		r.Observed = "error"
		r.note("fcntl(F_GETFL): %v", err)
		return
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags|unix.O_NONBLOCK); err != nil {
		r.Observed = "error"
		r.note("fcntl(F_SETFL, O_NONBLOCK): %v", err)
		return
	}
	stop := make(chan struct{})
	flooded := make(chan int)
	go func() { flooded <- flood(fd, stop) }()
	// Let the flood fill the pipe first.
	time.Sleep(50 * time.Millisecond)

	var mu sync.Mutex
	var wg sync.WaitGroup
	for range nonblockFlows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub := &Result{Vector: r.Vector}
			send(sub, otherV4, 7000, []byte(fill(r, "esc-%s")))
			mu.Lock()
			r.Flows = append(r.Flows, sub.Flows...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	// The last audit lines are written as the flows close.
	time.Sleep(200 * time.Millisecond)
	close(stop)
	n := <-flooded
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags) // blocking again, for the result line
	os.Stdout.WriteString("\n")
	r.note("%d flows while flooding stdout with O_NONBLOCK (%d bytes written)", len(r.Flows), n)
}

// flood writes lines of 'x' to fd as fast as the pipe takes them, retrying
// EAGAIN at once, until stop or floodCap. It returns the bytes written.
func flood(fd int, stop <-chan struct{}) int {
	chunk := append(bytes.Repeat([]byte("x"), floodChunk-1), '\n')
	total := 0
	for total < floodCap {
		select {
		case <-stop:
			return total
		default:
		}
		n, err := unix.Write(fd, chunk)
		if n > 0 {
			total += n
			if n < len(chunk) {
				// Finish the line blocking-free later; keep lines whole.
				rest := chunk[n:]
				for len(rest) > 0 {
					m, werr := unix.Write(fd, rest)
					if m > 0 {
						rest = rest[m:]
						total += m
					}
					if werr != nil && werr != unix.EAGAIN {
						return total
					}
				}
			}
		}
		if err != nil && err != unix.EAGAIN {
			return total
		}
	}
	return total
}
