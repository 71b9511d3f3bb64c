// Package kpath tests the kernel verdict path end to end: the supervisor
// as PID 1 with FORGE_SUPERVISOR_FAST_PATH=1, the agent's clients as UID
// 1000 in its network namespace, the world's servers recording every byte.
package kpath

import (
	"bufio"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

// micros reads "word µs ..." lines of agentcli.
func micros(t *testing.T, line, word string) time.Duration {
	t.Helper()
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != word {
		t.Fatalf("agentcli: %q, want %q", line, word)
	}
	us, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("agentcli: %q: %v", line, err)
	}
	return time.Duration(us) * time.Microsecond
}

// refused reads a denial line of agentcli: the TLS access_denied alert
// the proxy sends too, or a reset; it returns the time it took.
func refused(t *testing.T, line string) time.Duration {
	t.Helper()
	if strings.HasPrefix(line, "reset") {
		return micros(t, line, "reset")
	}
	return micros(t, line, "denied")
}

func kernelEvent(msg, sni string) func(world.Event) bool {
	return func(e world.Event) bool {
		return e.Msg() == msg && e.Str("source") == "kernel" && e.Str("sni") == sni
	}
}

// TestFastPathAllowsAndAudits: an allowed name on a learned address goes
// out directly, and its one audit line comes from the kernel path with
// conntrack's byte counts.
func TestFastPathAllowsAndAudits(t *testing.T) {
	w := newKWorld(t)
	s := w.start(t)
	w.learn(t, "other.test", "fast_tls4", "198.51.100.3 . 443")
	if got := w.cli(t, "hello", "198.51.100.3:443", "other.test"); !strings.HasPrefix(got, "ok ") {
		t.Fatalf("allowed SNI on the fast path: %q", got)
	}
	e := s.WaitEvent(kernelEvent("egress_allowed", "other.test"), 5*time.Second)
	if e.Str("reason") != "allowed_domain" || e.Str("rule") != "other.test" {
		t.Errorf("audit line %v", e)
	}
	if up, _ := e["bytes_up"].(float64); up <= 0 {
		t.Errorf("bytes_up %v: conntrack accounting missing", e["bytes_up"])
	}
	if n := s.CountEvents("egress_allowed"); n != 1 {
		t.Errorf("%d egress_allowed lines for one connection", n)
	}
}

