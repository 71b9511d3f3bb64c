package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// helpers are hidden modes the vectors re-execute this binary in.
var helpers = map[string]func(args []string) int{
	// whoami prints the effective UID: run from the setuid-root copy.
	"--whoami": func([]string) int {
		fmt.Printf("euid=%d uid=%d\n", unix.Geteuid(), unix.Getuid())
		return 0
	},
	"--daemon": daemonMain,
	"--listen": listenMain,
}

// command runs argv with a timeout and returns its combined output.
func command(timeout time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = nil
	b, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(b)), err
}

// setuidBinary runs a setuid-root copy of this binary (prepared by the
// test): no_new_privs must keep the effective UID at 1000.
func setuidBinary(r *Result) {
	path := os.Getenv("ESCAPE_SUID")
	if st, err := os.Stat(path); err != nil || st.Mode()&os.ModeSetuid == 0 {
		r.Observed = "error"
		r.note("setuid copy missing at %q: %v", path, err)
		return
	}
	out, err := command(5*time.Second, path, "--whoami")
	r.note("%s (%v)", out, err)
	if strings.Contains(out, "euid=0") {
		r.escape("setuid-root binary ran with euid 0")
	}
}

func su(r *Result) {
	out, err := command(5*time.Second, "su", "-c", "id -u", "root")
	r.note("su: %q (%v)", out, err)
	if err == nil && strings.TrimSpace(out) == "0" {
		r.escape("su gave root")
	}
}

// capset tries to raise every capability, then reports what the kernel
// says the process holds.
func capset(r *Result) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{{Effective: ^uint32(0), Permitted: ^uint32(0), Inheritable: ^uint32(0)},
		{Effective: ^uint32(0), Permitted: ^uint32(0), Inheritable: ^uint32(0)}}
	if err := unix.Capset(&hdr, &data[0]); err == nil {
		r.escape("capset raised all capabilities")
	} else {
		r.note("capset: %v", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, unix.CAP_NET_ADMIN, 0, 0); err == nil {
		r.escape("ambient CAP_NET_ADMIN raised")
	} else {
		r.note("ambient raise: %v", err)
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		v = strings.TrimSpace(v)
		switch k {
		case "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb":
			if strings.Trim(v, "0") != "" {
				r.escape("%s=%s", k, v)
			}
		case "NoNewPrivs", "Seccomp":
			r.note("%s=%s", k, v)
			if v == "0" {
				r.escape("%s is off", k)
			}
		}
	}
}

// unshareNet: a new (user+)network namespace, in a thread that is thrown
// away afterwards, and through the unshare(1) tool.
func unshareNet(r *Result) {
	for _, fl := range []struct {
		name  string
		flags int
	}{{"CLONE_NEWNET", unix.CLONE_NEWNET}, {"CLONE_NEWUSER|CLONE_NEWNET", unix.CLONE_NEWUSER | unix.CLONE_NEWNET}} {
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
			errc <- unix.Unshare(fl.flags)
		}()
		if err := <-errc; err == nil {
			r.escape("unshare(%s) succeeded", fl.name)
		} else {
			r.note("unshare(%s): %v", fl.name, err)
		}
	}
	for _, argv := range [][]string{{"unshare", "-n", "true"}, {"unshare", "-Urn", "true"}} {
		out, err := command(5*time.Second, argv...)
		if err == nil {
			r.escape("%s succeeded", strings.Join(argv, " "))
		} else {
			r.note("%s: %v %q", strings.Join(argv, " "), err, out)
		}
	}
}

func mount(r *Result) {
	dir, err := os.MkdirTemp("", "esc-mount")
	if err != nil {
		r.note("mkdtemp: %v", err)
		return
	}
	defer os.Remove(dir)
	if err := unix.Mount("none", dir, "tmpfs", 0, ""); err == nil {
		_ = unix.Unmount(dir, 0)
		r.escape("mount(tmpfs) succeeded")
	} else {
		r.note("mount: %v", err)
	}
	if out, err := command(5*time.Second, "mount", "-t", "tmpfs", "none", dir); err == nil {
		r.escape("mount(8) succeeded")
	} else {
		r.note("mount(8): %v %q", err, out)
	}
}

// ptracePID1 tries to attach to the supervisor, and to read its memory
// and environment through /proc.
func ptracePID1(r *Result) {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- unix.PtraceAttach(1)
	}()
	if err := <-errc; err == nil {
		r.escape("PTRACE_ATTACH to PID 1 succeeded")
	} else {
		r.note("ptrace(ATTACH, 1): %v", err)
	}
	for _, p := range []string{"/proc/1/mem", "/proc/1/environ", "/proc/1/fd/0"} {
		f, err := os.Open(p)
		if err == nil {
			f.Close()
			r.escape("opened %s", p)
		} else {
			r.note("open %s: %v", p, err)
		}
	}
}

func killPID1(r *Result) {
	for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGKILL, unix.SIGSTOP} {
		if err := unix.Kill(1, sig); err == nil {
			r.escape("kill(1, %v) succeeded", sig)
		} else {
			r.note("kill(1, %v): %v", sig, err)
		}
	}
}

// sysctlWrite tries to switch on forwarding (and similar knobs) in the
// agent's network namespace.
func sysctlWrite(r *Result) {
	for _, p := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding", "/proc/sys/net/ipv4/conf/all/route_localnet"} {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			r.note("open %s for writing: %v", p, err)
			continue
		}
		_, err = f.WriteString("1\n")
		f.Close()
		if err == nil {
			r.escape("wrote 1 to %s", p)
		} else {
			r.note("write %s: %v", p, err)
		}
	}
}

// nftFlush tries to remove the supervisor's ruleset.
func nftFlush(r *Result) {
	for _, argv := range [][]string{{"nft", "flush", "ruleset"}, {"nft", "delete", "table", "inet", "forge_supervisor"}} {
		out, err := command(5*time.Second, argv...)
		if err == nil {
			r.escape("%s succeeded", strings.Join(argv, " "))
		} else {
			r.note("%s: %v %q", strings.Join(argv, " "), err, out)
		}
	}
}
