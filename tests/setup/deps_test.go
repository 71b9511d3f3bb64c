// Package setup tests the set-up a newcomer runs: `make deps` (.ci/deps)
// and CI's use of it. The full run on a fresh machine is
// tests/fresh/run.sh (too long for CI); these checks keep its pieces true.
package setup

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// packages reads .ci/packages as .ci/deps does.
func packages(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), ".ci", "packages"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// deps runs .ci/deps with env added and returns its exit code and output.
func deps(t *testing.T, env []string, wrap ...string) (int, string) {
	t.Helper()
	argv := append(wrap, filepath.Join(repoRoot(t), ".ci", "deps"))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("run .ci/deps: %v", err)
		}
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// TestCIRunsMakeDeps: .ci/run installs nothing of its own; it runs the
// step `make deps` runs, so CI on a fresh machine proves that step
// installs every package the tests need (they fail otherwise).
func TestCIRunsMakeDeps(t *testing.T) {
	root := repoRoot(t)
	run, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(run), "apt-get") || strings.Contains(string(run), "go mod download") {
		t.Errorf(".ci/run installs something itself; every package belongs in .ci/packages, installed by .ci/deps")
	}
	if !strings.Contains(string(run), "./.ci/deps") {
		t.Errorf(".ci/run does not run .ci/deps")
	}
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"./.ci/deps", "test: deps", "demo: deps"} {
		if !strings.Contains(string(mk), want) {
			t.Errorf("Makefile lacks %q", want)
		}
	}
}

// TestPackagesInstalled: after .ci/deps (CI runs it first), every package
// of the list is installed. On a machine set up by hand it says which
// are missing.
func TestPackagesInstalled(t *testing.T) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Skip("not a Debian-like machine: no dpkg-query")
	}
	for _, p := range packages(t) {
		out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", p).Output()
		if err != nil || string(out) != "installed" {
			t.Errorf("package %s of .ci/packages is not installed (%q, %v): run make deps", p, out, err)
		}
	}
}

// TestDepsChecksFirst: with everything present .ci/deps succeeds without
// installing anything; a missing package without root, or a system that
// is not Debian-like, is one clear line and exit status 1.
func TestDepsChecksFirst(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run .ci/deps as another user (setpriv)")
	}
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Skip("not a Debian-like machine: no dpkg-query")
	}
	// Readable by the other user: t.TempDir's parent is root's alone.
	dir, err := os.MkdirTemp("", "forge-deps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	asAgent := []string{"setpriv", "--reuid", "1000", "--regid", "1000", "--clear-groups", "--"}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("all present", func(t *testing.T) {
		present := write("present", "# comment\nmake\n\ngcc # the compiler\n")
		code, out := deps(t, []string{"FORGE_DEPS_PACKAGES=" + present})
		if code != 0 || strings.Contains(out, "installing") || !strings.Contains(out, "ok: 2 Debian packages") {
			t.Errorf("exit %d, output %q: want 0 and nothing installed", code, out)
		}
	})
	t.Run("missing, not root", func(t *testing.T) {
		missing := write("missing", "make\nforge-supervisor-no-such-package\n")
		code, out := deps(t, []string{"FORGE_DEPS_PACKAGES=" + missing}, asAgent...)
		if code != 1 || !strings.Contains(out, "forge-supervisor-no-such-package") || !strings.Contains(out, "as root") {
			t.Errorf("exit %d, output %q: want 1 naming the package and root", code, out)
		}
	})
	t.Run("not Debian-like", func(t *testing.T) {
		osr := write("os-release", "ID=fedora\nID_LIKE=\"rhel centos\"\n")
		code, out := deps(t, []string{"FORGE_DEPS_OS_RELEASE=" + osr})
		if code != 1 || !strings.Contains(out, "not a Debian-like system") {
			t.Errorf("exit %d, output %q: want 1 saying it is not Debian-like", code, out)
		}
	})
}

// TestFreshScriptParses: the documented fresh-machine script at least
// parses (bash -n); running it is a manual step (see its header).
func TestFreshScriptParses(t *testing.T) {
	out, err := exec.Command("bash", "-n", filepath.Join(repoRoot(t), "tests", "fresh", "run.sh")).CombinedOutput()
	if err != nil {
		t.Errorf("tests/fresh/run.sh: %v\n%s", err, out)
	}
}