// TestOneQueuePassAndOneEventPerFlow: an allowed fast-path connection
// costs the verdict worker one queued packet (its ClientHello: the
// handshake's bare ACK is accepted by the rules) and the auditor one
// conntrack event (its end: the event mask and socket filter drop the
// rest, about eight, in the kernel).
func TestOneQueuePassAndOneEventPerFlow(t *testing.T) {
	w := newKWorld(t)
	s := w.start(t)
	w.learn(t, "other.test", "fast_tls4", "198.51.100.3 . 443")
	const n = 3
	for range n {
		if got := w.cli(t, "hello", "198.51.100.3:443", "other.test"); !strings.HasPrefix(got, "ok ") {
			t.Fatalf("allowed SNI on the fast path: %q", got)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.CountEvents("egress_allowed") < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // any further event of these flows lands
	out, err := w.Agent.Cmd("curl", "-s", "http://127.0.0.1:15000/metrics").Output()
	if err != nil {
		t.Fatal(err)
	}
	metric := func(name string) float64 {
		for _, line := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		t.Fatalf("no %s in /metrics", name)
		return 0
	}
	if held := metric(`forge_supervisor_fast_path_packets_total{action="held"}`); held != n {
		t.Errorf("%v packets held for %d connections, want one each", held, n)
	}
	if bare := metric(`forge_supervisor_fast_path_packets_total{action="bare"}`); bare != 0 {
		t.Errorf("%v bare ACKs went through the queue, want 0 (the rules accept them)", bare)
	}
	if ev := metric("forge_supervisor_fast_path_conntrack_events_total"); ev != n {
		t.Errorf("the auditor read %v conntrack events for %d connections, want one each", ev, n)
	}
}

// TestDeniedSNIOnSharedAddress: evil.test sent to other.test's learned
// address is reset within 10 ms and the server receives no payload byte.
func TestDeniedSNIOnSharedAddress(t *testing.T) {
	w := newKWorld(t)
	s := w.start(t)
	w.learn(t, "other.test", "fast_tls4", "198.51.100.3 . 443")
	got := w.cli(t, "hello", "198.51.100.3:443", "evil.test")
	took := refused(t, got)
	e := s.WaitEvent(kernelEvent("egress_denied", "evil.test"), 5*time.Second)
	if e.Str("reason") != "not_in_allowlist" {
		t.Errorf("reason %q, want not_in_allowlist", e.Str("reason"))
	}
	if took > 10*time.Millisecond {
		t.Errorf("reset after %v, want ≤ 10 ms (connect included)", took)
	}
	conns, n := w.received("198.51.100.3:443")
	if n != 0 {
		t.Errorf("server received %d payload bytes over %d connections", n, conns)
	}
	// The server was reset too: it holds no half-open connection. (Its
	// read ended, so its handler returned; nothing to wait for.)
}

// TestSplitClientHello: a ClientHello sent one byte per segment. Held
// segments are acknowledged on the server's behalf so the rest keeps
// coming; the complete head is judged like any other, and a denied one
// sends the server nothing.
func TestSplitClientHello(t *testing.T) {
	w := newKWorld(t)
	s := w.start(t)
	w.learn(t, "other.test", "fast_tls4", "198.51.100.3 . 443")
	if got := w.cli(t, "hello", "198.51.100.3:443", "other.test", "split"); !strings.HasPrefix(got, "ok") {
		t.Fatalf("allowed split hello: %q", got)
	}
	s.WaitEvent(kernelEvent("egress_allowed", "other.test"), 5*time.Second)
	_, before := w.received("198.51.100.3:443")
	got := w.cli(t, "hello", "198.51.100.3:443", "evil.test", "split")
	if strings.HasPrefix(got, "ok") {
		t.Fatalf("denied split hello: %q", got)
	}
	e := s.WaitEvent(kernelEvent("egress_denied", "evil.test"), 5*time.Second)
	if r := e.Str("reason"); r != "not_in_allowlist" {
		t.Errorf("reason %q, want not_in_allowlist", r)
	}
	if _, after := w.received("198.51.100.3:443"); after != before {
		t.Errorf("server received %d bytes of a denied split ClientHello", after-before)
	}
	if n := s.CountEvents("egress_denied") + s.CountEvents("egress_allowed"); n != 2 {
		t.Errorf("%d audit lines for two connections", n)
	}
}

// TestReusedTuple: a connection from the same source port right after an
// allowed one must be judged afresh, never inherit the allowed verdict.
func TestReusedTuple(t *testing.T) {
	w := newKWorld(t)
	s := w.start(t, "FORGE_SUPERVISOR_LOG_LEVEL=debug")
	w.learn(t, "other.test", "fast_tls4", "198.51.100.3 . 443")
	const port = "40123"
	if got := w.cli(t, "hello", "198.51.100.3:443", "other.test", "-", port); !strings.HasPrefix(got, "ok ") {
		t.Fatalf("first connection: %q", got)
	}
	_, before := w.received("198.51.100.3:443")
	got := w.cli(t, "hello", "198.51.100.3:443", "evil.test", "-", port)
	if !strings.HasPrefix(got, "denied") && !strings.HasPrefix(got, "reset") {
		t.Fatalf("reused tuple with a denied SNI: %q", got)
	}
	s.WaitEvent(kernelEvent("egress_denied", "evil.test"), 5*time.Second)
	if _, after := w.received("198.51.100.3:443"); after != before {
		t.Errorf("server received %d bytes from the denied reuse", after-before)
	}
}

// TestFastOpenSYNData: a SYN carrying data (TCP Fast Open with a cookie
// the namespace already holds) never takes the fast path: the proxy
// inspects it, and denied requests send the server nothing.
func TestFastOpenSYNData(t *testing.T) {
	w := newKWorld(t)
	s := w.start(t)
	w.learn(t, "other.test", "fast_tls4", "198.51.100.3 . 443")
	// Root is not intercepted: its TFO connection fetches a cookie that
	// the agent's sockets then use (the cache is per namespace).
	for range 2 {
		out, err := w.Agent.Cmd(w.cliBin, "hello", "198.51.100.3:443", "other.test", "tfo").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "ok") {
			t.Fatalf("root TFO connection: %v %s", err, out)
		}
	}
	_, before := w.received("198.51.100.3:443")
	for i := range 3 {
		got := w.cli(t, "hello", "198.51.100.3:443", "evil.test", "tfo")
		if strings.HasPrefix(got, "ok") {
			t.Fatalf("denied request %d with SYN data: %q", i, got)
		}
	}
	if _, after := w.received("198.51.100.3:443"); after != before {
		t.Errorf("server received %d bytes from denied TFO requests", after-before)
	}
	if got := w.cli(t, "hello", "198.51.100.3:443", "other.test", "tfo"); !strings.HasPrefix(got, "ok") {
		t.Errorf("allowed TFO request: %q", got)
	}
	_ = s
}

// TestDualStackFallback: dual.test's IPv6 address refuses connections; curl
// and ssh fall back to IPv4 about as fast as they do directly.
func TestDualStackFallback(t *testing.T) {
	w := newKWorld(t)
	w.start(t)
	w.learn(t, "dual.test", "fast_tls6", "2001:db8::3 . 443")
	timeCurl := func(asAgent bool) (time.Duration, string) {
		args := []string{"-sS", "--max-time", "8", "-o", "/dev/null", "-w", "%{http_code}", "-k", "https://dual.test/"}
		cmd := w.Agent.Cmd("curl", args...)
		if asAgent {
			cmd = w.AsAgent("curl", args...)
		}
		start := time.Now()
		out, _ := cmd.CombinedOutput()
		return time.Since(start), string(out)
	}
	direct, _ := timeCurl(false)
	took, out := timeCurl(true)
	t.Logf("curl https://dual.test/: direct %v, agent %v (%s)", direct, took, out)
	if took > direct+time.Second {
		t.Errorf("curl fell back after %v (direct: %v)", took, direct)
	}
	// ssh: the time until it reads the server's banner (the world's
	// server says no more, so ssh is stopped there).
	timeSSH := func(asAgent bool) (time.Duration, string) {
		args := []string{"-v", "-p", "22", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=8", "dual.test", "true"}
		cmd := w.Agent.Cmd("ssh", args...)
		if asAgent {
			cmd = w.AsAgent("ssh", args...)
		}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		var log strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Remote protocol version") {
				break
			}
		}
		return time.Since(start), log.String()
	}
	direct, _ = timeSSH(false)
	took, out = timeSSH(true)
	t.Logf("ssh dual.test:22: direct %v, agent %v", direct, took)
	if !strings.Contains(out, "Remote protocol version 2.0, remote software version kpath-world") {
		t.Errorf("ssh never saw the banner over IPv4:\n%s", out)
	}
	if took > direct+time.Second {
		t.Errorf("ssh fell back after %v (direct: %v)", took, direct)
	}
}

