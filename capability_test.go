package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/kverdict"
	"github.com/forge/forge-supervisor/nft"
)

// TestFastPathNamesMissingNetRaw: without CAP_NET_RAW the supervisor says
// which capability is missing and what that costs, before it touches the
// kernel, and runs proxy-only. The capability is dropped from this thread's
// effective set only (the goroutine is locked to it), then restored.
func TestFastPathNamesMissingNetRaw(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: CAP_NET_RAW must be in the effective set to drop it")
	}
	runtime.LockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var saved [2]unix.CapUserData
	if err := unix.Capget(&hdr, &saved[0]); err != nil {
		t.Fatal(err)
	}
	if err := netRawEffective(); err != nil {
		t.Fatalf("as root: %v", err)
	}
	dropped := saved
	dropped[unix.CAP_NET_RAW/32].Effective &^= 1 << (unix.CAP_NET_RAW % 32)
	if err := unix.Capset(&hdr, &dropped[0]); err != nil {
		t.Fatal(err)
	}
	restore := func() {
		if err := unix.Capset(&hdr, &saved[0]); err != nil {
			// Leave the thread locked: it ends with this goroutine,
			// so no other test runs without the capability.
			t.Errorf("restore capabilities: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}
	defer restore()

	if err := netRawEffective(); !errors.Is(err, errNoNetRaw) {
		t.Errorf("without CAP_NET_RAW: %v, want errNoNetRaw", err)
	}
	core, logs := observer.New(zap.InfoLevel)
	// An invalid netns: should the check ever come after the probe, the
	// probe refuses it without touching this namespace's nf_tables.
	fp := fastPath(Config{FastPath: true}, nft.Config{NetNS: -1}, kverdict.NewMetrics(nil), zap.New(core))
	if fp != nil {
		t.Errorf("fast path chosen without CAP_NET_RAW")
	}
	w := logs.FilterMessage("fast_path_unavailable").All()
	if len(w) != 1 {
		t.Fatalf("%d fast_path_unavailable lines, want 1: %v", len(w), logs.All())
	}
	f := w[0].ContextMap()
	if e := fmt.Sprint(f["error"]); !strings.Contains(e, "CAP_NET_RAW is not in the effective capability set") {
		t.Errorf("error = %q, want it to name CAP_NET_RAW", e)
	}
	if f["effect"] != "every agent TCP connection takes the proxy" {
		t.Errorf("effect = %q", f["effect"])
	}
}
