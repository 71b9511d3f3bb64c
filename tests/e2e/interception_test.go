package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

// table is the supervisor's nftables table as `nft list tables` names it.
const table = "inet forge_supervisor"

func hasTable(t *testing.T, w *world.World) bool {
	t.Helper()
	for _, tb := range w.Tables(t) {
		if tb == table {
			return true
		}
	}
	return false
}

// TestTableLifecycle: the table exists exactly while the supervisor runs,
// and is removed both when the agent exits and when the supervisor is
// told to stop.
func TestTableLifecycle(t *testing.T) {
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	if hasTable(t, w) {
		t.Fatal("table present before any supervisor ran")
	}

	t.Run("agent exits", func(t *testing.T) {
		gate := filepath.Join(w.SharedDir(t), "go")
		s := w.StartSupervisor(t, pol, nil, "sh", "-c", "while [ ! -e "+gate+" ]; do sleep 0.05; done; exit 0")
		s.WaitReady()
		if !hasTable(t, w) {
			t.Fatalf("no %s while the supervisor runs; tables: %v", table, w.Tables(t))
		}
		if err := os.WriteFile(gate, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if code := s.MustExit(10 * time.Second); code != 0 {
			t.Fatalf("exit %d, want the agent's 0", code)
		}
		if hasTable(t, w) {
			t.Fatalf("%s left behind after the agent exited", table)
		}
	})

	t.Run("SIGTERM", func(t *testing.T) {
		s := w.StartSupervisor(t, pol, nil, "sleep", "600")
		s.WaitReady()
		if !hasTable(t, w) {
			t.Fatalf("no %s while the supervisor runs", table)
		}
		s.Signal(syscall.SIGTERM)
		if code := s.MustExit(10 * time.Second); code != 128+int(syscall.SIGTERM) {
			t.Errorf("exit %d, want 143 (sleep killed by the forwarded SIGTERM)", code)
		}
		if hasTable(t, w) {
			t.Fatalf("%s left behind after SIGTERM", table)
		}
	})
}

// foreignRuleset stands for what Docker and a distribution firewall leave
// in a container's namespace: a NAT for the embedded resolver and an inet
// filter table with a counter.
const foreignRuleset = `
table ip docker_like {
	chain out {
		type nat hook output priority -100; policy accept;
		ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:5353
	}
}
table inet filter {
	chain output {
		type filter hook output priority 0; policy accept;
		tcp dport 9 counter drop
		counter accept
	}
}
`

// TestForeignTablesUntouched: tables that are not the supervisor's read
// the same, rule for rule, before start, while running and after stop.
func TestForeignTablesUntouched(t *testing.T) {
	w := world.New(t)
	w.NFTApply(t, foreignRuleset)
	list := func() string {
		return w.ListTableStateless(t, "ip", "docker_like") + w.ListTableStateless(t, "inet", "filter")
	}
	before := list()
	if !strings.Contains(before, "dnat to 127.0.0.11:5353") || !strings.Contains(before, "tcp dport 9") {
		t.Fatalf("foreign ruleset not loaded as written:\n%s", before)
	}

	pol := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	s := w.StartSupervisor(t, pol, nil, "sleep", "600")
	s.WaitReady()
	// Traffic through both tables while ours is there.
	if code, _, err := w.Curl("https://allowed.test/"); code != "200" {
		t.Fatalf("curl with foreign tables present: %s %v", code, err)
	}
	if during := list(); during != before {
		t.Errorf("foreign tables changed by start:\nbefore:\n%s\nduring:\n%s", before, during)
	}
	s.Signal(syscall.SIGTERM)
	s.MustExit(10 * time.Second)
	if after := list(); after != before {
		t.Errorf("foreign tables changed by stop:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if got := w.Tables(t); len(got) != 2 {
		t.Errorf("tables after stop: %v, want only the two foreign ones", got)
	}
}

// TestAgentTCPReachesProxy: TCP from the agent's UID to any world address,
// v4 and v6, is decided by the proxy, which audits the original
// destination.
func TestAgentTCPReachesProxy(t *testing.T) {
	w, s := startAllowlist(t)
	for _, c := range []struct{ fam, dst, url string }{
		{"-4", "198.51.100.1", "http://allowed.test/"},
		{"-6", "2001:db8::1", "http://allowed.test/"},
		{"-4", "198.51.100.3", "http://198.51.100.3/"},
		{"-6", "2001:db8::3", "http://[2001:db8::3]/"},
	} {
		code, body, _ := w.Curl(c.fam, c.url)
		e := lastEgress(t, s, func(e world.Event) bool { return e.Str("dst_ip") == c.dst })
		if e.Str("source") != "transparent" {
			t.Errorf("%s: audit source %q, want transparent: %v", c.dst, e.Str("source"), e)
		}
		// allowed.test is in the policy; a bare address is not.
		wantAllowed := strings.Contains(c.url, "allowed.test")
		if wantAllowed != (e.Msg() == "egress_allowed") || wantAllowed != (code == "200") {
			t.Errorf("%s: curl %s, audit %v", c.dst, code, e)
		}
		if !wantAllowed && strings.Contains(body, "world says hello") {
			t.Errorf("%s: denied request reached the world: %q", c.dst, body)
		}
	}
}

// TestAgentDNSToAnyServerReachesProxy: the agent's port-53 queries to any
// address are answered by the supervisor. Nothing serves DNS at
// 198.51.100.3, and 203.0.113.9 is no host at all, so an answer is proof of
// the redirect.
func TestAgentDNSToAnyServerReachesProxy(t *testing.T) {
	w, s := startAllowlist(t)
	// The DNS proxy listens on loopback only: the redirect in OUTPUT
	// rewrites IPv4 to 127.0.0.1 and IPv6 to ::1, so both still arrive.
	for _, server := range []string{"198.51.100.3", "203.0.113.9", "2001:db8::3"} {
		n := s.CountEvents("dns_allowed")
		out, err := w.AsAgent("dig", "+short", "+time=2", "+tries=1", "@"+server, "allowed.test", "A").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "198.51.100.1" {
			t.Fatalf("dig @%s allowed.test: %v %q", server, err, out)
		}
		s.WaitEvent(func(e world.Event) bool {
			// docs/audit-events.md promises a trailing dot; the
			// supervisor writes none. Either names the query.
			return e.Msg() == "dns_allowed" && strings.TrimSuffix(e.Str("qname"), ".") == "allowed.test" && s.CountEvents("dns_allowed") > n
		}, 5*time.Second)
		// And TCP DNS to the same address.
		out, err = w.AsAgent("dig", "+tcp", "+short", "+time=2", "+tries=1", "@"+server, "allowed.test", "A").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "198.51.100.1" {
			t.Fatalf("dig +tcp @%s allowed.test: %v %q", server, err, out)
		}
	}
}

// udpProbe sends twice on a connected UDP socket from bash (/dev/udp) as
// the agent and reports how it went.
func udpProbe(w *world.World, dst string, port int) (string, time.Duration) {
	script := fmt.Sprintf(`exec 3<>/dev/udp/%s/%d || exit 10; printf one >&3 || exit 11; printf two >&3 || exit 12; exit 0`, dst, port)
	start := time.Now()
	out, err := w.AsAgent("bash", "-c", script).CombinedOutput()
	return fmt.Sprintf("%v: %s", err, strings.TrimSpace(string(out))), time.Since(start)
}

// TestAgentOtherUDPAndICMPRejected: UDP that is not DNS fails at once for
// the agent and never reaches the world; so does ping.
func TestAgentOtherUDPAndICMPRejected(t *testing.T) {
	w, _ := startAllowlist(t)

	// Canaries in the world on the probed ports.
	got := make(chan string, 16)
	for _, port := range []int{443, 9999} {
		var pc net.PacketConn
		if err := w.World.Do(func() (err error) {
			pc, err = net.ListenPacket("udp", fmt.Sprintf("198.51.100.1:%d", port))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				got <- fmt.Sprintf("%s from %s: %q", pc.LocalAddr(), from, buf[:n])
			}
		}()
	}

	for _, port := range []int{443, 9999} {
		res, took := udpProbe(w, "198.51.100.1", port)
		if strings.HasPrefix(res, "<nil>") {
			t.Errorf("udp :%d: both sends succeeded (%s)", port, res)
		}
		if took > time.Second {
			t.Errorf("udp :%d: failure took %v, want immediate", port, took)
		}
		t.Logf("udp :%d as the agent: %s in %v", port, res, took)
	}
	// Root's UDP is not the agent's: the canary must hear it, which also
	// proves the canaries work.
	if out, err := w.Agent.Cmd("bash", "-c", "printf root >/dev/udp/198.51.100.1/9999").CombinedOutput(); err != nil {
		t.Fatalf("root udp send: %v %s", err, out)
	}
	deadline := time.After(2 * time.Second)
	for {
		select {
		case m := <-got:
			if !strings.Contains(m, `"root"`) {
				t.Fatalf("world canary received agent UDP: %s", m)
			}
			goto pinged
		case <-deadline:
			t.Fatal("world canary never heard root's datagram")
		}
	}
pinged:
	select {
	case m := <-got:
		t.Fatalf("world canary received more: %s", m)
	case <-time.After(200 * time.Millisecond):
	}

	// Unprivileged ICMP sockets for every group, so a failing ping is the
	// rule's and not the kernel's default.
	w.Agent.Run(t, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
	if out, err := w.Agent.Cmd("ping", "-c1", "-W1", "198.51.100.1").CombinedOutput(); err != nil {
		t.Fatalf("root ping (control): %v %s", err, out)
	}
	start := time.Now()
	out, err := w.AsAgent("ping", "-c1", "-W1", "198.51.100.1").CombinedOutput()
	if err == nil {
		t.Errorf("agent ping succeeded: %s", out)
	}
	t.Logf("agent ping: %v in %v: %s", err, time.Since(start), strings.TrimSpace(string(out)))
	out, err = w.AsAgent("ping", "-6", "-c1", "-W1", "2001:db8::1").CombinedOutput()
	if err == nil {
		t.Errorf("agent ping -6 succeeded: %s", out)
	}
}

// TestRootNotRedirected: a root process in the agent's namespace is not the
// agent; its TCP reaches the world directly and is not audited.
func TestRootNotRedirected(t *testing.T) {
	w, s := startAllowlist(t)
	out, err := w.Agent.Cmd("curl", "-sS", "--max-time", "5", "http://198.51.100.3/").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "world says hello to 198.51.100.3") {
		t.Fatalf("root curl: %v %q", err, out)
	}
	// The agent's same request is denied, so an audit event would exist
	// had root's been proxied; give the proxy time to write one.
	code, _, _ := w.Curl("http://198.51.100.3/")
	lastEgress(t, s, func(e world.Event) bool { return e.Str("dst_ip") == "198.51.100.3" })
	if code == "200" {
		t.Errorf("agent's request to a bare address was allowed")
	}
	n := 0
	for _, e := range s.Events() {
		if strings.HasPrefix(e.Msg(), "egress_") && e.Str("dst_ip") == "198.51.100.3" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d egress events for 198.51.100.3, want 1 (the agent's only)", n)
	}
}

// TestSecondSupervisorLeavesOneTable: two supervisors in one namespace
// never leave two tables (each install replaces the table atomically).
func TestSecondSupervisorLeavesOneTable(t *testing.T) {
	w, _ := startAllowlist(t)
	pol := w.WritePolicy(t, "second.json", allowlist)
	gate := filepath.Join(w.SharedDir(t), "go")
	s2 := w.StartLaunch(t, world.Launch{Policy: pol, Env: []string{
		"FORGE_SUPERVISOR_PROXY_PORT=16001", "FORGE_SUPERVISOR_DNS_PORT=16002", "FORGE_SUPERVISOR_HEALTH_PORT=16000",
	}}, "sh", "-c", "while [ ! -e "+gate+" ]; do sleep 0.05; done")
	s2.WaitReady()
	if n := w.CountTables(t, "forge_supervisor"); n != 1 {
		t.Fatalf("%d forge_supervisor tables with two supervisors running, want 1: %v", n, w.Tables(t))
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s2.MustExit(10 * time.Second)
	// The second one's exit removes the shared table: the first supervisor
	// now runs without interception. Record it; it is the price of one
	// fixed table name per namespace.
	t.Logf("after the second supervisor exited: %d forge_supervisor tables", w.CountTables(t, "forge_supervisor"))
}

// dropNetAdmin runs the supervisor without CAP_NET_ADMIN: setpriv removes
// it from the bounding and inheritable sets right before the binary, after
// ip netns exec and unshare used theirs.
var dropNetAdmin = []string{"setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin"}

// TestFallbackWithoutNetAdmin: without CAP_NET_ADMIN the supervisor says
// so, reports fallback readiness, and its explicit proxy (advertised in
// the agent's environment) still enforces the policy.
//
// The second case also drops CAP_NET_RAW, as a Kubernetes pod that drops
// ALL capabilities would: SO_MARK on the supervisor's upstream sockets
// then needs a capability it does not have.
func TestFallbackWithoutNetAdmin(t *testing.T) {
	t.Run("net_admin", func(t *testing.T) { testFallback(t, dropNetAdmin) })
	t.Run("net_admin+net_raw", func(t *testing.T) {
		testFallback(t, []string{"setpriv", "--inh-caps=-net_admin,-net_raw", "--bounding-set=-net_admin,-net_raw"})
	})
}

func testFallback(t *testing.T, drop []string) {
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	dir := w.SharedDir(t)
	gate := filepath.Join(dir, "go")
	curl := "curl -sS --max-time 8 --cacert " + w.CAFile + " -o /dev/null -w '%{http_code} %{http_connect}'"
	// The environment is written first: the test reads it once the
	// curl results are there.
	script := fmt.Sprintf(`env | grep -i _proxy= | sort >%[2]s/env
%[1]s https://allowed.test/ >%[2]s/allowed 2>&1; echo " rc=$?" >>%[2]s/allowed
%[1]s https://evil.test/ >%[2]s/evil 2>&1; echo " rc=$?" >>%[2]s/evil
while [ ! -e %[3]s ]; do sleep 0.05; done`, curl, dir, gate)
	s := w.StartLaunch(t, world.Launch{Policy: pol, Wrap: drop}, "sh", "-c", script)
	s.WaitReady()

	e := s.WaitEvent(func(e world.Event) bool { return e.Msg() == "interception_degraded" }, 5*time.Second)
	if !strings.Contains(e.Str("reason"), "CAP_NET_ADMIN") || e.Str("mode") != "fallback" {
		t.Errorf("interception_degraded: %v", e)
	}
	if hasTable(t, w) {
		t.Errorf("%s installed without CAP_NET_ADMIN?", table)
	}
	code, body, err := world.Get(w.AgentHTTP(), "http://127.0.0.1:15000/readyz")
	if err != nil || !strings.Contains(string(body), `"interception":"fallback"`) {
		t.Errorf("/readyz: %d %v %s", code, err, body)
	}

	read := func(name string) string {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil && strings.Contains(string(b), "rc=") {
				return strings.TrimSpace(string(b))
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("agent never wrote %s\nstdout:\n%s", name, s.Out.String())
		return ""
	}
	if got := read("allowed"); !strings.HasPrefix(got, "200 200") || !strings.HasSuffix(got, "rc=0") {
		t.Errorf("allowed via fallback proxy: %q, want CONNECT 200 then 200", got)
	}
	if got := read("evil"); !strings.Contains(got, "403") || strings.HasSuffix(got, "rc=0") {
		t.Errorf("denied via fallback proxy: %q, want CONNECT 403 and a curl failure", got)
	}
	env, _ := os.ReadFile(filepath.Join(dir, "env"))
	for _, want := range []string{"HTTPS_PROXY=http://127.0.0.1:15001", "ALL_PROXY=socks5h://127.0.0.1:15001"} {
		if !strings.Contains(string(env), want) {
			t.Errorf("agent environment lacks %s:\n%s", want, env)
		}
	}
	denied := lastEgress(t, s, func(e world.Event) bool { return e.Str("host") == "evil.test" || e.Str("sni") == "evil.test" })
	if denied.Msg() != "egress_denied" || denied.Str("source") != "explicit" {
		t.Errorf("fallback denial audit: %v", denied)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s.MustExit(10 * time.Second)
}

// TestRequireKernelRefusesWithoutNetAdmin: with REQUIRE_KERNEL the missing
// capability is a startup error and the agent never runs.
func TestRequireKernelRefusesWithoutNetAdmin(t *testing.T) {
	w := world.New(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", allowlist)
	marker := filepath.Join(w.SharedDir(t), "agent-ran")
	s := w.StartLaunch(t, world.Launch{Policy: pol, Wrap: dropNetAdmin, Env: []string{"FORGE_SUPERVISOR_REQUIRE_KERNEL=1"}},
		"touch", marker)
	code := s.MustExit(10 * time.Second)
	if code == 0 {
		t.Fatalf("exit 0 without CAP_NET_ADMIN under REQUIRE_KERNEL")
	}
	stderr := s.Err.String()
	if !strings.Contains(stderr, "CAP_NET_ADMIN") || !strings.Contains(stderr, "REQUIRE_KERNEL") {
		t.Errorf("stderr does not name the missing capability and the setting: %q", stderr)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the agent ran")
	}
	if s.CountEvents("agent_started") != 0 {
		t.Errorf("agent_started logged")
	}
	t.Logf("exit %d, stderr: %s", code, strings.TrimSpace(stderr))
}

// TestStartupTime records how long the supervisor takes from process start
// to serving (policy, nft install, listeners), as it reports itself.
func TestStartupTime(t *testing.T) {
	_, s := startAllowlist(t)
	e := s.WaitEvent(func(e world.Event) bool { return e.Msg() == "supervisor_started" }, 5*time.Second)
	ms, _ := e["startup_ms"].(float64)
	if e.Str("interception") != "kernel" || ms <= 0 {
		t.Errorf("supervisor_started: %v", e)
	}
	t.Logf("startup (policy + nft install + listeners): %.2f ms", ms)
}
