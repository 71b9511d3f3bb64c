package stages

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestConnBudgetFollowsFDLimit: the connection cap shrinks with
// RLIMIT_NOFILE and keeps the reserve free.
func TestConnBudgetFollowsFDLimit(t *testing.T) {
	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &orig) })
	for _, tc := range []struct {
		soft uint64
		want int
	}{
		{fdReserveMax + 600*fdsPerConn, 600},
		{fdReserveMax + 100000*fdsPerConn, DefaultMaxConns},
		{256, (256 - 64) / fdsPerConn}, // a quarter reserved
		{64, minConns},
	} {
		if tc.soft > orig.Max {
			continue
		}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: tc.soft, Max: orig.Max}); err != nil {
			t.Fatal(err)
		}
		if got := connBudget(DefaultMaxConns); got != tc.want {
			t.Errorf("soft limit %d: budget %d, want %d", tc.soft, got, tc.want)
		}
	}
}
