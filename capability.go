package main

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/nft"
)

// errNoNetRaw names the missing capability and what it costs.
var errNoNetRaw = errors.New("CAP_NET_RAW is not in the effective capability set: the kernel verdict path's raw sockets " +
	"(resets to a denied flow's server, acknowledgements of held segments) need it; add NET_RAW to the container's capabilities")

// netRawEffective checks for CAP_NET_RAW in the effective set, which
// kverdict's IPPROTO_RAW sockets need. The Go runtime keeps capabilities
// identical on all threads, so the calling thread's answer is the
// process's.
func netRawEffective() error {
	ok, err := nft.Effective(unix.CAP_NET_RAW)
	if err != nil {
		return err
	}
	if !ok {
		return errNoNetRaw
	}
	return nil
}
