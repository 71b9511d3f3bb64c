package bufpool

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestBuffersReuseAndSize(t *testing.T) {
	b := NewBuffers(4096)
	buf := b.Get()
	if len(*buf) != 4096 {
		t.Fatalf("len = %d, want 4096", len(*buf))
	}
	*buf = (*buf)[:10]
	b.Put(buf)
	again := b.Get()
	if len(*again) != 4096 {
		t.Fatalf("reused buffer len = %d, want 4096 (Put must restore length)", len(*again))
	}
	foreign := make([]byte, 10)
	b.Put(&foreign) // dropped, not pooled
}

func TestPipesBoundedAndEmptyOnly(t *testing.T) {
	ps := NewPipes(1)
	p1, err := ps.Get()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := ps.Get()
	if err != nil {
		t.Fatal(err)
	}
	ps.Put(p1)
	ps.Put(p2) // pool full: closed
	if _, err := unix.FcntlInt(uintptr(p2.R), unix.F_GETFD, 0); err == nil {
		t.Errorf("pipe past the idle bound was not closed")
	}
	p3, _ := ps.Get()
	if p3 != p1 {
		t.Errorf("idle pipe not reused")
	}
	p3.Buffered = 5
	ps.Put(p3) // not empty: closed, never reused
	if _, err := unix.FcntlInt(uintptr(p3.R), unix.F_GETFD, 0); err == nil {
		t.Errorf("non-empty pipe was pooled")
	}
	ps.Close()
}
