package procid

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestPIDReuse: a pid that comes back for a new process — same executable,
// other command line — must not be answered from the cache of the old one.
// It runs in a PID namespace of its own, where nothing else forks, so the
// pid can be made to come back (ns_last_pid).
func TestPIDReuse(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a new PID namespace and writing ns_last_pid")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare (util-linux)")
	}
	self, _ := os.Executable()
	cmd := exec.Command(unshare, "--pid", "--fork", "--mount-proc", self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "PROCID_HELPER=pidreuse")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pid reuse scenario: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// pidReuseMain is TestPIDReuse's body, as PID 1 of the new namespace.
func pidReuseMain() int {
	t := nsT{}
	r, err := New(Options{})
	if err != nil {
		fmt.Println("resolver:", err)
		return 1
	}
	self, _ := os.Executable()
	first := startHelper(t, "hold", self, "-helper-hold", "first")
	pid := first.cmd.Process.Pid
	src, dst, c := first.accept(t)
	info, err := r.Lookup(context.Background(), tcp, src, dst)
	if err != nil || !slices.Equal(info.Cmdline, []string{self, "-helper-hold", "first"}) {
		fmt.Printf("first lookup: %+v %v\n", info, err)
		return 1
	}
	c.Close()
	first.stdin.Close()
	first.cmd.Wait()

	// The next fork gets pid again.
	for try := 0; ; try++ {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			fmt.Println("ns_last_pid:", err)
			return 1
		}
		second := startHelper(t, "hold", self, "-helper-hold", "second")
		if second.cmd.Process.Pid != pid {
			if try == 5 {
				fmt.Printf("pid %d never came back (got %d)\n", pid, second.cmd.Process.Pid)
				return 1
			}
			second.stdin.Close()
			second.cmd.Wait()
			time.Sleep(10 * time.Millisecond)
			continue
		}
		src, dst, c := second.accept(t)
		defer c.Close()
		info, err := r.Lookup(context.Background(), tcp, src, dst)
		if err != nil || info.PID != pid || !slices.Equal(info.Cmdline, []string{self, "-helper-hold", "second"}) {
			fmt.Printf("pid %d reused: lookup %+v %v; want the new process's cmdline\n", pid, info, err)
			return 1
		}
		fmt.Printf("pid %d reused: identified as the new process (%q)\n", pid, info.Cmdline[2])
		return 0
	}
}

// nsT is the testing.TB the helpers need, outside a test: a failure
// ends the namespace's PID 1, which kills the helpers with it.
type nsT struct{ testing.TB }

func (nsT) Helper()          {}
func (nsT) Cleanup(f func()) {}
func (nsT) Fatal(args ...any) {
	fmt.Println(args...)
	os.Exit(1)
}
func (nsT) Fatalf(f string, a ...any) {
	fmt.Printf(f+"\n", a...)
	os.Exit(1)
}
