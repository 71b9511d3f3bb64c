package jail

import (
	"fmt"
	"os"
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
	raw, err := os.ReadFile(capLastCapPath)
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
