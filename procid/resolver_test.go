package procid

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
)

func TestLookupFindsTheClient(t *testing.T) {
	r := newResolver(t)
	h := startHelper(t, "hold")
	src, dst, c := h.accept(t)
	defer c.Close()
	info, err := r.Lookup(context.Background(), tcp, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	if info.PID != h.cmd.Process.Pid || info.Exe != self || !info.Known() {
		t.Errorf("got pid %d exe %q, want pid %d exe %q", info.PID, info.Exe, h.cmd.Process.Pid, self)
	}
	if !slices.Equal(info.Cmdline, []string{self, "-helper-hold"}) {
		t.Errorf("cmdline %q", info.Cmdline)
	}
	if info.UID != uint32(os.Geteuid()) {
		t.Errorf("uid %d, want %d", info.UID, os.Geteuid())
	}
	// The helper's parent is this process, the resolver's own: the chain
	// stops below it.
	if len(info.Ancestors) != 0 {
		t.Errorf("ancestors %q, want none below the resolver's own process", info.Ancestors)
	}
	// Again: from the caches, the same answer.
	again, err := r.Lookup(context.Background(), tcp, src, dst)
	if err != nil || again.PID != info.PID || again.Exe != info.Exe {
		t.Errorf("second lookup: %+v %v", again, err)
	}
}

// The parent chain lists every executable up to the agent's first
// process, nearest first.
func TestLookupAncestors(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	r := newResolver(t)
	self, _ := os.Executable()
	// "; true" keeps the shell from exec'ing the last command itself.
	h := startHelper(t, "hold", sh, "-c", `"$0" -helper-hold; true`, self)
	r.SetRoot(h.cmd.Process.Pid)
	src, dst, c := h.accept(t)
	defer c.Close()
	info, err := r.Lookup(context.Background(), tcp, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	shExe, _ := os.Readlink("/proc/" + itoa(h.cmd.Process.Pid) + "/exe")
	if info.Exe != self || !slices.Equal(info.Ancestors, []string{shExe}) {
		t.Errorf("exe %q ancestors %q, want %q under [%q]", info.Exe, info.Ancestors, self, shExe)
	}
}

// A client that exits before the lookup has no identity, and says why.
func TestLookupOwnerExited(t *testing.T) {
	r := newResolver(t)
	h := startHelper(t, "exit")
	src, dst, c := h.accept(t)
	defer c.Close()
	if err := h.cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	info, err := r.Lookup(context.Background(), tcp, src, dst)
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("lookup after exit: %+v, %v; want ErrUnknown", info, err)
	}
	if info.Exe != "" || info.PID != 0 || info.Known() {
		t.Errorf("an exited owner kept an identity: %+v", info)
	}
	if info.Reason != ReasonOwnerExited && info.Reason != ReasonSocketNotFound {
		t.Errorf("reason %q, want %s or %s", info.Reason, ReasonOwnerExited, ReasonSocketNotFound)
	}
}

func TestLookupNoSocket(t *testing.T) {
	r := newResolver(t)
	info, err := r.Lookup(context.Background(), tcp, netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2"))
	if !errors.Is(err, ErrUnknown) || info.Reason != ReasonSocketNotFound {
		t.Errorf("%+v %v", info, err)
	}
}

func TestParseStat(t *testing.T) {
	// comm may hold spaces and parentheses: fields count from the last ")".
	line := "4242 (we) ird (x) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	st, err := parseStat([]byte(line))
	if err != nil || st.ppid != 17 || st.start != 987654 {
		t.Errorf("got %+v %v, want ppid 17 start 987654", st, err)
	}
	for _, bad := range []string{"", "4242 no comm", "1 (x) S 2 3", "1 (x) S notanumber 1 1 0 -1 0 0 0 0 0 0 0 0 0 0 0 1 0 5"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
}

func TestSplitCmdline(t *testing.T) {
	if got := splitCmdline([]byte("curl\x00-s\x00https://x/\x00")); !slices.Equal(got, []string{"curl", "-s", "https://x/"}) {
		t.Errorf("got %q", got)
	}
	if got := splitCmdline(nil); got != nil {
		t.Errorf("empty: %q", got)
	}
	many := make([]byte, 0, 300)
	for range 100 {
		many = append(many, 'a', 0)
	}
	if got := splitCmdline(many); len(got) != maxCmdlineArgs {
		t.Errorf("%d args, want the cap %d", len(got), maxCmdlineArgs)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// The resolver's own threads are never scanned as candidate owners.
func TestOwnThreadsSkipped(t *testing.T) {
	r := newResolver(t)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		if !r.fs.isThreadOf(r.self, tid) {
			t.Errorf("thread %d of %d not recognised", tid, r.self)
		}
	}
	if r.fs.isThreadOf(r.self, 1) {
		t.Error("pid 1 taken for a thread of this process")
	}
}
