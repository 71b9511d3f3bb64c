// Package netenv builds the small private worlds that end-to-end tests run
// in: network namespaces joined by a veth pair, with no route anywhere else.
// Every name is unique to the test process and removed in t.Cleanup, so
// tests can run in parallel and a crashed run never poisons the next.
//
// The safety rule of ../shared/TESTING.md holds by construction: a fresh
// namespace has no route out, so test traffic cannot leave the pair.
package netenv

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Fixed addresses of the two-namespace world (documentation ranges).
var (
	WorldV4 = netip.MustParseAddr("198.51.100.1")
	AgentV4 = netip.MustParseAddr("198.51.100.2")
	WorldV6 = netip.MustParseAddr("2001:db8::1")
	AgentV6 = netip.MustParseAddr("2001:db8::2")
	// World2V4/V6 are extra addresses on the world side, for "another
	// address in the world" (e.g. an allowed SNI sent to the wrong IP).
	World2V4 = netip.MustParseAddr("198.51.100.3")
	World2V6 = netip.MustParseAddr("2001:db8::3")
)

var seq atomic.Int64

// RequireRoot skips the test unless it runs as root with the ip(8) tool:
// namespaces, veth and nftables need both.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8) from iproute2 (installed by .ci/run)")
	}
}

// NS is a named network namespace (ip netns).
type NS struct {
	Name string
}

// Cmd returns a command that runs inside the namespace.
func (n NS) Cmd(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside the namespace and fails the test on error.
func (n NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.Cmd(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("netns %s: %s %s: %v\n%s", n.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Start starts a long-running command inside the namespace; it is killed
// and waited for in t.Cleanup. Its output goes to the returned buffer.
func (n NS) Start(t testing.TB, name string, args ...string) (*exec.Cmd, *SyncBuffer) {
	t.Helper()
	cmd := n.Cmd(name, args...)
	var out SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("netns %s: start %s: %v", n.Name, name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, &out
}

// Do runs fn on a locked OS thread that has joined the namespace, then
// returns the thread to the namespace it came from. Sockets created inside
// fn stay in the namespace and may be used from any goroutine afterwards.
// Goroutines started by fn do not inherit the namespace.
func (n NS) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netenv: open own netns: %w", err)
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/var/run/netns", n.Name))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netenv: open netns %s: %w", n.Name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netenv: setns %s: %w", n.Name, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is stuck in the wrong namespace: leave it locked so
		// the runtime destroys it when this goroutine ends.
		return fmt.Errorf("netenv: return from netns %s: %w", n.Name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// SetResolver makes `ip netns exec` bind-mount a resolv.conf naming ns as
// the namespace's /etc/resolv.conf.
func (n NS) SetResolver(t testing.TB, servers ...netip.Addr) {
	t.Helper()
	dir := filepath.Join("/etc/netns", n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("netenv: %v", err)
	}
	var b strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(b.String()), 0o644); err != nil {
		t.Fatalf("netenv: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
}

// Pair is a world namespace and an agent namespace joined by veth.
//
//	world  198.51.100.1/24 (+ .3)  2001:db8::1/64 (+ ::3)
//	agent  198.51.100.2/24         2001:db8::2/64
type Pair struct {
	World NS
	Agent NS
}

// NewPair creates the two namespaces, removed in t.Cleanup.
func NewPair(t testing.TB) *Pair {
	t.Helper()
	RequireRoot(t)
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, seq.Add(1))
	p := &Pair{World: NS{"fsw" + id}, Agent: NS{"fsa" + id}}
	for _, ns := range []NS{p.World, p.Agent} {
		ip(t, "netns", "add", ns.Name)
		name := ns.Name
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	}
	vw, va := "vw"+id, "va"+id
	ip(t, "link", "add", vw, "type", "veth", "peer", "name", va)
	ip(t, "link", "set", vw, "netns", p.World.Name)
	ip(t, "link", "set", va, "netns", p.Agent.Name)
	setup := func(ns NS, dev string, addrs ...string) {
		p := func(args ...string) { ns.Run(t, "ip", args...) }
		p("link", "set", "lo", "up")
		// No duplicate address detection: IPv6 addresses are usable at once.
		ns.Run(t, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
		p("link", "set", dev, "name", "eth0")
		for _, a := range addrs {
			p("addr", "add", a, "dev", "eth0", "nodad")
		}
		p("link", "set", "eth0", "up")
	}
	setup(p.World, vw, WorldV4.String()+"/24", World2V4.String()+"/24", WorldV6.String()+"/64", World2V6.String()+"/64")
	setup(p.Agent, va, AgentV4.String()+"/24", AgentV6.String()+"/64")
	// Default routes inside the pair only, so "any address" reaches the
	// world namespace and nothing else.
	p.Agent.Run(t, "ip", "route", "add", "default", "via", WorldV4.String())
	p.Agent.Run(t, "ip", "-6", "route", "add", "default", "via", WorldV6.String())
	waitLink(t, p.Agent)
	return p
}

func waitLink(t testing.TB, ns NS) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := ns.Cmd("ip", "-6", "addr", "show", "dev", "eth0", "tentative").CombinedOutput()
		if len(bytes.TrimSpace(out)) == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("netenv: %s: IPv6 addresses still tentative", ns.Name)
}

func ip(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// SyncBuffer is a bytes.Buffer safe for a writer process and a reading test.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
