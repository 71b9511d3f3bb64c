package deploy_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/deploy"
	"github.com/forge/forge-supervisor/jail"
)

// agentID is the jailed program's uid and gid.
const agentID = 1000

// profileFor writes the built-in profile widened by requirement names and
// returns its path.
func profileFor(t *testing.T, requires ...string) string {
	t.Helper()
	var w deploy.Widening
	for _, r := range requires {
		w.Requires = append(w.Requires, deploy.NeededBy{Name: r, Why: "test"})
	}
	p, err := deploy.Widen(jail.DefaultProfile(), w)
	if err != nil {
		t.Fatal(err)
	}
	data, err := p.MarshalOCI()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "seccomp.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// agentDir is a scratch directory the jailed agent owns (its HOME).
func agentDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "forge-req-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, agentID, agentID); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runUnder runs argv as the jailed agent (uid 1000, no capabilities,
// no_new_privs) under the profile at seccompPath, in dir.
func runUnder(t *testing.T, seccompPath, dir string, argv ...string) (string, int) {
	t.Helper()
	cmd, err := jail.Command(jail.Spec{UID: agentID, GID: agentID, Argv: argv, Dir: dir, SeccompPath: seccompPath,
		Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + dir}})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, &out, &out
	cmd.SysProcAttr.Setctty = false
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range cmd.ExtraFiles {
		f.Close()
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(90 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = <-done
		t.Errorf("%v: timed out", argv)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	}
	t.Fatalf("%v: %v", argv, err)
	return "", 0
}

func needRootAnd(t *testing.T, bins ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running a program under the jail needs root (setresuid, seccomp as the agent)")
	}
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s is not installed (apt-get install %s): %v", b, b, err)
		}
	}
}

// TestRequirementAddsNothing: the rows with no syscalls leave the profile
// unchanged, so proving them under the built-in profile proves them
// with and without the "addition".
func TestRequirementAddsNothing(t *testing.T) {
	for _, name := range []string{"browser", "git"} {
		w := deploy.Widening{Requires: []deploy.NeededBy{{Name: name, Why: "test"}}}
		p, err := deploy.Widen(jail.DefaultProfile(), w)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(p.Syscalls, jail.DefaultProfile().Syscalls) {
			t.Errorf("%s widened the profile: %+v", name, p.Syscalls[len(p.Syscalls)-1])
		}
		if !strings.Contains(p.Comment, "requirement "+name+" (test) needs no addition") {
			t.Errorf("%s: comment %q does not record it", name, p.Comment)
		}
	}
}

// TestRequirementBrowser: headless Chromium with --no-sandbox renders a
// page under the built-in profile (its own sandbox needs user namespaces,
// which the jail never grants).
func TestRequirementBrowser(t *testing.T) {
	needRootAnd(t, "chromium")
	dir := agentDir(t)
	page := filepath.Join(dir, "page.html")
	if err := os.WriteFile(page, []byte("<html><body><p id=m>rendered-under-the-jail</p></body></html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runUnder(t, profileFor(t, "browser"), dir, "chromium", "--headless", "--no-sandbox", "--disable-gpu",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--dump-dom", "file://"+page)
	if code != 0 || !strings.Contains(out, "rendered-under-the-jail") {
		t.Errorf("chromium exit %d:\n%s", code, out)
	}
}

// TestRequirementGit: git init, add, commit and log under the built-in
// profile.
func TestRequirementGit(t *testing.T) {
	needRootAnd(t, "git", "sh")
	dir := agentDir(t)
	script := `set -e; git init -q repo; cd repo; echo hi > f; git add f;
git -c user.name=a -c user.email=a@example.com commit -qm first; git log --format=%s`
	out, code := runUnder(t, profileFor(t, "git"), dir, "sh", "-c", script)
	if code != 0 || !strings.Contains(out, "first") {
		t.Errorf("git exit %d:\n%s", code, out)
	}
}

// TestRequirementDebugger: a debugger fails under the built-in profile
// (ptrace is EPERM) and works with the debugger requirement.
func TestRequirementDebugger(t *testing.T) {
	for _, tc := range []struct {
		bin  string
		argv []string
		ok   string // in the output when tracing worked
	}{
		{"strace", []string{"strace", "-f", "-e", "trace=execve", "/bin/true"}, "execve(\"/bin/true\""},
		{"gdb", []string{"gdb", "-batch", "-nx", "-ex", "run", "/bin/true"}, "exited normally"},
	} {
		t.Run(tc.bin, func(t *testing.T) {
			needRootAnd(t, tc.bin)
			dir := agentDir(t)
			out, code := runUnder(t, profileFor(t), dir, tc.argv...)
			if (code == 0 && strings.Contains(out, tc.ok)) || !strings.Contains(out, "Operation not permitted") {
				t.Errorf("%s under the built-in profile: exit %d, want ptrace's EPERM:\n%s", tc.bin, code, out)
			}
			out, code = runUnder(t, profileFor(t, "debugger"), dir, tc.argv...)
			if code != 0 || !strings.Contains(out, tc.ok) {
				t.Errorf("%s with the debugger requirement: exit %d:\n%s", tc.bin, code, out)
			}
		})
	}
}

// TestWidenRisk: the syscalls that weaken the jail carry the risk in the
// profile, whether a requirement or supervisor.seccomp.syscalls adds them.
func TestWidenRisk(t *testing.T) {
	for _, w := range []deploy.Widening{
		{Requires: []deploy.NeededBy{{Name: "debugger", Why: "skills/x/SKILL.md requires gdb"}}},
		{Syscalls: []string{"ptrace"}},
	} {
		p, err := deploy.Widen(jail.DefaultProfile(), w)
		if err != nil {
			t.Fatal(err)
		}
		last := p.Syscalls[len(p.Syscalls)-1]
		if !strings.Contains(last.Comment, "RISK: ptrace") || !strings.Contains(strings.Join(last.Names, ","), "ptrace") {
			t.Errorf("%+v: rule %+v lacks the risk", w, last)
		}
	}
	if _, err := deploy.Widen(jail.DefaultProfile(), deploy.Widening{Requires: []deploy.NeededBy{{Name: "telepathy"}}}); err == nil ||
		!strings.Contains(err.Error(), `unknown requirement "telepathy"; known: browser, git, debugger`) {
		t.Errorf("unknown requirement: %v", err)
	}
	// A syscall the built-in profile allows is not repeated.
	p, _ := deploy.Widen(jail.DefaultProfile(), deploy.Widening{Syscalls: []string{"read"}})
	if len(p.Syscalls) != len(jail.DefaultProfile().Syscalls) {
		t.Error("read was added again")
	}
}
