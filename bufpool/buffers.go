// Package bufpool pools the memory and kernel objects that relaying needs:
// byte buffers (as *[]byte, so Put does not allocate) and splice pipes.
// Every Get has its Put in the same function.
package bufpool

import "sync"

// Buffers is a pool of byte slices of one size.
type Buffers struct {
	size int
	pool sync.Pool
}

// NewBuffers returns a pool of size-byte buffers.
func NewBuffers(size int) *Buffers {
	b := &Buffers{size: size}
	b.pool.New = func() any {
		buf := make([]byte, size)
		return &buf
	}
	return b
}

// Get returns a buffer of the pool's size.
func (b *Buffers) Get() *[]byte {
	return b.pool.Get().(*[]byte)
}

// Put returns buf to the pool. Buffers of another size are dropped.
func (b *Buffers) Put(buf *[]byte) {
	if buf == nil || cap(*buf) != b.size {
		return
	}
	*buf = (*buf)[:b.size]
	b.pool.Put(buf)
}

// Size is the length of the pool's buffers.
func (b *Buffers) Size() int { return b.size }
