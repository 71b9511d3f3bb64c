package stages

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/bufpool"
)

// maxSpliceChunk is the most one splice(2) call asks to move. It matches
// bufpool.PipeSize so a full pipe is drained by one call on the other side.
const maxSpliceChunk = bufpool.PipeSize

// idleClock is shared by both directions of a relay: a connection is idle
// only when neither direction has moved a byte for the idle timeout, so a
// long download with a silent upload direction is not cut.
type idleClock struct {
	timeout time.Duration
	last    atomic.Int64 // unix nanoseconds of the last byte moved
}

func newIdleClock(timeout time.Duration) *idleClock {
	c := &idleClock{timeout: timeout}
	c.touch()
	return c
}

func (c *idleClock) touch() { c.last.Store(time.Now().UnixNano()) }

func (c *idleClock) deadline() time.Time { return time.Now().Add(c.timeout) }

// expired reports whether the whole connection has been idle too long.
func (c *idleClock) expired() bool {
	return time.Since(time.Unix(0, c.last.Load())) >= c.timeout
}

// copyHalf moves src→dst until EOF or error and returns the bytes moved.
// It prefers splice(2) through a pooled pipe (no copy through user space)
// and falls back to a pooled buffer when no pipe can be had.
func copyHalf(dst, src *net.TCPConn, pipes *bufpool.Pipes, bufs *bufpool.Buffers, idle *idleClock) (int64, error) {
	return copyUpTo(dst, src, pipes, bufs, idle, -1)
}

// copyUpTo is copyHalf that stops after limit bytes (limit < 0: none),
// e.g. at the end of a Content-Length body, so the next message head is
// left in the socket for its parser. EOF before the limit is no error:
// the caller sees the short count.
func copyUpTo(dst, src *net.TCPConn, pipes *bufpool.Pipes, bufs *bufpool.Buffers, idle *idleClock, limit int64) (int64, error) {
	p, err := pipes.Get()
	if err != nil {
		return copyBuffered(dst, src, bufs, idle, limit)
	}
	n, err := spliceLoop(dst, src, p, idle, limit)
	pipes.Put(p)
	return n, err
}

func spliceLoop(dst, src *net.TCPConn, p *bufpool.Pipe, idle *idleClock, limit int64) (int64, error) {
	srcRaw, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	dstRaw, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	var total int64
	for {
		want := maxSpliceChunk
		if limit >= 0 {
			if total == limit {
				return total, nil
			}
			want = int(min(int64(want), limit-total))
		}
		_ = src.SetReadDeadline(idle.deadline())
		var n int64
		var serr error
		rerr := srcRaw.Read(func(fd uintptr) bool {
			for {
				n, serr = unix.Splice(int(fd), nil, p.W, nil, want, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				if serr != unix.EINTR {
					break
				}
			}
			return serr != unix.EAGAIN // false: wait until readable
		})
		if rerr != nil {
			if errors.Is(rerr, os.ErrDeadlineExceeded) && !idle.expired() {
				continue
			}
			return total, rerr
		}
		if serr != nil {
			return total, serr
		}
		if n == 0 {
			return total, nil // EOF
		}
		p.Buffered += int(n)
		idle.touch()
		if err := drainPipe(dst, dstRaw, p, idle); err != nil {
			return total, err
		}
		total += n
	}
}

// drainPipe writes everything buffered in p to dst.
func drainPipe(dst *net.TCPConn, dstRaw interface {
	Write(func(uintptr) bool) error
}, p *bufpool.Pipe, idle *idleClock) error {
	for p.Buffered > 0 {
		_ = dst.SetWriteDeadline(idle.deadline())
		var m int64
		var serr error
		werr := dstRaw.Write(func(fd uintptr) bool {
			for {
				m, serr = unix.Splice(p.R, nil, int(fd), nil, p.Buffered, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				if serr != unix.EINTR {
					break
				}
			}
			return serr != unix.EAGAIN // false: wait until writable
		})
		if werr != nil {
			if errors.Is(werr, os.ErrDeadlineExceeded) && !idle.expired() {
				continue
			}
			return werr
		}
		if serr != nil {
			return serr
		}
		p.Buffered -= int(m)
		idle.touch()
	}
	return nil
}

func copyBuffered(dst, src *net.TCPConn, bufs *bufpool.Buffers, idle *idleClock, limit int64) (int64, error) {
	bp := bufs.Get()
	defer bufs.Put(bp)
	buf := *bp
	var total int64
	for {
		want := len(buf)
		if limit >= 0 {
			if total == limit {
				return total, nil
			}
			want = int(min(int64(want), limit-total))
		}
		_ = src.SetReadDeadline(idle.deadline())
		n, err := src.Read(buf[:want])
		if n > 0 {
			idle.touch()
			_ = dst.SetWriteDeadline(time.Now().Add(idle.timeout))
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return total, nil
			}
			if errors.Is(err, os.ErrDeadlineExceeded) && !idle.expired() {
				continue
			}
			return total, err
		}
	}
}
