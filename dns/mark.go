package dns

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// markControl returns a net.Dialer Control function that sets SO_MARK on
// every upstream socket before it connects, so the supervisor's own queries
// match the nftables exemption and are never redirected back to itself.
// Mark 0 means no mark. Setting it needs CAP_NET_ADMIN; failing to set it
// fails the dial rather than sending an unmarked query.
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(network, address string, c syscall.RawConn) error {
		var sockErr error
		err := c.Control(func(fd uintptr) {
			sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		})
		if err != nil {
			return fmt.Errorf("dns: upstream socket %s %s: %w", network, address, err)
		}
		if sockErr != nil {
			return fmt.Errorf("dns: setsockopt SO_MARK=%#x on %s %s: %w", mark, network, address, sockErr)
		}
		return nil
	}
}
