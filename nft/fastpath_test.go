package nft

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/netenv"
)

// TestProbeFastPath: the probe finds a queue flavour on this kernel and
// leaves no table behind.
func TestProbeFastPath(t *testing.T) {
	pair := netenv.NewPair(t)
	cfg := testConfig(t, pair.Agent)
	fp, err := ProbeFastPath(cfg, 7)
	if err != nil {
		t.Fatalf("ProbeFastPath: %v", err)
	}
	t.Logf("fast path: native queue %v", fp.NativeQueue)
	if got := listTables(t, pair.Agent); got != "" {
		t.Fatalf("probe left tables behind: %q", got)
	}
}

// TestFastPathInstallAndSets installs the table with the fast path and
// writes elements; nft lists them.
func TestFastPathInstallAndSets(t *testing.T) {
	pair := netenv.NewPair(t)
	cfg := testConfig(t, pair.Agent)
	fp, err := ProbeFastPath(cfg, 7)
	if err != nil {
		t.Fatal(err)
	}
	cfg.FastPath = &fp
	if err := Install(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Remove(cfg) })
	fs, err := OpenFastSets(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	add := []FastElem{
		{Dst: netip.MustParseAddrPort("198.51.100.1:443"), Timeout: time.Minute},
		{Dst: netip.MustParseAddrPort("[2001:db8::1]:443"), Timeout: time.Minute},
		{Dst: netip.MustParseAddrPort("198.51.100.1:22"), Open: true, Timeout: time.Minute},
	}
	if err := fs.Update(nil, add); err != nil {
		t.Fatal(err)
	}
	if err := fs.Update(add[:1], add[:1]); err != nil {
		t.Fatalf("replace an element: %v", err)
	}
	if err := fs.Heartbeat(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := fs.Heartbeat(3 * time.Second); err != nil {
		t.Fatalf("second heartbeat: %v", err)
	}
	out := pair.Agent.Run(t, "nft", "list", "table", "inet", cfg.Table)
	for _, want := range []string{"198.51.100.1 . 443", "2001:db8::1 . 443", "198.51.100.1 . 22", "elements = { tcp"} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, out)
		}
	}
	t.Log(out)
	if err := fs.Clear(); err != nil {
		t.Fatal(err)
	}
}
