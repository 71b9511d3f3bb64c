package jail_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/forge/forge-supervisor/jail"
	"github.com/forge/forge-supervisor/tests/netenv"
)

const agentID = 1000

// runJailed runs argv as the jailed agent and returns its output and exit
// code (128+N when killed by signal N).
func runJailed(t *testing.T, spec jail.Spec) (stdout, stderr string, code int) {
	t.Helper()
	if spec.UID == 0 {
		spec.UID, spec.GID = agentID, agentID
	}
	if spec.Env == nil {
		spec.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	}
	cmd, err := jail.Command(spec)
	if err != nil {
		t.Fatalf("jail.Command: %v", err)
	}
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, &out, &errOut
	cmd.SysProcAttr.Setctty = false
	err = cmd.Run()
	for _, f := range cmd.ExtraFiles {
		f.Close()
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		} else {
			code = ws.ExitStatus()
		}
	default:
		t.Fatalf("run jailed %v: %v", spec.Argv, err)
	}
	return out.String(), errOut.String(), code
}

func parseLines(s string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// TestCredentials checks, from inside the agent, the identity, capability
// sets, no_new_privs, seccomp mode and environment.
func TestCredentials(t *testing.T) {
	netenv.RequireRoot(t)
	dir := agentDir(t)
	script := `
echo "id=$(id -u):$(id -g):$(id -G)"
echo "env=$FORGE_SUPERVISOR"
echo "pwd=$(pwd)"
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -d ' \t' | sed 's/:/=/'
unshare -U true 2>/dev/null; echo "unshare_cmd=$?"
mkdir -p /tmp/x 2>/dev/null; mount -t tmpfs x /tmp/x 2>/dev/null; echo "mount_cmd=$?"
`
	out, errOut, code := runJailed(t, jail.Spec{
		Argv: []string{"/bin/sh", "-c", script},
		Env:  []string{"PATH=/usr/bin:/bin", "FORGE_SUPERVISOR=0"},
		Dir:  dir,
	})
	if code != 0 {
		t.Fatalf("agent exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	got := parseLines(out)
	want := map[string]string{
		"id":         "1000:1000:1000",
		"env":        "1",
		"pwd":        dir,
		"CapInh":     "0000000000000000",
		"CapPrm":     "0000000000000000",
		"CapEff":     "0000000000000000",
		"CapBnd":     "0000000000000000",
		"CapAmb":     "0000000000000000",
		"NoNewPrivs": "1",
		"Seccomp":    "2",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, k := range []string{"unshare_cmd", "mount_cmd"} {
		if got[k] == "0" || got[k] == "" {
			t.Errorf("%s = %q, want a failure", k, got[k])
		}
	}
}

// TestSyscallsDenied runs the test binary as the agent, which makes each
// forbidden syscall itself and reports its errno.
func TestSyscallsDenied(t *testing.T) {
	netenv.RequireRoot(t)
	dir := agentDir(t)
	bin := agentCopyOfSelf(t, dir)
	out, errOut, code := runJailed(t, jail.Spec{
		Argv: []string{bin},
		Env:  []string{"PATH=/usr/bin:/bin", "JAIL_TEST_PROBE=1"},
	})
	if code != 0 {
		t.Fatalf("probe exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	got := parseLines(out)
	for _, name := range []string{
		"unshare_user", "unshare_net", "setns", "mount", "umount2", "pivot_root", "chroot",
		"bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "keyctl", "add_key",
		"request_key", "kexec_load", "init_module", "finit_module", "delete_module",
		"open_by_handle_at", "reboot", "swapon", "acct", "quotactl", "process_vm_readv",
		"personality_no_aslr", "socket_vsock", "ptrace_attach",
		"mcast_ip_add_membership", "mcast_ip_add_membership_hibits", "mcast_join_source_group",
		"mcast_ipv6_join_group", "mcast_ipv6_mcast_join_group",
	} {
		if got[name] != "EPERM" {
			t.Errorf("%s = %q, want EPERM", name, got[name])
		}
	}
	for _, name := range []string{"socket_inet", "personality_linux", "personality_query",
		"mcast_ip_multicast_ttl", "sockopt_reuseaddr", "sockopt_v6only"} {
		if got[name] != "OK" {
			t.Errorf("%s = %q, want OK (allowed)", name, got[name])
		}
	}
}

// TestMulticastAllowedWhenAsked: with AllowMulticast the group joins work
// (the host's kernel may still refuse them for want of a route: anything
// but EPERM shows the filter is gone).
func TestMulticastAllowedWhenAsked(t *testing.T) {
	netenv.RequireRoot(t)
	dir := agentDir(t)
	bin := agentCopyOfSelf(t, dir)
	out, errOut, code := runJailed(t, jail.Spec{
		Argv: []string{bin}, AllowMulticast: true,
		Env: []string{"PATH=/usr/bin:/bin", "JAIL_TEST_PROBE=1"},
	})
	if code != 0 {
		t.Fatalf("probe exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	got := parseLines(out)
	for _, name := range []string{"mcast_ip_add_membership", "mcast_ipv6_join_group"} {
		if got[name] == "EPERM" {
			t.Errorf("%s = EPERM with AllowMulticast", name)
		}
	}
}

// TestOtherABIsKilled: i386 (int $0x80) and x32 syscalls are outside the
// native filter and must kill the process, not bypass the allowlist.
func TestOtherABIsKilled(t *testing.T) {
	netenv.RequireRoot(t)
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("needs gcc (installed by .ci/run) to build the ABI probe")
	}
	dir := agentDir(t)
	probe := filepath.Join(dir, "arch")
	if out, err := exec.Command(gcc, "-O2", "-o", probe, "testdata/probe/arch.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	const sigsys = 128 + int(syscall.SIGSYS)
	for _, abi := range []string{"int80", "x32"} {
		t.Run(abi, func(t *testing.T) {
			out, errOut, code := runJailed(t, jail.Spec{Argv: []string{probe, abi}})
			if code != sigsys {
				t.Fatalf("exit %d, want %d (SIGSYS from the bad-arch action)\nstdout: %s\nstderr: %s", code, sigsys, out, errOut)
			}
		})
	}
	t.Run("clone", func(t *testing.T) {
		out, errOut, code := runJailed(t, jail.Spec{Argv: []string{probe, "clone"}})
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		got := parseLines(out)
		want := map[string]string{"clone_newns": "EPERM", "clone_plain": "OK", "clone3": "ENOSYS"}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %q, want %q", k, got[k], v)
			}
		}
	})
}

// TestSetuidBinaryGainsNothing: a setuid-root copy of id(1) still reports
// euid 1000, because no_new_privs (and the empty bounding set) apply.
func TestSetuidBinaryGainsNothing(t *testing.T) {
	netenv.RequireRoot(t)
	dir := agentDir(t)
	src, err := os.ReadFile("/usr/bin/id")
	if err != nil {
		t.Skipf("no /usr/bin/id: %v", err)
	}
	suid := filepath.Join(dir, "id-suid")
	if err := os.WriteFile(suid, src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(suid, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(suid, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	// Control: outside the jail, as UID 1000 without no_new_privs, the
	// setuid bit works; so the jailed result below is the jail's doing.
	ctl := exec.Command(suid, "-u")
	ctl.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: agentID, Gid: agentID}}
	if out, err := ctl.Output(); err == nil && strings.TrimSpace(string(out)) != "0" {
		t.Skipf("setuid bit has no effect here even without the jail (nosuid /tmp?): euid %s", out)
	}
	out, errOut, code := runJailed(t, jail.Spec{Argv: []string{suid, "-u"}})
	if code != 0 || strings.TrimSpace(out) != "1000" {
		t.Fatalf("setuid id -u in jail: exit %d, out %q, stderr %q; want euid 1000", code, out, errOut)
	}
}

func TestExitCodes(t *testing.T) {
	netenv.RequireRoot(t)
	dir := agentDir(t)
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		argv     []string
		dir      string
		wantCode int
		wantErr  string
	}{
		{"exit status passes through", []string{"/bin/sh", "-c", "exit 3"}, "", 3, ""},
		{"not found", []string{"no-such-agent-command"}, "", 127, "step 7 lookup \"no-such-agent-command\""},
		{"absolute not found", []string{"/no/such/agent"}, "", 127, "stat(/no/such/agent): command not found"},
		{"not executable", []string{plain}, "", 126, "faccessat(" + plain + ", X_OK): permission denied"},
		{"dir not enterable", []string{"/bin/true"}, "/root", 126, "step 7 chdir(/root): permission denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := runJailed(t, jail.Spec{Argv: tc.argv, Dir: tc.dir})
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.wantCode, errOut)
			}
			if tc.wantErr != "" && !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("stderr %q does not contain %q", errOut, tc.wantErr)
			}
		})
	}
}

func TestCommandRejectsBadSpec(t *testing.T) {
	tests := []struct {
		name string
		spec jail.Spec
		want string
	}{
		{"empty argv", jail.Spec{UID: 1000, GID: 1000}, "jail: spec: empty agent command"},
		{"root uid", jail.Spec{UID: 0, GID: 1000, Argv: []string{"true"}}, "refusing to run the agent as uid 0 gid 1000"},
		{"bad env", jail.Spec{UID: 1000, GID: 1000, Argv: []string{"true"}, Env: []string{"NOEQUALS"}}, "env[0] is not NAME=VALUE"},
		{"missing profile", jail.Spec{UID: 1000, GID: 1000, Argv: []string{"true"}, SeccompPath: "/no/such.json"}, "seccomp profile: open /no/such.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := jail.Command(tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestJailModeGrantsNothing: an unprivileged process that invokes the hidden
// jail mode itself (as an agent could) is refused at the first step: the mode
// only ever drops privileges.
func TestJailModeGrantsNothing(t *testing.T) {
	netenv.RequireRoot(t)
	dir := agentDir(t)
	bin := agentCopyOfSelf(t, dir)
	cmd, err := jail.Command(jail.Spec{UID: agentID, GID: agentID, Argv: []string{"/bin/true"}})
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.ExtraFiles[0].Close()
	cmd.Path = bin // /proc/self/exe lives in a directory UID 1000 cannot enter
	var errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, &errOut
	cmd.SysProcAttr.Setctty = false
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: agentID, Gid: agentID}
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 126 {
		t.Fatalf("unprivileged jail mode: err %v, want exit 126", err)
	}
	want := "forge-supervisor: jail: step 1 setgroups([1000]): operation not permitted"
	if !strings.Contains(errOut.String(), want) {
		t.Fatalf("stderr %q, want %q", errOut.String(), want)
	}
}
