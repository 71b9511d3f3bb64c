// Package jail starts the agent with the fewest privileges it can run with:
// UID/GID 1000, no supplementary groups, no capabilities (bounding set
// included), no_new_privs and a seccomp allowlist.
//
// Go cannot run code between fork and exec, so the supervisor re-executes its
// own binary (/proc/self/exe) in a hidden jail mode, the way runc's init
// does: Command builds that re-execution, RunIfJail (first call in main)
// recognises it, applies the jail on one locked OS thread and execs the
// agent. The jail mode only ever drops privileges, so an agent that runs the
// supervisor binary in jail mode itself gains nothing.
package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Spec says how to run the agent.
type Spec struct {
	UID, GID uint32
	// Argv is the agent command; Argv[0] is resolved through the PATH of Env.
	Argv []string
	// Env is the agent's environment; the jail adds FORGE_SUPERVISOR=1.
	Env []string
	// Dir is the agent's working directory, entered after the switch to
	// UID/GID so the agent's own permissions apply; "" keeps the current one.
	Dir string
	// SeccompPath is a Docker/OCI seccomp profile. "" or a missing
	// DefaultSeccompPath selects DefaultProfile (see ResolveProfile).
	SeccompPath string
	// SeccompLog turns every would-be denial into SCMP_ACT_LOG (allowed and
	// logged by the kernel), so a user can find what their agent needs.
	SeccompLog bool
	// AllowMulticast lets the agent join multicast groups; by default a
	// second seccomp filter denies it (see multicast.go).
	AllowMulticast bool
}

const (
	// specFDEnv names the environment variable that marks jail mode and
	// carries the number of the inherited fd holding the jail config. The
	// config itself never travels in argv or the environment.
	specFDEnv = "FORGE_SUPERVISOR_JAIL_FD"
	// specChildFD is where the config memfd lands in the child: ExtraFiles[0].
	specChildFD = 3
	// maxConfigBytes bounds what jail mode reads: argv+env of an exec are
	// limited by the kernel to a quarter of the stack rlimit (2 MiB by
	// default); a profile is tens of KiB. 8 MiB is ample and still bounded.
	maxConfigBytes = 8 << 20
	// jailArgv0 is what ps shows for the jail process before it execs.
	jailArgv0 = "forge-supervisor-jail"
)

// config is what the supervisor hands to jail mode: the spec and the already
// validated seccomp profile, so the filter applied is exactly the one checked.
type config struct {
	Spec    Spec     `json:"spec"`
	Profile *Profile `json:"profile"`
}

// Command returns a command that re-executes the running binary in jail mode
// with spec. The spec and the resolved seccomp profile are passed in a sealed
// memfd inherited as fd 3 (cmd.ExtraFiles[0]); the caller should close
// cmd.ExtraFiles after Start. Stdin, stdout and stderr are the supervisor's;
// the child gets a new session and process group (Setsid) and, when stdin is
// a terminal, that terminal as its controlling terminal.
func Command(spec Spec) (*exec.Cmd, error) {
	if err := validateSpec(spec); err != nil {
		return nil, err
	}
	prof, err := ResolveProfile(spec.SeccompPath)
	if err != nil {
		return nil, err
	}
	// Compile once here so a profile libseccomp rejects fails in the
	// supervisor, before any process exists.
	if err := prof.check(spec.SeccompLog); err != nil {
		return nil, fmt.Errorf("seccomp profile %s: %w", profileName(spec.SeccompPath), err)
	}
	if !spec.AllowMulticast {
		mf, err := multicastFilter(spec.SeccompLog)
		if err != nil {
			return nil, err
		}
		mf.Release()
	}
	data, err := json.Marshal(config{Spec: spec, Profile: prof})
	if err != nil {
		return nil, fmt.Errorf("jail: encode config: %w", err)
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("jail: config is %d bytes, more than the %d-byte limit", len(data), maxConfigBytes)
	}
	f, err := sealedMemfd(data)
	if err != nil {
		return nil, err
	}
	tty := isTerminal(0)
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{jailArgv0},
		Env:        []string{specFDEnv + "=" + strconv.Itoa(specChildFD)},
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{f},
		SysProcAttr: &syscall.SysProcAttr{
			Setsid:  true,
			Setctty: tty,
			Ctty:    0,
		},
	}
	return cmd, nil
}

func validateSpec(spec Spec) error {
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		return errors.New("jail: spec: empty agent command")
	}
	if spec.UID == 0 || spec.GID == 0 {
		return fmt.Errorf("jail: spec: refusing to run the agent as uid %d gid %d: root is never jailed", spec.UID, spec.GID)
	}
	for i, a := range spec.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("jail: spec: argv[%d] contains a NUL byte", i)
		}
	}
	for i, e := range spec.Env {
		if strings.IndexByte(e, 0) >= 0 || !strings.Contains(e, "=") {
			return fmt.Errorf("jail: spec: env[%d] is not NAME=VALUE without NUL bytes", i)
		}
	}
	return nil
}

// sealedMemfd returns a read-only, sealed memfd holding data, positioned at 0.
func sealedMemfd(data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("forge-jail-config", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("jail: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "forge-jail-config")
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("jail: write config memfd: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("jail: fcntl(F_ADD_SEALS) on config memfd: %w", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("jail: lseek config memfd: %w", err)
	}
	return f, nil
}

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}
