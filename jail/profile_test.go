package jail_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge/forge-supervisor/jail"
	"github.com/forge/forge-supervisor/tests/netenv"
)

// TestBadProfiles: every broken file in testdata/bad is refused at startup
// with an error naming the entry and the problem.
func TestBadProfiles(t *testing.T) {
	tests := map[string]string{
		"unknown-action.json":       `syscalls[1] "mount": action: unknown or unsupported action "SCMP_ACT_BLOCK"`,
		"unknown-op.json":           `syscalls[0] "socket": args[0]: unknown op "SCMP_CMP_FOO"`,
		"arg-index.json":            `syscalls[1] "clone" (+1 more): args[0]: index 6 out of range 0..5`,
		"no-names.json":             `syscalls[0] (no names): no syscall names`,
		"misspelt-field.json":       `decode JSON: json: unknown field "defualtAction"`,
		"foreign-arch.json":         `architectures: amd64 is not listed`,
		"errno-zero.json":           `syscalls[1] "ptrace": action: errnoRet 0 would make a denied call look successful`,
		"notify.json":               `syscalls[0] "openat": action: unknown or unsupported action "SCMP_ACT_NOTIFY"`,
		"deny-unknown-syscall.json": `syscalls[0] "no_such_syscall": unknown syscall: cannot deny it under a permissive defaultAction`,
		"unknown-cap.json":          `syscalls[0] "read": includes.caps[0]: unknown capability "CAP_EVERYTHING"`,
		"bad-min-kernel.json":       `syscalls[0] "read": includes.minKernel: kernel version "four" is not MAJOR.MINOR`,
		"not-json.json":             `decode JSON: unexpected EOF`,
		"empty-deny-all.json":       `syscalls: empty with a denying defaultAction`,
	}
	files, err := filepath.Glob("testdata/bad/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tests) {
		t.Fatalf("testdata/bad has %d files, the table %d: keep them in step", len(files), len(tests))
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			want, ok := tests[name]
			if !ok {
				t.Fatalf("no expectation for %s", name)
			}
			err := jail.CheckProfile(f)
			if err == nil {
				t.Fatalf("CheckProfile(%s) = nil, want error containing %q", name, want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("CheckProfile(%s) = %q, want it to contain %q", name, err, want)
			}
			if !strings.Contains(err.Error(), f) {
				t.Errorf("error %q does not name the file %s", err, f)
			}
		})
	}
}

func TestProfileResolution(t *testing.T) {
	if err := jail.CheckProfile(""); err != nil {
		t.Fatalf("built-in profile: %v", err)
	}
	if err := jail.CheckProfile("testdata/good/docker-style.json"); err != nil {
		t.Fatalf("docker-style profile: %v", err)
	}
	if _, err := os.Stat(jail.DefaultSeccompPath); os.IsNotExist(err) {
		p, err := jail.ResolveProfile(jail.DefaultSeccompPath)
		if err != nil || p.Comment != jail.DefaultProfile().Comment {
			t.Fatalf("missing default path: got %v, %v; want the built-in profile", p, err)
		}
	}
	if _, err := jail.ResolveProfile("/no/such/profile.json"); err == nil {
		t.Fatal("a missing non-default profile must be an error")
	}
}

// TestDefaultProfileRoundTrip: the built-in profile is valid input for its
// own parser (it travels to the jail child as JSON).
func TestDefaultProfileRoundTrip(t *testing.T) {
	data, err := json.Marshal(jail.DefaultProfile())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jail.ParseProfile(data); err != nil {
		t.Fatalf("built-in profile does not parse: %v", err)
	}
	p := jail.DefaultProfile()
	if p.DefaultAction != "SCMP_ACT_ERRNO" || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != 1 {
		t.Fatalf("built-in default action = %s/%v, want SCMP_ACT_ERRNO/EPERM", p.DefaultAction, p.DefaultErrnoRet)
	}
	for _, s := range p.Syscalls {
		if s.Action != "SCMP_ACT_ALLOW" {
			continue
		}
		for _, n := range s.Names {
			switch n {
			case "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "ptrace",
				"process_vm_readv", "process_vm_writev", "bpf", "perf_event_open", "userfaultfd",
				"io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl", "add_key",
				"request_key", "kexec_load", "kexec_file_load", "init_module", "finit_module",
				"delete_module", "open_by_handle_at", "reboot", "swapon", "swapoff", "acct",
				"quotactl", "clone3":
				t.Errorf("built-in profile allows %s", n)
			case "clone", "personality", "socket":
				if len(s.Args) == 0 {
					t.Errorf("built-in profile allows %s without an argument filter", n)
				}
			}
		}
	}
}

// TestUserProfileApplies: a user profile's own deny rule is what the agent
// meets (getcwd → EACCES in testdata/good/docker-style.json).
func TestUserProfileApplies(t *testing.T) {
	netenv.RequireRoot(t)
	prof, err := filepath.Abs("testdata/good/docker-style.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := agentDir(t)
	out, errOut, code := runJailed(t, jail.Spec{
		Argv:        []string{"/bin/sh", "-c", "pwd -P"},
		SeccompPath: prof,
		Dir:         dir,
	})
	// The profile answers getcwd with EACCES (errnoRet 13): sh reports it.
	if !strings.Contains(errOut, "getcwd() failed: Permission denied") || strings.TrimSpace(out) == dir {
		t.Fatalf("getcwd not denied with EACCES: exit %d out %q err %q", code, out, errOut)
	}
}

// TestSeccompLogMode: with SeccompLog, would-be denials are allowed (and
// logged by the kernel), so the same forbidden call now succeeds.
func TestSeccompLogMode(t *testing.T) {
	netenv.RequireRoot(t)
	out, errOut, code := runJailed(t, jail.Spec{
		Argv:       []string{"/bin/sh", "-c", "grep '^Seccomp:' /proc/self/status; unshare -U true && echo unshare=OK"},
		SeccompLog: true,
	})
	if code != 0 || !strings.Contains(out, "unshare=OK") {
		t.Fatalf("log mode: exit %d out %q err %q; want unshare -U to succeed", code, out, errOut)
	}
}

func FuzzParseProfile(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.json")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := jail.ParseProfile(data)
		if err != nil {
			return
		}
		// Whatever parses must re-encode and parse again identically.
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("marshal parsed profile: %v", err)
		}
		if _, err := jail.ParseProfile(out); err != nil {
			t.Fatalf("re-parse of a valid profile failed: %v", err)
		}
	})
}
