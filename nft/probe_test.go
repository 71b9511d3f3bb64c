package nft

import (
	"os"
	"strings"
	"testing"

	"github.com/forge/forge-supervisor/tests/netenv"
)

func TestProbeAsRoot(t *testing.T) {
	pair := netenv.NewPair(t)
	cfg := testConfig(t, pair.Agent)
	if err := Probe(cfg); err != nil {
		t.Fatalf("Probe as root: %v", err)
	}
	// Probe changes nothing.
	if got := listTables(t, pair.Agent); got != "" {
		t.Fatalf("Probe left tables behind: %q", got)
	}
	// The thread's own namespace (NetNS 0) works as well.
	cfg.NetNS = 0
	if err := pair.Agent.Do(func() error { return Probe(cfg) }); err != nil {
		t.Fatalf("Probe inside the namespace: %v", err)
	}
}

// TestProbeWithoutNetAdmin re-executes the test binary as root but without
// CAP_NET_ADMIN, the way an unprivileged container starts the supervisor.
func TestProbeWithoutNetAdmin(t *testing.T) {
	pair := netenv.NewPair(t)
	cmd := pair.Agent.Cmd("setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-net_admin", helperBinary(t))
	cmd.Env = append(os.Environ(), helperEnv+"=probe")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	got := strings.TrimSpace(string(out))
	want := "probe: nft: probe: CAP_NET_ADMIN is not in the effective capability set"
	if got != want {
		t.Fatalf("Probe without CAP_NET_ADMIN:\n got %q\nwant %q", got, want)
	}
}

func TestProbeRejectsBadNetNS(t *testing.T) {
	if err := Probe(Config{NetNS: -1}); err == nil || !strings.Contains(err.Error(), "netns fd -1 is negative") {
		t.Fatalf("Probe(NetNS -1) = %v", err)
	}
}

// TestProbeNotANamespace passes an fd that is not a network namespace: the
// error must say nf_tables could not be reached, not pretend success.
func TestProbeNotANamespace(t *testing.T) {
	netenv.RequireRoot(t)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = Probe(Config{NetNS: int(f.Fd())})
	if err == nil || !strings.Contains(err.Error(), "nf_tables") {
		t.Fatalf("Probe with /dev/null as netns = %v, want an nf_tables error", err)
	}
}
