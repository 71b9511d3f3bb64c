package procid

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/sockdiag"
)

// The test binary doubles as the agent's client: with PROCID_HELPER set it
// connects to PROCID_ADDR and behaves as the mode says, instead of
// running tests.
//
//	hold      connect once, print "ok", wait for stdin to close
//	exit      connect once and exit at once, leaving the connection
//	ondemand  connect once per line read from stdin, print "ok" each time
//	pidreuse  run TestPIDReuse's body (as PID 1 of a new PID namespace)
func TestMain(m *testing.M) {
	switch mode := os.Getenv("PROCID_HELPER"); mode {
	case "":
		os.Exit(m.Run())
	case "pidreuse":
		os.Exit(pidReuseMain())
	default:
		os.Exit(helperMain(mode, os.Getenv("PROCID_ADDR")))
	}
}

func helperMain(mode, addr string) int {
	var conns []net.Conn
	dial := func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return false
		}
		// Like a real client, keep only a few connections open.
		if len(conns) == 4 {
			conns[0].Close()
			conns = conns[1:]
		}
		conns = append(conns, c)
		fmt.Println("ok")
		return true
	}
	switch mode {
	case "hold":
		if !dial() {
			return 1
		}
		io.Copy(io.Discard, os.Stdin)
	case "exit":
		if !dial() {
			return 1
		}
	case "ondemand":
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			if !dial() {
				return 1
			}
		}
	default:
		fmt.Fprintln(os.Stderr, "helper: unknown mode", mode)
		return 2
	}
	return 0
}

// helper is a running helper process and the server side of its
// connections.
type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	ln    *net.TCPListener
}

// startHelper starts argv (whose last process must be this test binary in
// helper mode) against a fresh loopback listener.
func startHelper(t testing.TB, mode string, argv ...string) *helper {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if len(argv) == 0 {
		argv = []string{self, "-helper-" + mode}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "PROCID_HELPER="+mode, "PROCID_ADDR="+ln.Addr().String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return &helper{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), ln: ln}
}

// accept waits for the helper's next connection ("ok" on its stdout) and
// returns the 4-tuple as the helper's socket sees it.
func (h *helper) accept(t testing.TB) (src, dst netip.AddrPort, c *net.TCPConn) {
	t.Helper()
	line, err := h.out.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ok" {
		t.Fatalf("helper: %q %v", line, err)
	}
	h.ln.SetDeadline(time.Now().Add(10 * time.Second))
	c, err = h.ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	return c.RemoteAddr().(*net.TCPAddr).AddrPort(), c.LocalAddr().(*net.TCPAddr).AddrPort(), c
}

func newResolver(t testing.TB) *Resolver {
	t.Helper()
	r, err := New(Options{})
	if err != nil {
		t.Skipf("sock_diag unavailable: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

var tcp = sockdiag.TCP
