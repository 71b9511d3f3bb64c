package actors_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/actors"
	"github.com/forge/forge-supervisor/jail"
)

// supervisorModeEnv makes the test binary act as a tiny supervisor main:
// PID 1 of a new PID namespace running RunAgent with the config in the
// variable's value.
const supervisorModeEnv = "ACTORS_TEST_SUPERVISOR"

// cancelFD is the read end of the cancel pipe in the tiny supervisor
// (the first of exec.Cmd.ExtraFiles).
const cancelFD = 3

// supervisorConfig is what a test asks the tiny supervisor to do.
type supervisorConfig struct {
	Argv    []string `json:"argv"`
	GraceMS int      `json:"grace_ms"`
	// CancelOnClose: RunAgent's ctx is cancelled when the test closes its
	// end of the cancel pipe (the supervisor's fd 3), so the test decides
	// when, e.g. once the agent said it is ready — never a fixed delay,
	// which a loaded machine outruns.
	CancelOnClose bool `json:"cancel_on_close"`
	ReloadFails   bool `json:"reload_fails"`
	KeepSIGHUP    bool `json:"keep_sighup"`
}

func TestMain(m *testing.M) {
	jail.RunIfJail()
	if cfg, ok := os.LookupEnv(supervisorModeEnv); ok {
		os.Exit(superviseForTest(cfg))
	}
	os.Exit(m.Run())
}

// superviseForTest is the test's stand-in for main: it mounts a /proc for
// its PID namespace, runs the agent and exits with its code. Markers on
// stderr let the test see what happened.
func superviseForTest(raw string) int {
	var c supervisorConfig
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		fmt.Fprintf(os.Stderr, "supervisor: bad config: %v\n", err)
		return 2
	}
	// A private /proc shows only this namespace's processes to the agent.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fmt.Fprintf(os.Stderr, "supervisor: make / private: %v\n", err)
		return 2
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		fmt.Fprintf(os.Stderr, "supervisor: mount /proc: %v\n", err)
		return 2
	}
	log, _ := zap.NewDevelopment() // logs to stderr
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if c.CancelOnClose {
		// Not inherited by the agent: only the test holds the write end.
		syscall.CloseOnExec(cancelFD)
		pipe := os.NewFile(cancelFD, "cancel")
		go func() {
			_, _ = io.Copy(io.Discard, pipe) // returns at EOF: the test closed its end
			cancel()
		}()
	}
	code, err := actors.RunAgent(ctx, actors.AgentConfig{
		Spec: jail.Spec{
			UID: 1000, GID: 1000,
			Argv: c.Argv,
			Env:  []string{"PATH=/usr/bin:/bin"},
			Dir:  "/",
		},
		Grace: time.Duration(c.GraceMS) * time.Millisecond,
		Reload: func() error {
			fmt.Fprintln(os.Stderr, "MARK reload_called")
			if c.ReloadFails {
				return errors.New("test reload failure")
			}
			return nil
		},
		KeepSIGHUP: c.KeepSIGHUP,
		Log:        log,
		OnStart:    func(pid int) { fmt.Fprintf(os.Stderr, "MARK started pid=%d\n", pid) },
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "supervisor: %v\n", err)
	}
	fmt.Fprintf(os.Stderr, "MARK exit_code=%d\n", code)
	return code
}
