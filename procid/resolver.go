package procid

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/forge/forge-supervisor/sockdiag"
)

// Cache bounds. Each says why that size.
const (
	// maxProcs bounds the pid → process cache: more than the agent's
	// pids_limit in any sane deployment; when full it is emptied and
	// refilled from what is still alive.
	maxProcs = 4096
	// maxInodes bounds the inode → pid hints: a busy agent holds a few
	// thousand sockets at most.
	maxInodes = 16384
	// recentOwners is how many recent socket owners are searched first:
	// most connections come from a handful of long-lived clients.
	recentOwners = 8
	// fdGuesses is how many descriptor numbers per process are tried
	// before its descriptors are listed: the socket descriptors of the
	// last scan and the one after the highest (a client that closes and
	// reconnects, or opens one more, lands there).
	fdGuesses = 8
	// newPIDWindow is how many pids below the namespace's last pid are
	// probed directly (/proc/PID/fd, no listing of /proc) for a new
	// process: listing 500 processes costs hundreds of microseconds,
	// probing a missing pid one failed open.
	newPIDWindow = 64
	// maxAncestors bounds the parent chain (a fork bomb's depth is not
	// worth walking; the agent's first process is normally a few levels up).
	maxAncestors = 32
)

// Resolver finds socket owners. It is safe for concurrent use; its caches
// are its own (no global state).
type Resolver struct {
	diag *sockdiag.Client
	fs   procFS
	self int          // the supervisor itself: it holds the other end of every proxied socket, never an agent socket
	root atomic.Int64 // the agent's first process; 0 until SetRoot

	mu     sync.Mutex
	procs  map[int]proc   // pid → what was read, valid while start matches
	inodes map[uint64]int // inode → the pid seen holding it (a hint, verified on use)
	recent []int          // recent owners, most recent first
	fds    map[int][]int  // pid → descriptor numbers to try first (see fdGuesses)
}

// proc is the cached identity of one process. A pid is reused after its
// process exits; start (stat field 22, and the stack address for two
// processes started in the same tick) tells a new process from the old,
// and exe is re-read each time, since execve keeps pid and start.
type proc struct {
	start   uint64
	stack   uint64
	ppid    int
	exe     string
	cmdline []string
	// ancestors were walked for parent ancPPID; a new walk is needed only
	// when the process was reparented (its parent exited).
	ancestors []string
	ancPPID   int
}

// Options configure New.
type Options struct {
	// ProcRoot is where proc is mounted; "/proc" when empty.
	ProcRoot string
	// Diag is the sock_diag client; New opens one when nil.
	Diag *sockdiag.Client
}

// New returns a Resolver for the network namespace and PID namespace the
// calling process is in (the agent's, when the supervisor is PID 1 in its
// container).
func New(opts Options) (*Resolver, error) {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.Diag == nil {
		d, err := sockdiag.New()
		if err != nil {
			return nil, err
		}
		opts.Diag = d
	}
	return &Resolver{
		diag:   opts.Diag,
		fs:     procFS{root: opts.ProcRoot},
		self:   os.Getpid(),
		procs:  make(map[int]proc),
		inodes: make(map[uint64]int),
		fds:    make(map[int][]int),
	}, nil
}

// Close releases the sock_diag sockets.
func (r *Resolver) Close() error { return r.diag.Close() }

// SetRoot names the agent's first process: the parent chain stops there.
// Until it is set the chain stops below the supervisor and pid 1.
func (r *Resolver) SetRoot(pid int) { r.root.Store(int64(pid)) }

// Lookup identifies the process owning the local socket that sends from
// src to dst (for a redirected connection: the client's address and the
// original destination; for a UDP DNS query: the client's address, dst
// may be the zero AddrPort). When the owner cannot be identified the
// error wraps ErrUnknown and Info.Reason says why.
func (r *Resolver) Lookup(ctx context.Context, proto sockdiag.Proto, src, dst netip.AddrPort) (Info, error) {
	sock, err := r.diag.Find(proto, src, dst)
	switch {
	case errors.Is(err, sockdiag.ErrNotFound):
		return unknown(ReasonSocketNotFound, "no %s socket %s→%s", proto, src, dst)
	case errors.Is(err, sockdiag.ErrAmbiguous):
		return unknown(ReasonAmbiguous, "%s %s→%s: %v", proto, src, dst, err)
	case err != nil:
		return unknown(ReasonLookupFailed, "%v", err)
	case sock.Inode == 0:
		return unknown(ReasonOwnerExited, "%s socket %s→%s has no owner (state %d)", proto, src, dst, sock.State)
	}
	pid, err := r.owner(ctx, uint64(sock.Inode))
	if err != nil {
		return unknown(ReasonLookupFailed, "owner of socket inode %d: %v", sock.Inode, err)
	}
	if pid == 0 {
		return unknown(ReasonOwnerNotFound, "no process holds socket inode %d", sock.Inode)
	}
	p, err := r.process(pid)
	if err != nil {
		return unknown(ReasonOwnerNotFound, "owner %d of socket inode %d: %v", pid, sock.Inode, err)
	}
	r.noteRecent(pid)
	return Info{PID: pid, Exe: p.exe, Cmdline: p.cmdline, UID: sock.UID, Ancestors: r.lineage(pid, p)}, nil
}

