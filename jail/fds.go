package jail

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// closeStrayFDs marks every fd above stderr close-on-exec. close_range with
// CLOSE_RANGE_CLOEXEC (Linux 5.11) does it in one call; older kernels (or a
// profile that denies close_range) fall back to fcntl on each open fd.
func closeStrayFDs() error {
	err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	entries, rerr := os.ReadDir("/proc/self/fd")
	if rerr != nil {
		return fmt.Errorf("close_range(3, ~0, CLOEXEC): %v; list /proc/self/fd: %w", err, rerr)
	}
	for _, e := range entries {
		fd, convErr := strconv.Atoi(e.Name())
		if convErr != nil || fd <= 2 {
			continue
		}
		if _, ferr := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); ferr != nil && ferr != unix.EBADF {
			return fmt.Errorf("fcntl(%d, F_SETFD, FD_CLOEXEC): %w", fd, ferr)
		}
	}
	return nil
}
