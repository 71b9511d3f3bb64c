package stages

import "golang.org/x/sys/unix"

// File descriptors: each relay holds the client and upstream sockets and
// two splice pipes (two descriptors each).
const (
	fdsPerRelay = 6
	// fdReserve is kept out of the relay budget for everything else the
	// supervisor must still be able to open when relays are at their
	// maximum: the health server's and DNS proxy's sockets, upstream DNS
	// lookups, the listeners, connections waiting in classify, policy
	// files on reload.
	fdReserve = 1024
	// minRelays keeps a tiny fd limit usable rather than refusing to run.
	minRelays = 16
)

// relayBudget is the largest number of concurrent relays the process's
// RLIMIT_NOFILE allows while keeping fdReserve free, capped at want. Go
// raises the soft limit to the hard limit at startup, so the soft limit
// read here is what the process really has.
func relayBudget(want int) int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return min(want, minRelays)
	}
	if rl.Cur == unix.RLIM_INFINITY {
		return want
	}
	budget := (int64(rl.Cur) - fdReserve) / fdsPerRelay
	return int(max(min(int64(want), budget), minRelays))
}