// owner finds the pid holding inode, 0 when none does. The search order
// makes the common cases cheap: the pid last seen holding this inode,
// then recent owners, then the pids handed out most recently (a fresh
// client such as a curl just started), then every process from the
// newest pid down.
func (r *Resolver) owner(ctx context.Context, ino uint64) (int, error) {
	r.mu.Lock()
	hint := r.inodes[ino]
	candidates := append(make([]int, 0, recentOwners+1), r.recent...)
	r.mu.Unlock()
	if hint != 0 {
		candidates = append([]int{hint}, candidates...)
	}
	tried := make(map[int]bool, len(candidates))
	for _, pid := range candidates {
		if tried[pid] {
			continue
		}
		tried[pid] = true
		if r.check(pid, ino) {
			return pid, nil
		}
	}
	if last, err := r.fs.lastPID(); err == nil {
		for pid := last; pid > max(1, last-newPIDWindow); pid-- {
			// A probed id may be one of the supervisor's own threads,
			// whose descriptor table holds every proxied connection.
			if tried[pid] || pid == r.self || r.fs.isThreadOf(r.self, pid) {
				continue
			}
			tried[pid] = true
			if r.scan(pid, ino, false) {
				return r.fs.tgid(pid) // pid may be a thread's id
			}
		}
	}
	pids, err := r.fs.pids()
	if err != nil {
		return 0, err
	}
	slices.Sort(pids)
	for i := len(pids) - 1; i >= 0; i-- {
		pid := pids[i]
		if tried[pid] || pid == r.self {
			continue
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if r.check(pid, ino) {
			return pid, nil
		}
	}
	return 0, nil
}

// check scans pid's descriptors for ino and records the socket inodes it
// sees as hints for later lookups.
func (r *Resolver) check(pid int, ino uint64) bool {
	return r.scan(pid, ino, true)
}

// scan is check with the hints optional: a pid probed by number may be a
// thread's id, which must not become a hint (hints are processes).
func (r *Resolver) scan(pid int, ino uint64, hint bool) bool {
	if !hint {
		ok, _ := r.fs.holds(pid, ino, nil)
		return ok
	}
	// The descriptors a previous scan suggests, one stat each, before
	// listing them all: an exact inode match is proof, a miss costs little.
	r.mu.Lock()
	guesses := r.fds[pid]
	r.mu.Unlock()
	for _, fd := range guesses {
		if r.fs.holdsAt(pid, fd, ino) {
			return true
		}
	}
	var seen []uint64
	var sockFDs []int
	maxFD := -1
	ok, _ := r.fs.holds(pid, ino, func(fd int, i uint64) {
		seen = append(seen, i)
		sockFDs = append(sockFDs, fd)
		maxFD = max(maxFD, fd)
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.inodes)+len(seen) > maxInodes {
		clear(r.inodes)
	}
	for _, i := range seen {
		r.inodes[i] = pid
	}
	if len(r.fds) >= maxProcs {
		clear(r.fds)
	}
	if n := len(sockFDs); n >= fdGuesses {
		sockFDs = sockFDs[n-fdGuesses+1:]
	}
	r.fds[pid] = append(sockFDs, maxFD+1)
	return ok
}

// process returns pid's identity, from the cache when the cached entry
// is for the same process (same start time) running the same executable.
func (r *Resolver) process(pid int) (proc, error) {
	st, err := r.fs.readStat(pid)
	if err != nil {
		return proc{}, err
	}
	exe, err := r.fs.readExe(pid)
	if err != nil {
		return proc{}, err
	}
	r.mu.Lock()
	p, ok := r.procs[pid]
	r.mu.Unlock()
	if ok && p.start == st.start && p.stack == st.stack && p.exe == exe {
		p.ppid = st.ppid // reparented when its parent exited
		return p, nil
	}
	cmd, err := r.fs.readCmdline(pid)
	if err != nil {
		return proc{}, err
	}
	p = proc{start: st.start, stack: st.stack, ppid: st.ppid, exe: exe, cmdline: cmd}
	r.mu.Lock()
	if len(r.procs) >= maxProcs {
		clear(r.procs)
	}
	r.procs[pid] = p
	r.mu.Unlock()
	return p, nil
}

// lineage is p's ancestors: from the cache while p keeps its parent, else
// walked and cached.
func (r *Resolver) lineage(pid int, p proc) []string {
	if p.ancPPID == p.ppid && p.ancPPID != 0 {
		return p.ancestors
	}
	anc := r.ancestors(p.ppid)
	r.mu.Lock()
	if c, ok := r.procs[pid]; ok && c.start == p.start && c.stack == p.stack {
		c.ancestors, c.ancPPID = anc, p.ppid
		r.procs[pid] = c
	}
	r.mu.Unlock()
	return anc
}

// ancestors walks the parent chain from ppid: executables, nearest first,
// ending with the agent's first process. It stops below pid 1 and the
// supervisor, and at a parent that exited meanwhile.
func (r *Resolver) ancestors(ppid int) []string {
	root := int(r.root.Load())
	var out []string
	for pid := ppid; pid > 1 && pid != r.self && len(out) < maxAncestors; {
		p, err := r.process(pid)
		if err != nil {
			break
		}
		out = append(out, p.exe)
		if pid == root {
			break
		}
		pid = p.ppid
	}
	return out
}

func (r *Resolver) noteRecent(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := slices.Index(r.recent, pid); i >= 0 {
		r.recent = slices.Delete(r.recent, i, i+1)
	}
	r.recent = slices.Insert(r.recent, 0, pid)
	if len(r.recent) > recentOwners {
		r.recent = r.recent[:recentOwners]
	}
}
