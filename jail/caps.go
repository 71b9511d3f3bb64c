package jail

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// capLastCapPath holds the highest capability number this kernel knows;
// reading it (rather than a compiled-in constant) drops capabilities that
// are newer than this binary too.
const capLastCapPath = "/proc/sys/kernel/cap_last_cap"

// dropBoundingSet removes every capability from the calling thread's
// bounding set. Needs CAP_SETPCAP.
func dropBoundingSet() error {
	raw, err := readSmallFile(capLastCapPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", capLastCapPath, err)
	}
	last, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || last < 0 || last > 63 {
		return fmt.Errorf("read %s: bad value %q", capLastCapPath, raw)
	}
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_CAPBSET_DROP, %d): %w", c, err)
		}
	}
	return nil
}

// readSmallFile reads up to 64 bytes of path with plain syscalls. Jail
// mode must not open files through package os: on Linux the first os.Open
// initialises the Go netpoller, after which the runtime's sysmon thread
// may call epoll_pwait at any moment — also between loading a seccomp
// profile that does not allow it and execve, which kills the jail
// ("netpoll failed"). Without a netpoller, sysmon never polls.
func readSmallFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	buf := make([]byte, 64)
	n, err := unix.Read(fd, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// clearCapabilities empties the ambient set and then the inheritable,
// permitted and effective sets of the calling thread.
func clearCapabilities() error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_CAP_AMBIENT_CLEAR_ALL): %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // version 3 carries 64 bits in two words
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset(all empty): %w", err)
	}
	return nil
}
