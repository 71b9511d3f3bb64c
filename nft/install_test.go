package nft

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/forge/forge-supervisor/tests/netenv"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// foreignRuleset stands for what Docker (iptables-nft) and Kubernetes leave
// in a container's namespace. Install and Remove must not change it.
const foreignRuleset = `
table ip docker_like {
	chain out {
		type nat hook output priority -100; policy accept;
		ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:5353
		ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:5353
	}
}
table inet k8s_like {
	chain output {
		type filter hook output priority 0; policy accept;
		meta mark & 0x00004000 == 0x00004000 counter accept
	}
}
`

func addForeignTables(t *testing.T, ns netenv.NS) {
	t.Helper()
	cmd := ns.Cmd("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(foreignRuleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v\n%s", err, out)
	}
}

func listTable(t *testing.T, ns netenv.NS, family, name string) string {
	t.Helper()
	return ns.Run(t, "nft", "list", "table", family, name)
}

func listTables(t *testing.T, ns netenv.NS) string {
	t.Helper()
	return ns.Run(t, "nft", "list", "tables")
}

// TestInstallReadBack reads the installed table back over netlink and
// compares chains and every rule's expressions with what Rules says.
func TestInstallReadBack(t *testing.T) {
	pair := netenv.NewPair(t)
	cfg := testConfig(t, pair.Agent)
	if err := Install(cfg); err != nil {
		t.Fatal(err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(cfg.NetNS))
	if err != nil {
		t.Fatal(err)
	}
	table, err := c.ListTableOfFamily(cfg.Table, nftables.TableFamilyINet)
	if err != nil {
		t.Fatalf("table not found: %v", err)
	}
	want, err := Rules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	var got []*nftables.Chain
	for _, ch := range chains {
		if ch.Table.Name == cfg.Table {
			got = append(got, ch)
		}
	}
	plan := ruleset(cfg)
	if len(got) != len(plan) {
		t.Fatalf("kernel has %d chains in the table, want %d", len(got), len(plan))
	}
	for _, p := range plan {
		var ch *nftables.Chain
		for _, g := range got {
			if g.Name == p.chain.Name {
				ch = g
			}
		}
		if ch == nil {
			t.Fatalf("chain %s missing", p.chain.Name)
		}
		if ch.Type != p.chain.Type {
			t.Errorf("chain %s: type %q, want %q", ch.Name, ch.Type, p.chain.Type)
		}
		if !reflect.DeepEqual(ch.Hooknum, p.chain.Hooknum) || !reflect.DeepEqual(ch.Priority, p.chain.Priority) {
			t.Errorf("chain %s: hook %v priority %v, want %v %v", ch.Name, deref(ch.Hooknum), deref(ch.Priority), deref(p.chain.Hooknum), deref(p.chain.Priority))
		}
		if !reflect.DeepEqual(ch.Policy, p.chain.Policy) {
			t.Errorf("chain %s: policy %v, want %v", ch.Name, deref(ch.Policy), deref(p.chain.Policy))
		}
		rules, err := c.GetRules(table, ch)
		if err != nil {
			t.Fatal(err)
		}
		if len(rules) != len(want[ch.Name]) {
			t.Fatalf("chain %s: %d rules, want %d", ch.Name, len(rules), len(want[ch.Name]))
		}
		for i, r := range rules {
			if !reflect.DeepEqual(r.Exprs, want[ch.Name][i]) {
				t.Errorf("chain %s rule %d:\n got %s\nwant %s", ch.Name, i, dump(r.Exprs), dump(want[ch.Name][i]))
			}
		}
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// dump prints an expression list one expression after another.
func dump(es []expr.Any) string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = fmt.Sprintf("%T%+v", e, e)
	}
	return strings.Join(parts, " ")
}

// TestInstallGolden compares `nft list table` with testdata/ruleset.golden.
// Run with -update to rewrite it after an intended change, and review the
// diff like code.
func TestInstallGolden(t *testing.T) {
	pair := netenv.NewPair(t)
	cfg := testConfig(t, pair.Agent)
	if err := Install(cfg); err != nil {
		t.Fatal(err)
	}
	got := listTable(t, pair.Agent, "inet", DefaultTable)
	path := filepath.Join("testdata", "ruleset.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("installed ruleset differs from %s (rerun with -update if intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestForeignTablesUntouched installs and removes our table next to
// Docker-like and Kubernetes-like tables and compares their listings byte
// for byte.
func TestForeignTablesUntouched(t *testing.T) {
	pair := netenv.NewPair(t)
	addForeignTables(t, pair.Agent)
	cfg := testConfig(t, pair.Agent)
	before := map[string]string{
		"ip docker_like": listTable(t, pair.Agent, "ip", "docker_like"),
		"inet k8s_like":  listTable(t, pair.Agent, "inet", "k8s_like"),
	}
	check := func(stage string) {
		t.Helper()
		for name, want := range before {
			family, table, _ := strings.Cut(name, " ")
			if got := listTable(t, pair.Agent, family, table); got != want {
				t.Errorf("after %s, table %s changed:\n--- got\n%s\n--- want\n%s", stage, name, got, want)
			}
		}
	}
	if err := Install(cfg); err != nil {
		t.Fatal(err)
	}
	check("Install")
	if err := Install(cfg); err != nil {
		t.Fatal(err)
	}
	check("second Install")
	if err := Remove(cfg); err != nil {
		t.Fatal(err)
	}
	check("Remove")
	if got, want := listTables(t, pair.Agent), "table ip docker_like\ntable inet k8s_like\n"; got != want {
		t.Errorf("tables after Remove:\n%s\nwant\n%s", got, want)
	}
}

// TestInstallReplacesAndRemove covers the lifecycle: a stale table with
// different contents is replaced by exactly one table, Remove removes it,
// and Remove of an absent table succeeds.
func TestInstallReplacesAndRemove(t *testing.T) {
	pair := netenv.NewPair(t)
	cfg := testConfig(t, pair.Agent)

	// A stale table from a crashed run, with a different config and an
	// extra chain the new install must not inherit.
	stale := cfg
	stale.ProxyPort, stale.DNSPort = 25001, 25002
	if err := Install(stale); err != nil {
		t.Fatal(err)
	}
	pair.Agent.Run(t, "nft", "add", "chain", "inet", DefaultTable, "leftover")

	if err := Install(cfg); err != nil {
		t.Fatal(err)
	}
	if err := Install(cfg); err != nil {
		t.Fatal(err)
	}
	if got, want := listTables(t, pair.Agent), "table inet forge_supervisor\n"; got != want {
		t.Fatalf("tables after installing twice:\n%s\nwant\n%s", got, want)
	}
	listing := listTable(t, pair.Agent, "inet", DefaultTable)
	for _, stalePart := range []string{"leftover", ":25001", ":25002"} {
		if strings.Contains(listing, stalePart) {
			t.Errorf("stale %q survived the reinstall:\n%s", stalePart, listing)
		}
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "ruleset.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if listing != string(golden) {
		t.Errorf("reinstalled table differs from the golden file:\n%s", listing)
	}

	if err := Remove(cfg); err != nil {
		t.Fatal(err)
	}
	if got := listTables(t, pair.Agent); got != "" {
		t.Fatalf("tables after Remove: %q", got)
	}
	if err := Remove(cfg); err != nil {
		t.Fatalf("Remove of an absent table: %v", err)
	}
	if got := listTables(t, pair.Agent); got != "" {
		t.Fatalf("tables after second Remove: %q", got)
	}
}

// TestInstallInsideDo programs the namespace the calling thread is in
// (NetNS 0), the way a supervisor running inside its container does.
func TestInstallInsideDo(t *testing.T) {
	pair := netenv.NewPair(t)
	cfg := testConfig(t, pair.Agent)
	cfg.NetNS = 0
	if err := pair.Agent.Do(func() error { return Install(cfg) }); err != nil {
		t.Fatal(err)
	}
	if got, want := listTables(t, pair.Agent), "table inet forge_supervisor\n"; got != want {
		t.Fatalf("tables: %q, want %q", got, want)
	}
	if got := listTables(t, pair.World); got != "" {
		t.Fatalf("the world namespace got tables: %q", got)
	}
	if err := pair.Agent.Do(func() error { return Remove(cfg) }); err != nil {
		t.Fatal(err)
	}
	if got := listTables(t, pair.Agent); got != "" {
		t.Fatalf("tables after Remove: %q", got)
	}
}

// TestCreateRacesWithStaleTable covers the window between Install's check
// and its batch: if a table appears, the exclusive create fails whole with
// EEXIST (the appeared table untouched) and the replacing batch wins.
func TestCreateRacesWithStaleTable(t *testing.T) {
	pair := netenv.NewPair(t)
	cfg := testConfig(t, pair.Agent)
	pair.Agent.Run(t, "nft", "add", "table", "inet", DefaultTable)
	pair.Agent.Run(t, "nft", "add", "chain", "inet", DefaultTable, "leftover")
	before := listTable(t, pair.Agent, "inet", DefaultTable)

	c, err := connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := createTable(c, cfg); !errors.Is(err, unix.EEXIST) {
		t.Fatalf("createTable over an existing table = %v, want EEXIST", err)
	}
	if got := listTable(t, pair.Agent, "inet", DefaultTable); got != before {
		t.Fatalf("failed create changed the table:\n%s", got)
	}
	if err := replaceTable(c, cfg); err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "ruleset.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if got := listTable(t, pair.Agent, "inet", DefaultTable); got != string(golden) {
		t.Fatalf("replaced table differs from the golden file:\n%s", got)
	}
}
