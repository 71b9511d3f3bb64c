package kpath

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/tests/netenv"
	"github.com/forge/forge-supervisor/tests/testpki"
	"github.com/forge/forge-supervisor/tests/world"
)

// The world of these tests (on tests/world's namespace pair):
//
//	allowed.test → 198.51.100.1, 2001:db8::1   TLS :443 (recording), banner :22
//	evil.test    → 198.51.100.1, 2001:db8::1   same host, denied name
//	other.test   → 198.51.100.3                TLS :443 (recording)
//	dual.test    → 198.51.100.1, 2001:db8::3   nothing listens on 2001:db8::3: refused
const policyJSON = `{"mode": "allowlist",
 "allowed_domains": ["allowed.test", "other.test", "dual.test"],
 "allowed_tcp": ["allowed.test:22", "dual.test:22"]}`

// conn is one TCP connection a world server accepted, with what the client
// sent before the server's TLS layer (or banner) ran.
type recorded struct {
	local, remote string
	mu            sync.Mutex
	n             int
}

func (r *recorded) bytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

type countingConn struct {
	net.Conn
	r *recorded
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.r.mu.Lock()
	c.r.n += n
	c.r.mu.Unlock()
	return n, err
}

type kworld struct {
	*world.World
	cliBin string // the agentcli binary
	mu     sync.Mutex
	got    []*recorded
}

func newKWorld(t *testing.T) *kworld {
	t.Helper()
	for _, tool := range []string{"dnsmasq", "nft", "unshare", "setpriv", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (installed by .ci/run): %v", tool, err)
		}
	}
	w := &kworld{World: world.Base(t, "forge-kpath")}
	w.cliBin = buildCLI(t, w.Dir)
	w.startDNS(t)
	w.startServers(t)
	w.Agent.SetResolver(t, netenv.WorldV4)
	return w
}

// buildCLI builds agentcli into the world's (agent-readable) directory.
func buildCLI(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "agentcli")
	cmd := exec.Command("go", "build", "-o", out, "./agentcli")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build agentcli: %v\n%s", err, b)
	}
	return out
}

func (w *kworld) startDNS(t *testing.T) {
	t.Helper()
	w.World.World.Start(t, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--listen-address="+netenv.WorldV4.String(), "--user=root", "--pid-file=", "--port=53",
		"--address=/allowed.test/198.51.100.1", "--address=/allowed.test/2001:db8::1",
		"--address=/evil.test/198.51.100.1", "--address=/evil.test/2001:db8::1",
		"--address=/other.test/198.51.100.3",
		"--address=/dual.test/198.51.100.1", "--address=/dual.test/2001:db8::3")
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if out, err := w.World.World.Cmd("dig", "+short", "+time=1", "+tries=1", "@198.51.100.1", "allowed.test").Output(); err == nil && strings.Contains(string(out), "198.51.100.1") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("kpath world: dnsmasq did not come up")
}

func (w *kworld) listen(t *testing.T, addr string, tfo bool) net.Listener {
	t.Helper()
	var ln net.Listener
	lc := net.ListenConfig{}
	if tfo {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var err error
			_ = c.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN, 16) })
			return err
		}
	}
	if err := w.World.World.Do(func() (err error) {
		ln, err = lc.Listen(t.Context(), "tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("kpath world: listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func (w *kworld) startServers(t *testing.T) {
	t.Helper()
	w.World.World.Run(t, "sysctl", "-qw", "net.ipv4.tcp_fastopen=3")
	cert := testpki.Cert(t, "allowed.test", "evil.test", "other.test")
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	for _, addr := range []string{"198.51.100.1:443", "[2001:db8::1]:443", "198.51.100.3:443"} {
		go w.acceptLoop(w.listen(t, addr, true), func(c net.Conn) { serveTLS(c, cfg) })
	}
	for _, addr := range []string{"198.51.100.1:22", "[2001:db8::1]:22"} {
		go w.acceptLoop(w.listen(t, addr, false), func(c net.Conn) {
			io.WriteString(c, "SSH-2.0-kpath-world\r\n")
			io.Copy(io.Discard, io.LimitReader(c, 1<<20))
		})
	}
}

func (w *kworld) acceptLoop(ln net.Listener, fn func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		r := &recorded{local: c.LocalAddr().String(), remote: c.RemoteAddr().String()}
		w.mu.Lock()
		w.got = append(w.got, r)
		w.mu.Unlock()
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			fn(countingConn{Conn: c, r: r})
		}()
	}
}

// serveTLS answers lines: "bye" is answered and the server closes first
// (so a client may reuse its 4-tuple at once); anything else is echoed.
func serveTLS(c net.Conn, cfg *tls.Config) {
	tc := tls.Server(c, cfg)
	if tc.Handshake() != nil {
		return
	}
	r := bufio.NewReader(tc)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if strings.HasPrefix(line, "GET ") {
			io.WriteString(tc, "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
			return
		}
		io.WriteString(tc, line)
		if line == "bye\n" {
			return
		}
	}
}

// received sums what the world's servers got from connections to local.
func (w *kworld) received(local string) (conns, bytes int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.got {
		if r.local == local {
			conns++
			bytes += r.bytes()
		}
	}
	return conns, bytes
}

// start runs the supervisor with the fast path on.
func (w *kworld) start(t *testing.T, env ...string) *world.Supervisor {
	t.Helper()
	pol := w.WritePolicy(t, "policy.json", policyJSON)
	s := w.StartLaunch(t, world.Launch{Policy: pol, Env: append([]string{"FORGE_SUPERVISOR_FAST_PATH=1"}, env...)}, "sleep", "600")
	s.WaitReady()
	s.WaitEvent(func(e world.Event) bool { return e.Msg() == "fast_path_enabled" }, 5*time.Second)
	return s
}

// cli runs agentcli as the agent and returns its one line.
func (w *kworld) cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := w.AsAgent(w.cliBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("agentcli %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// learn resolves name as the agent (through the DNS proxy) and waits until
// the fast set holds addr:port.
func (w *kworld) learn(t *testing.T, name, set, elem string) {
	t.Helper()
	if out, err := w.AsAgent("getent", "ahosts", name).CombinedOutput(); err != nil {
		t.Fatalf("resolve %s as the agent: %v\n%s", name, err, out)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := w.Agent.Cmd("nft", "list", "set", "inet", "forge_supervisor", set).CombinedOutput()
		if strings.Contains(string(out), elem) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	out, _ := w.Agent.Cmd("nft", "list", "table", "inet", "forge_supervisor").CombinedOutput()
	t.Fatalf("%s never reached set %s:\n%s", elem, set, out)
}

func waitFor(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ok() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("kpath: skipped: needs root (network namespaces, nftables)")
	}
	os.Exit(m.Run())
}
