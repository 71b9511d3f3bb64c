package kverdict

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// tfoClientNoCookie is TFO_CLIENT_NO_COOKIE in net.ipv4.tcp_fastopen: the
// kernel then sends data in a SYN without a Fast Open option, which the
// fast-path rules could not tell from a plain SYN.
const tfoClientNoCookie = 0x4

// CheckKernel reports what, beyond nft (nft.ProbeFastPath), rules the fast
// path out in this network namespace: SYN data without a TFO option.
func CheckKernel() error {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_fastopen")
	if err != nil {
		return nil // no TFO support at all: nothing to rule out
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 32)
	if err != nil {
		return fmt.Errorf("kverdict: net.ipv4.tcp_fastopen = %q: %w", strings.TrimSpace(string(b)), err)
	}
	if v&tfoClientNoCookie != 0 {
		return fmt.Errorf("kverdict: net.ipv4.tcp_fastopen = %#x has TFO_CLIENT_NO_COOKIE: SYNs may carry data without a Fast Open option, which the fast path cannot see", v)
	}
	return nil
}
