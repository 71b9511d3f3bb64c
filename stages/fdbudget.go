package stages

import "golang.org/x/sys/unix"

// File descriptors: a connection inside the engine holds its client
// socket, and once relaying also the upstream socket and two splice pipes
// (two descriptors each).
const (
	fdsPerConn = 6
	// fdReserveMax is kept out of the connection budget for everything else
	// the supervisor must still be able to open when the engine is full:
	// the health server's and DNS proxy's sockets, upstream DNS lookups,
	// policy files on reload. Small limits reserve a quarter instead.
	fdReserveMax = 1024
	// minConns keeps a tiny fd limit usable rather than refusing to run.
	minConns = 16
)

// connBudget is the largest number of connections the engine may hold at
// once (queued in a stage or relaying) so that it never runs out of file
// descriptors, capped at want. Go raises the soft RLIMIT_NOFILE to the hard
// limit at startup, so the soft limit read here is what the process has.
func connBudget(want int) int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return min(want, minConns)
	}
	if rl.Cur == unix.RLIM_INFINITY {
		return want
	}
	limit := int64(rl.Cur)
	reserve := min(fdReserveMax, limit/4)
	budget := (limit - reserve) / fdsPerConn
	return int(max(min(int64(want), budget), minConns))
}
