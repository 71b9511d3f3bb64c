// Package procid finds which process owns an agent-side socket: from the
// socket's addresses to its inode and uid (sock_diag netlink), from the
// inode to the pid holding it (/proc/PID/fd), and from the pid to the
// executable, command line and parent chain (/proc/PID/exe, cmdline, stat).
//
// The answer is a snapshot taken when the supervisor decides: a process
// that exited before that has no identity (Info.Reason says why), and the
// caller fails closed. Identity is what the kernel reports about the
// program image a process runs; a process of the agent's uid can still
// run foreign code inside an allowed binary (LD_PRELOAD, writing another
// process's /proc/PID/mem) or hand its socket to one, so identity is an
// attribution and a guard for cooperative tools, not a boundary against
// code the agent controls (see docs/rego.md).
package procid

import (
	"errors"
	"fmt"
)

// Info is the identity of the process that owns a socket.
type Info struct {
	PID int
	// Exe is /proc/PID/exe: the path of the program image, "" when the
	// owner is unknown. A binary deleted after it started reads
	// "/path (deleted)", which matches no rule.
	Exe string
	// Cmdline is /proc/PID/cmdline split at NULs, at most maxCmdlineArgs
	// arguments of maxCmdlineBytes in all. The process can rewrite it.
	// Cmdline and Ancestors are shared with the cache: do not modify them.
	Cmdline []string
	// UID is the socket's owner uid as sock_diag reports it.
	UID uint32
	// Ancestors are the executables of the parent chain, nearest first,
	// up to and including the agent's first process (see SetRoot), as
	// they were when the process was first looked up (walked again only
	// when it is reparented).
	Ancestors []string
	// Reason is "" when the owner was found, else one of the Reason*
	// words: why Exe is "".
	Reason string
}

// Known reports whether the owning process was found.
func (i Info) Known() bool { return i.Reason == "" }

// Reasons why an identity is unknown. They are stable words for audit
// events and policy rules.
const (
	// ReasonSocketNotFound: no socket with these addresses exists any more
	// (closed and gone) or never did.
	ReasonSocketNotFound = "socket_not_found"
	// ReasonOwnerExited: the socket exists but no process holds it (inode
	// 0): its owner closed it or exited, and the kernel keeps it only to
	// finish the connection.
	ReasonOwnerExited = "owner_exited"
	// ReasonOwnerNotFound: the socket has an inode but no visible process
	// holds it: its owner exited during the lookup, or lives outside this
	// PID namespace.
	ReasonOwnerNotFound = "owner_not_found"
	// ReasonAmbiguous: several sockets fit the addresses equally well.
	ReasonAmbiguous = "socket_ambiguous"
	// ReasonLookupFailed: sock_diag or /proc failed (the error says how),
	// or the lookup ran out of time.
	ReasonLookupFailed = "lookup_failed"
)

// ErrUnknown is wrapped by every error Lookup returns for an owner it
// could not identify; Info.Reason then says which case it was.
var ErrUnknown = errors.New("procid: owner unknown")

func unknown(reason string, format string, args ...any) (Info, error) {
	return Info{Reason: reason}, fmt.Errorf("%w (%s): %s", ErrUnknown, reason, fmt.Sprintf(format, args...))
}
