package bufpool

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// PipeSize is the capacity asked of each splice pipe. 1 MiB lets one
// splice move a large chunk of a bulk transfer per pair of syscalls; the
// kernel may grant less (pipe-max-size), which only costs more syscalls.
const PipeSize = 1 << 20

// Pipe is a kernel pipe used as the in-between buffer of splice(2).
// Buffered counts the bytes sitting in it; a pipe is only returned to the
// pool empty.
type Pipe struct {
	R, W     int
	Buffered int
}

func (p *Pipe) close() {
	unix.Close(p.R)
	unix.Close(p.W)
}

// Pipes is a bounded free list of pipes. Idle pipes are kept up to the
// bound; past it they are closed, so the pool never pins more than
// maxIdle*2 file descriptors.
type Pipes struct {
	free chan *Pipe
}

// NewPipes returns a pool keeping at most maxIdle idle pipes.
func NewPipes(maxIdle int) *Pipes {
	return &Pipes{free: make(chan *Pipe, maxIdle)}
}

// Get returns an empty pipe, creating one when none is idle.
func (ps *Pipes) Get() (*Pipe, error) {
	select {
	case p := <-ps.free:
		return p, nil
	default:
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, fmt.Errorf("bufpool: pipe2: %w", err)
	}
	p := &Pipe{R: fds[0], W: fds[1]}
	// Best effort: a smaller pipe still works.
	_, _ = unix.FcntlInt(uintptr(p.W), unix.F_SETPIPE_SZ, PipeSize)
	return p, nil
}

// Put returns p to the pool, or closes it when it still holds bytes (an
// aborted relay) or the pool is full.
func (ps *Pipes) Put(p *Pipe) {
	if p == nil {
		return
	}
	if p.Buffered != 0 {
		p.close()
		return
	}
	select {
	case ps.free <- p:
	default:
		p.close()
	}
}

// Close closes every idle pipe.
func (ps *Pipes) Close() {
	for {
		select {
		case p := <-ps.free:
			p.close()
		default:
			return
		}
	}
}
