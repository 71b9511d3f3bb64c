package nft

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Probe reports whether the kernel path is usable: CAP_NET_ADMIN in the
// effective set and nf_tables answering over netlink in cfg's namespace.
// The error names what is missing; the supervisor uses it to decide on the
// explicit-proxy fallback. Probe changes nothing.
func Probe(cfg Config) error {
	if cfg.NetNS < 0 {
		return fmt.Errorf("nft: probe: netns fd %d is negative", cfg.NetNS)
	}
	if err := netAdminEffective(); err != nil {
		return fmt.Errorf("nft: probe: %w", err)
	}
	c, err := connect(cfg)
	if err != nil {
		return fmt.Errorf("nft: probe: nf_tables unavailable: %w", err)
	}
	if _, err := c.ListTables(); err != nil {
		return fmt.Errorf("nft: probe: nf_tables not answering over netlink (kernel without nf_tables?): %w", err)
	}
	return nil
}

// errNoNetAdmin says the process cannot program netfilter.
var errNoNetAdmin = errors.New("CAP_NET_ADMIN is not in the effective capability set")

// netAdminEffective checks the calling thread's effective capabilities.
func netAdminEffective() error {
	ok, err := Effective(unix.CAP_NET_ADMIN)
	if err != nil {
		return err
	}
	if !ok {
		return errNoNetAdmin
	}
	return nil
}

// Effective reports whether capability (a unix.CAP_* number) is in the
// calling thread's effective set. The Go runtime keeps capabilities
// identical on all threads, so the answer is the process's.
func Effective(capability int) (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // version 3 uses two 32-bit words
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("capget: %w", err)
	}
	return data[capability/32].Effective&(1<<(capability%32)) != 0, nil
}
