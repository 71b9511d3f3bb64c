package main

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// errNoNetRaw names the missing capability and what it costs.
var errNoNetRaw = errors.New("CAP_NET_RAW is not in the effective capability set: the kernel verdict path's raw sockets " +
	"(resets to a denied flow's server, acknowledgements of held segments) need it; add NET_RAW to the container's capabilities")

// netRawEffective checks for CAP_NET_RAW in the effective set, which
// kverdict's IPPROTO_RAW sockets need. The Go runtime keeps capabilities
// identical on all threads, so the calling thread's answer is the
// process's.
func netRawEffective() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // version 3 uses two 32-bit words
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	if data[unix.CAP_NET_RAW/32].Effective&(1<<(unix.CAP_NET_RAW%32)) == 0 {
		return errNoNetRaw
	}
	return nil
}