// TestBannerOnAllowedTCP: a server-speaks-first protocol on an allowed_tcp
// port: the banner arrives without waiting for the client (no classify
// timeout on the kernel path).
func TestBannerOnAllowedTCP(t *testing.T) {
	w := newKWorld(t)
	s := w.start(t)
	w.learn(t, "allowed.test", "fast_tls4", "198.51.100.1 . 22")
	direct := micros(t, "x "+strings.Fields(runRoot(t, w, "banner", "198.51.100.1:22"))[0], "x")
	got := w.cli(t, "banner", "198.51.100.1:22")
	took := micros(t, "x "+strings.Fields(got)[0], "x")
	t.Logf("banner: direct %v, agent %v", direct, took)
	if !strings.Contains(got, "SSH-2.0-kpath-world") {
		t.Fatalf("banner: %q", got)
	}
	if took > direct+100*time.Millisecond {
		t.Errorf("banner after %v, direct %v: the kernel path waited for the client", took, direct)
	}
	_ = s
}

func runRoot(t *testing.T, w *kworld, args ...string) string {
	t.Helper()
	out, err := w.Agent.Cmd(w.cliBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("agentcli as root %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestSupervisorKilled: with the supervisor SIGKILLed mid-run, an allowed
// connection already established keeps working (the kernel forwards it
// by its ct mark), and new connections to fast-path destinations fail:
// the queue has no listener and no bypass, then the heartbeat element
// times out and nothing takes the fast path at all.
func TestSupervisorKilled(t *testing.T) {
	w := newKWorld(t)
	s := w.start(t)
	w.learn(t, "other.test", "fast_tls4", "198.51.100.3 . 443")
	hold := w.AsAgent(w.cliBin, "hello", "198.51.100.3:443", "other.test", "hold")
	stdin, err := hold.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := hold.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hold.Process.Kill(); _ = hold.Wait() }()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("held connection: %q", lines.Text())
	}
	s.Signal(syscall.SIGKILL)
	s.MustExit(5 * time.Second)

	// Within the heartbeat's life (the queue has no listener) and after it.
	for _, wait := range []time.Duration{0, 3500 * time.Millisecond} {
		time.Sleep(wait)
		if got := w.cli(t, "hello", "198.51.100.3:443", "other.test"); strings.HasPrefix(got, "ok") {
			t.Errorf("new connection %v after the kill: %q", wait, got)
		}
	}
	if _, err := stdin.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "ok") {
		t.Errorf("established connection after the kill: %q", lines.Text())
	}
}

