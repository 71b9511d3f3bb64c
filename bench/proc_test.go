package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	fdns "github.com/forge/forge-supervisor/dns"
	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
	"github.com/forge/forge-supervisor/stages"
)

// The proxies under test run in processes of their own, as they do in
// production and as HAProxy does here: in the benchmark's process they
// would share its Go scheduler, and its two cores' worth of Ps, with the
// client and server goroutines. The benchmark binary re-runs itself in the
// role named by proxyRoleEnv, prints the address it listens on, and serves
// until its stdin closes.
const (
	proxyRoleEnv     = "FORGE_BENCH_PROXY_ROLE"
	proxyUpstreamEnv = "FORGE_BENCH_PROXY_UPSTREAM"
	// baselineEnv names a bench test binary built from another tree
	// (go test -c ./bench): its engine runs as one more path,
	// "baseline", side by side with this tree's, so a change to the
	// engine is measured old against new in one interleaved run.
	baselineEnv = "FORGE_BENCH_BASELINE"
)

// withBaseline appends the baseline engine's path to paths when
// FORGE_BENCH_BASELINE is set.
func withBaseline(b *testing.B, paths []struct{ name, addr string }, upstream string) []struct{ name, addr string } {
	bin := os.Getenv(baselineEnv)
	if bin == "" {
		return paths
	}
	addr, _ := startProxyFrom(b, bin, "engine", upstream)
	return append(paths, struct{ name, addr string }{"baseline", addr})
}

func TestMain(m *testing.M) {
	if role := os.Getenv(proxyRoleEnv); role != "" {
		if err := runProxy(role, os.Getenv(proxyUpstreamEnv)); err != nil {
			fmt.Fprintf(os.Stderr, "bench proxy %s: %v\n", role, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startProxy runs role ("engine", "bare", "dns" or "bare-dns") in front of upstream
// in a child process and returns its address; the child ends with the
// benchmark.
func startProxy(b *testing.B, role, upstream string) string {
	b.Helper()
	addr, _ := startProxyPID(b, role, upstream)
	return addr
}

// startProxyPID is startProxy that also returns the child's process ID.
func startProxyPID(b *testing.B, role, upstream string) (string, int) {
	b.Helper()
	return startProxyFrom(b, os.Args[0], role, upstream)
}

// startProxyFrom runs role from the bench binary bin.
func startProxyFrom(b *testing.B, bin, role, upstream string) (string, int) {
	b.Helper()
	c := startChild(b, exec.Command(bin, "-test.run=^$"), role, upstream)
	return c.addr, c.pid
}

// childProc is a benchmark child: its first line, its PID, and its
// stdin and stdout for requests (closing stdin ends it).
type childProc struct {
	addr string
	pid  int
	in   io.WriteCloser
	out  *bufio.Reader
}

// startChild starts cmd (the bench binary, directly or under ip netns
// exec, which execs it: the PID is the child's) in role and reads its
// first line; the child ends with the benchmark.
func startChild(b *testing.B, cmd *exec.Cmd, role, upstream string) *childProc {
	b.Helper()
	cmd.Env = append(os.Environ(), proxyRoleEnv+"="+role, proxyUpstreamEnv+"="+upstream)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", role, err)
	}
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil {
		b.Fatalf("%s: no first line: %v", role, err)
	}
	return &childProc{addr: strings.TrimSpace(line), pid: cmd.Process.Pid, in: stdin, out: out}
}

// runProxy is the child's side: serve role until stdin closes.
func runProxy(role, upstream string) error {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	go func() {
		defer cancel()
		// Requests, one a line; EOF ends the child.
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			if in.Text() == "heap" {
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				fmt.Println(ms.HeapAlloc)
			}
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	switch role {
	case "bare":
		fmt.Println(ln.Addr())
		go func() { <-ctx.Done(); ln.Close() }()
		serveBare(ln, upstream)
		return nil
	case "engine":
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		return serveEngine(ctx, port, upstream)
	case "dns":
		ln.Close()
		return serveDNS(ctx, upstream, true)
	case "dns-nocache":
		ln.Close()
		return serveDNS(ctx, upstream, false)
	case "slow-upstream":
		ln.Close()
		return serveSlowUpstream(ctx)
	case "kverdict":
		ln.Close()
		return serveKverdict(ctx)
	case "bare-dns":
		ln.Close()
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return err
		}
		fmt.Println(conn.LocalAddr())
		go func() { <-ctx.Done(); conn.Close() }()
		return serveBareDNS(conn, upstream)
	}
	return fmt.Errorf("unknown role %q", role)
}

// serveEngine runs the connection engine on port routing every connection
// to upstream, with the audit log encoded as in production (JSON) and
// discarded.
func serveEngine(ctx context.Context, port uint16, upstream string) error {
	p, err := policy.Parse([]byte(benchPolicy))
	if err != nil {
		return err
	}
	var holder atomic.Pointer[policy.Policy]
	holder.Store(p)
	up, err := netip.ParseAddrPort(upstream)
	if err != nil {
		return err
	}
	log, err := obs.NewLogger(io.Discard, "info")
	if err != nil {
		return err
	}
	eng, err := stages.New(stages.Config{
		ListenAddrs: []string{"127.0.0.1"}, Port: port,
		Policy: &holder, Audit: obs.NewAuditor(log, nil, nil), Log: log,
		OrigDst: func(*net.TCPConn) (netip.AddrPort, error) { return worldAddr, nil },
		// The engine's own dialer, pointed at the loopback server.
		DialUpstream: func(ctx context.Context, _ netip.AddrPort) (*net.TCPConn, error) {
			return stages.DialTCP(ctx, up, 0)
		},
	})
	if err != nil {
		return err
	}
	if err := eng.Listen(); err != nil {
		return err
	}
	fmt.Println(eng.Addrs()[0])
	return eng.Serve(ctx)
}

// serveDNS runs the DNS proxy of newBenchDNSProxy until ctx ends.
func serveDNS(ctx context.Context, upstream string, cache bool) error {
	p, err := newBenchDNSProxy(upstream, cache)
	if err != nil {
		return err
	}
	fmt.Println(net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.Port()))))
	return p.Serve(ctx)
}

// newBenchDNSProxy is the supervisor's DNS proxy in front of upstream,
// listening on a free port, with the audit log encoded as in production
// (JSON) and discarded, and its answer cache on (the default) or off.
func newBenchDNSProxy(upstream string, cache bool) (*fdns.Proxy, error) {
	pol, err := policy.Parse([]byte(dnsBenchPolicy))
	if err != nil {
		return nil, err
	}
	var holder atomic.Pointer[policy.Policy]
	holder.Store(pol)
	log, err := obs.NewLogger(io.Discard, "info")
	if err != nil {
		return nil, err
	}
	answerCache := 0 // the default size
	if !cache {
		answerCache = -1
	}
	p, err := fdns.New(fdns.Config{
		Upstreams: []string{upstream}, Policy: &holder, RateLimit: -1,
		Audit: obs.NewAuditor(log, nil, nil), Log: log, AnswerCacheBytes: answerCache,
	})
	if err != nil {
		return nil, err
	}
	if err := p.Listen(); err != nil {
		return nil, err
	}
	return p, nil
}
