package actors

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// reapResult is what one pass of the reaper found.
type reapResult struct {
	agentExited bool
	agentStatus unix.WaitStatus
	reaped      int // every child collected, the agent included
}

// reapAll collects every terminated child (the agent, and orphans reparented
// to us as PID 1 or subreaper) without blocking, and reports the agent's
// status when agentPid is among them. It stops when no terminated child is
// left (0 or ECHILD).
func reapAll(agentPid int) (reapResult, error) {
	var r reapResult
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			return r, nil
		case err != nil:
			return r, fmt.Errorf("wait4(-1, WNOHANG): %w", err)
		case pid <= 0:
			return r, nil
		}
		r.reaped++
		if pid == agentPid {
			r.agentExited, r.agentStatus = true, ws
		}
	}
}

// exitCode maps a wait status to a shell-style exit code: the exit status,
// or 128+N when killed by signal N.
func exitCode(ws unix.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	default:
		return 128 // neither exited nor signalled: cannot happen for wait4 without WUNTRACED
	}
}