// TestClosedRightAfterHello: the client writes a denied ClientHello and
// closes at once. Its socket has no owner by the time the segment is
// judged (and the kernel sends it from an orphan): the segment must still
// be judged by its connection's mark, never leave unjudged.
func TestClosedRightAfterHello(t *testing.T) {
	w := newKWorld(t)
	s := w.start(t)
	w.learn(t, "other.test", "fast_tls4", "198.51.100.3 . 443")
	// evil.test is denied from the policy alone; allowed.test sent to
	// other.test's address only after a fresh lookup (the cache does not
	// know the pair), which leaves the socket long closed by the verdict.
	for i := range 5 {
		for _, sni := range []string{"evil.test", "allowed.test"} {
			if got := w.cli(t, "hello", "198.51.100.3:443", sni, "fire"); got != "sent" {
				t.Fatalf("attempt %d: %q", i, got)
			}
		}
	}
	waitFor(t, "ten denials", 5*time.Second, func() bool { return s.CountEvents("egress_denied") >= 10 })
	time.Sleep(200 * time.Millisecond)
	if conns, n := w.received("198.51.100.3:443"); n != 0 {
		t.Errorf("server received %d bytes over %d connections from closed sockets", n, conns)
	}
}

// TestDryRunOnKernelPath: in a dry run the kernel path denies nothing; the
// flow's one line says egress_allowed with would_deny, and the metrics
// count it on the kernel path.
func TestDryRunOnKernelPath(t *testing.T) {
	w := newKWorld(t)
	s := w.start(t, "FORGE_SUPERVISOR_DRY_RUN=1")
	w.learn(t, "other.test", "fast_tls4", "198.51.100.3 . 443")
	if got := w.cli(t, "hello", "198.51.100.3:443", "evil.test"); !strings.HasPrefix(got, "ok") {
		t.Fatalf("dry run: %q", got)
	}
	e := s.WaitEvent(kernelEvent("egress_allowed", "evil.test"), 5*time.Second)
	if e["would_deny"] != true || e.Str("reason") != "not_in_allowlist" {
		t.Errorf("dry-run line %v", e)
	}
	out, err := w.Agent.Cmd("curl", "-s", "http://127.0.0.1:15000/metrics").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `forge_supervisor_path_connections_total{decision="would_deny",path="kernel"} 1`) ||
		!strings.Contains(string(out), "forge_supervisor_fast_path_available 1") {
		t.Errorf("metrics lack the kernel path's counts:\n%s", grepLines(string(out), "path"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestIPv6FastPath: the same judgement over IPv6: the allowed name on its
// learned address goes out, a denied one sharing it is refused and the
// server receives nothing from it.
func TestIPv6FastPath(t *testing.T) {
	w := newKWorld(t)
	s := w.start(t)
	w.learn(t, "allowed.test", "fast_tls6", "2001:db8::1 . 443")
	if got := w.cli(t, "hello", "[2001:db8::1]:443", "allowed.test"); !strings.HasPrefix(got, "ok") {
		t.Fatalf("allowed over IPv6: %q", got)
	}
	_, before := w.received("[2001:db8::1]:443")
	refused(t, w.cli(t, "hello", "[2001:db8::1]:443", "evil.test"))
	e := s.WaitEvent(kernelEvent("egress_denied", "evil.test"), 5*time.Second)
	if e.Str("dst_ip") != "2001:db8::1" {
		t.Errorf("denial line %v", e)
	}
	if _, after := w.received("[2001:db8::1]:443"); after != before {
		t.Errorf("server received %d bytes of a denied IPv6 flow", after-before)
	}
	s.WaitEvent(kernelEvent("egress_allowed", "allowed.test"), 5*time.Second)
}
