package stages

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestRelayBudgetFollowsFDLimit: the relay cap shrinks with RLIMIT_NOFILE
// and keeps the reserve free.
func TestRelayBudgetFollowsFDLimit(t *testing.T) {
	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &orig) })
	for _, tc := range []struct {
		soft uint64
		want int
	}{
		{fdReserve + 600*fdsPerRelay, 600},
		{fdReserve + 100000*fdsPerRelay, DefaultMaxConns},
		{256, minRelays},
	} {
		if tc.soft > orig.Max {
			continue
		}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: tc.soft, Max: orig.Max}); err != nil {
			t.Fatal(err)
		}
		if got := relayBudget(DefaultMaxConns); got != tc.want {
			t.Errorf("soft limit %d: budget %d, want %d", tc.soft, got, tc.want)
		}
	}
}
