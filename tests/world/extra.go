package world

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/netenv"
)

// Launch says how to start a supervisor beyond StartSupervisor's
// defaults.
type Launch struct {
	// Policy is the policy file (FORGE_SUPERVISOR_POLICY_PATH).
	Policy string
	// Env is added after the defaults (KEY=VALUE), so it overrides them.
	Env []string
	// Wrap is an argv put right before the binary, after ip netns exec and
	// unshare have used their own capabilities, and it must exec the
	// binary so the supervisor stays PID 1: e.g. setpriv dropping
	// CAP_NET_ADMIN, or prlimit.
	Wrap []string
	// Flags go to the supervisor before "--".
	Flags []string
}

// StartLaunch is StartSupervisor with the options of l: the binary runs
// as PID 1 of a new PID namespace in the agent network namespace, with
// argv as the agent's command. It is stopped (SIGKILL) in t.Cleanup.
func (w *World) StartLaunch(t *testing.T, l Launch, argv ...string) *Supervisor {
	t.Helper()
	bin := netenv.Binary(t)
	args := []string{"netns", "exec", w.Agent.Name, "unshare", "--pid", "--fork", "--mount-proc", "--kill-child"}
	args = append(args, l.Wrap...)
	args = append(args, bin)
	args = append(args, l.Flags...)
	args = append(args, "--")
	args = append(args, argv...)
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(),
		"FORGE_SUPERVISOR_POLICY_PATH="+l.Policy,
		"FORGE_SUPERVISOR_DNS_UPSTREAM="+netenv.WorldV4.String()+":53",
		"FORGE_SUPERVISOR_GRACE=2s",
	)
	cmd.Env = append(cmd.Env, l.Env...)
	s := &Supervisor{t: t, cmd: cmd, Out: &netenv.SyncBuffer{}, Err: &netenv.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.Out, s.Err
	if err := cmd.Start(); err != nil {
		t.Fatalf("start supervisor: %v", err)
	}
	go func() {
		err := cmd.Wait()
		s.code = exitCode(err, cmd)
		close(s.done)
	}()
	t.Cleanup(func() {
		s.Signal(syscall.SIGKILL)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("supervisor (%s) stdout (last 64 KiB):\n%s\nstderr:\n%s", strings.Join(argv, " "), lastBytes(s.Out.String(), 64<<10), lastBytes(s.Err.String(), 64<<10))
		}
	})
	return s
}

// lastBytes keeps the end of a long log.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// Done is closed when the supervisor process has exited.
func (s *Supervisor) Done() <-chan struct{} { return s.done }

// MustExit waits up to timeout for the supervisor to exit and returns its
// status; the test fails when it is still running.
func (s *Supervisor) MustExit(timeout time.Duration) int {
	s.t.Helper()
	code, ok := s.Wait(timeout)
	if !ok {
		s.t.Fatalf("supervisor still running after %v\nstdout:\n%s\nstderr:\n%s", timeout, s.Out.String(), s.Err.String())
	}
	return code
}

// CountEvents counts the log lines whose msg is msg.
func (s *Supervisor) CountEvents(msg string) int {
	n := 0
	for _, e := range s.Events() {
		if e.Msg() == msg {
			n++
		}
	}
	return n
}

// NFT runs the nft CLI in the agent namespace and returns its output; the
// test fails on error.
func (w *World) NFT(t *testing.T, args ...string) string {
	t.Helper()
	return w.Agent.Run(t, "nft", args...)
}

// NFTApply loads a ruleset text into the agent namespace with nft -f.
func (w *World) NFTApply(t *testing.T, ruleset string) {
	t.Helper()
	f := filepath.Join(w.Dir, fmt.Sprintf("ruleset-%d.nft", time.Now().UnixNano()))
	if err := os.WriteFile(f, []byte(ruleset), 0o644); err != nil {
		t.Fatal(err)
	}
	w.NFT(t, "-f", f)
}

// Tables lists the agent namespace's nftables tables as "family name".
func (w *World) Tables(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(w.NFT(t, "list", "tables"), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "table" {
			out = append(out, f[1]+" "+f[2])
		}
	}
	return out
}

// CountTables counts the agent namespace's tables named name (any family).
func (w *World) CountTables(t *testing.T, name string) int {
	t.Helper()
	n := 0
	for _, tb := range w.Tables(t) {
		if strings.HasSuffix(tb, " "+name) {
			n++
		}
	}
	return n
}

// ListTableStateless is `nft -s list table FAMILY NAME` in the agent
// namespace: the table's text without counter values or other state, so
// two listings compare equal when the rules are the same.
func (w *World) ListTableStateless(t *testing.T, family, name string) string {
	t.Helper()
	return w.NFT(t, "-s", "list", "table", family, name)
}

// SharedDir returns a fresh directory every user may write to (sticky, like
// /tmp), for files the jailed agent (UID 1000) leaves for the test.
func (w *World) SharedDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp(w.Dir, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o1777); err != nil {
		t.Fatal(err)
	}
	return d
}

// agentHTTPTimeout bounds one request of AgentHTTP: the health server
// answers from memory, so anything slower is a failure.
const agentHTTPTimeout = 5 * time.Second

// AgentHTTP returns an HTTP client whose connections are made from inside
// the agent network namespace by this (root) test process, e.g. to reach
// the supervisor's health server on 127.0.0.1:15000. Root's sockets are not
// redirected by the supervisor's rules. Keep-alives are off, so no idle
// connection stays in the supervisor.
func (w *World) AgentHTTP() *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := w.Agent.Do(func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{
		Timeout:   agentHTTPTimeout,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
	}
}

// Get fetches url with c and returns the status code and the body.
func Get(c *http.Client, url string) (int, []byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, body, err
}

// RunBinary runs the forge-supervisor binary directly (no namespaces) with
// env added to an environment that holds no FORGE_SUPERVISOR_* variable,
// and returns its exit status, stdout and stderr. It is for commands that
// end on their own: configuration errors and subcommands.
func RunBinary(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, netenv.Binary(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FORGE_SUPERVISOR") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("forge-supervisor %s: did not exit within 20s", strings.Join(args, " "))
	}
	return exitCode(err, cmd), out.String(), errb.String()
}
