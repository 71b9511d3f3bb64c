package jail

import (
	seccomp "github.com/seccomp/libseccomp-golang"

	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Exit statuses of the jail mode, as a shell reports them.
const (
	exitCannotRun = 126 // the jail could not be applied or execve failed
	exitNotFound  = 127 // the agent command was not found
)

// RunIfJail must be the first call in main. In the supervisor it returns at
// once; in the jail child made by Command it applies the jail and execs the
// agent, never returning. A failure prints one line naming the step and
// syscall to stderr and exits 126 (127 when the command is not found).
func RunIfJail() {
	fdStr, ok := os.LookupEnv(specFDEnv)
	if !ok {
		return
	}
	// Every step below acts on the calling thread (capabilities, no_new_privs
	// and the seccomp filter are per-thread); execve then replaces the whole
	// process from this same thread, so nothing else ever runs unjailed.
	runtime.LockOSThread()
	cfg, err := readConfig(fdStr)
	if err != nil {
		fail(exitCannotRun, err)
	}
	code, err := apply(cfg)
	fail(code, err)
}

func fail(code int, err error) {
	fmt.Fprintf(os.Stderr, "forge-supervisor: jail: %v\n", err)
	os.Exit(code)
}

func readConfig(fdStr string) (*config, error) {
	fd, err := strconv.Atoi(fdStr)
	if err != nil || fd != specChildFD {
		return nil, fmt.Errorf("read config: %s=%q is not fd %d", specFDEnv, fdStr, specChildFD)
	}
	f := os.NewFile(uintptr(fd), "forge-jail-config")
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read config: read fd %d: %w", fd, err)
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("read config: more than %d bytes", maxConfigBytes)
	}
	var cfg config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("read config: decode: %w", err)
	}
	if err := validateSpec(cfg.Spec); err != nil {
		return nil, err
	}
	if cfg.Profile == nil {
		return nil, errors.New("read config: no seccomp profile")
	}
	if err := cfg.Profile.validate(); err != nil {
		return nil, fmt.Errorf("read config: seccomp profile: %w", err)
	}
	return &cfg, nil
}

// apply runs the jail steps in order and execs the agent. It returns only on
// failure, with the exit code to use.
func apply(cfg *config) (int, error) {
	s := cfg.Spec
	// Compile the filter while still root and before any privilege changes:
	// it only allocates memory, and a failure here is cheaper to report.
	filter, err := cfg.Profile.compile(s.SeccompLog, currentKernel())
	if err != nil {
		return exitCannotRun, err
	}
	var mcast *seccomp.ScmpFilter
	if !s.AllowMulticast {
		if mcast, err = multicastFilter(s.SeccompLog); err != nil {
			return exitCannotRun, err
		}
	}

	// 1. setgroups([gid]): supplementary groups replaced by the agent's own
	//    group. Needs CAP_SETGID, so it runs first.
	if err := syscall.Setgroups([]int{int(s.GID)}); err != nil {
		return exitCannotRun, fmt.Errorf("step 1 setgroups([%d]): %w", s.GID, err)
	}
	// 2. Drop every capability from the bounding set: no later execve (of a
	//    setuid or file-capability binary) can ever regain one. This needs
	//    CAP_SETPCAP, which the uid switch in step 5 removes, so it comes
	//    before it.
	if err := dropBoundingSet(); err != nil {
		return exitCannotRun, fmt.Errorf("step 2 %w", err)
	}
	// 3. no_new_privs: execve never grants privileges again (setuid bits and
	//    file capabilities are ignored); also lets an unprivileged process
	//    load a seccomp filter.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return exitCannotRun, fmt.Errorf("step 3 prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	// 4. setresgid: real, effective and saved gid, while CAP_SETGID remains.
	//    (With cgo, x/sys/unix calls libc, whose setxid broadcast applies it to
	//    every thread of the process.)
	if err := unix.Setresgid(int(s.GID), int(s.GID), int(s.GID)); err != nil {
		return exitCannotRun, fmt.Errorf("step 4 setresgid(%d): %w", s.GID, err)
	}
	// 5. setresuid: leaving uid 0 with all three ids non-zero makes the
	//    kernel clear the permitted, effective and ambient sets.
	if err := unix.Setresuid(int(s.UID), int(s.UID), int(s.UID)); err != nil {
		return exitCannotRun, fmt.Errorf("step 5 setresuid(%d): %w", s.UID, err)
	}
	// 6. Clear the ambient set explicitly, then every set with capset —
	//    the inheritable set survives a uid change and would otherwise stay.
	if err := clearCapabilities(); err != nil {
		return exitCannotRun, fmt.Errorf("step 6 %w", err)
	}
	// 7. Enter the working directory as the agent, and resolve the command
	//    through the agent's PATH with the agent's permissions.
	if s.Dir != "" {
		if err := unix.Chdir(s.Dir); err != nil {
			return exitCannotRun, fmt.Errorf("step 7 chdir(%s): %w", s.Dir, err)
		}
	}
	env := agentEnv(s.Env)
	path, err := lookPath(s.Argv[0], env)
	if err != nil {
		code := exitCannotRun
		if errors.Is(err, errNotFound) {
			code = exitNotFound
		}
		return code, fmt.Errorf("step 7 %w", err)
	}
	// 8. Load the seccomp filters, as late as possible so the steps above are
	//    not constrained by them; only fd marking and execve run under them.
	//    The multicast filter (default allow) goes first, so the profile's
	//    filter cannot deny the second seccomp(2) call.
	if mcast != nil {
		if err := mcast.Load(); err != nil {
			return exitCannotRun, fmt.Errorf("step 8 seccomp(SECCOMP_SET_MODE_FILTER) multicast filter: %w", err)
		}
	}
	if err := filter.Load(); err != nil {
		return exitCannotRun, fmt.Errorf("step 8 seccomp(SECCOMP_SET_MODE_FILTER): %w", err)
	}
	// 9. Close stray fds: everything above stderr becomes close-on-exec, so
	//    nothing the supervisor opened leaks into the agent.
	if err := closeStrayFDs(); err != nil {
		return exitCannotRun, fmt.Errorf("step 9 %w", err)
	}
	// 10. execve the agent.
	err = unix.Exec(path, s.Argv, env)
	code := exitCannotRun
	if errors.Is(err, syscall.ENOENT) {
		code = exitNotFound
	}
	return code, fmt.Errorf("step 10 execve(%s): %w", path, err)
}

// agentEnv is the spec's environment with FORGE_SUPERVISOR=1 replacing any
// value the caller passed.
func agentEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if strings.HasPrefix(e, "FORGE_SUPERVISOR=") {
			continue
		}
		out = append(out, e)
	}
	return append(out, "FORGE_SUPERVISOR=1")
}
