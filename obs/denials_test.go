package obs

import (
	"fmt"
	"sync"
	"testing"
)

func TestDenialsRing(t *testing.T) {
	tests := []struct {
		name  string
		size  int
		adds  int
		limit int
		want  []string // reasons, newest first
	}{
		{name: "empty", size: 3, adds: 0, limit: 0, want: []string{}},
		{name: "partial", size: 3, adds: 2, limit: 0, want: []string{"r1", "r0"}},
		{name: "full", size: 3, adds: 3, limit: 0, want: []string{"r2", "r1", "r0"}},
		{name: "wrapped", size: 3, adds: 7, limit: 0, want: []string{"r6", "r5", "r4"}},
		{name: "limit", size: 3, adds: 7, limit: 2, want: []string{"r6", "r5"}},
		{name: "limit above count", size: 5, adds: 2, limit: 4, want: []string{"r1", "r0"}},
		{name: "size clamped to one", size: 0, adds: 2, limit: 0, want: []string{"r1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDenials(tt.size)
			for i := range tt.adds {
				d.Add(DenialEvent{Msg: MsgEgressDenied, Reason: fmt.Sprintf("r%d", i)})
			}
			got := d.Recent(tt.limit)
			if len(got) != len(tt.want) {
				t.Fatalf("Recent(%d) = %d events, want %d", tt.limit, len(got), len(tt.want))
			}
			for i, e := range got {
				if e.Reason != tt.want[i] {
					t.Errorf("event %d reason = %q, want %q", i, e.Reason, tt.want[i])
				}
			}
		})
	}
}

func TestDenialsSizeClampedToMax(t *testing.T) {
	if got := NewDenials(MaxDenialsSize * 4).Size(); got != MaxDenialsSize {
		t.Fatalf("Size() = %d, want %d", got, MaxDenialsSize)
	}
}

func TestDenialsConcurrent(t *testing.T) {
	const writers, perWriter = 8, 1000
	d := NewDenials(64)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				d.Add(DenialEvent{Msg: MsgDNSDenied, QName: fmt.Sprintf("w%d-%d.test.", w, i)})
				if i%100 == 0 {
					_ = d.Recent(10)
				}
			}
		})
	}
	wg.Wait()
	if got := len(d.Recent(0)); got != 64 {
		t.Fatalf("after %d adds Recent(0) has %d events, want 64", writers*perWriter, got)
	}
}
