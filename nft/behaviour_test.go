package nft

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/netenv"
)

// Credentials the rules are tested against.
var (
	asAgent = []string{"--reuid", "1000", "--regid", "1000", "--clear-groups"}
	// asAgentGroup is another user in the agent's group: caught by skgid.
	asAgentGroup = []string{"--reuid", "1001", "--regid", "1000", "--clear-groups"}
	// asOtherUser shares nothing with the agent.
	asOtherUser = []string{"--reuid", "1001", "--regid", "1001", "--clear-groups"}
	// asAgentWithNetAdmin may set SO_MARK, to show the mark beats the UID.
	asAgentWithNetAdmin = append(append([]string{}, asAgent...), "--inh-caps", "+net_admin", "--ambient-caps", "+net_admin")
)

// Answers that tell the two DNS servers apart.
var (
	proxyAnswer  = netip.MustParseAddr("192.0.2.1")
	dockerAnswer = netip.MustParseAddr("192.0.2.2")
)

// commandTimeout bounds every client the test runs; nc, dig and ping are
// all given shorter timeouts of their own.
const commandTimeout = 10 * time.Second

// world is the behaviour test's fixture: an agent namespace with the
// ruleset and stand-ins for the proxies, and a world to talk to.
type world struct {
	pair      *netenv.Pair
	helper    string
	proxy4    <-chan accepted // transparent proxy stand-in, 0.0.0.0:15001
	proxy6    <-chan accepted // [::]:15001
	dns       <-chan string   // DNS proxy stand-in, :15002
	dockerDNS <-chan string   // Docker's resolver stand-in behind the DNAT
	server4   <-chan accepted // the world's 198.51.100.1:443
	server6   <-chan accepted // the world's [2001:db8::1]:443
	localSvc4 <-chan accepted // an agent-local service on 127.0.0.1:8080
	localSvc6 <-chan accepted // and on [::1]:8080
}

func newWorld(t *testing.T) *world {
	t.Helper()
	return newWorldWith(t, nil)
}

// newWorldWith is newWorld with the config changed by edit first.
func newWorldWith(t *testing.T, edit func(*Config)) *world {
	t.Helper()
	for _, tool := range []string{"nft", "setpriv", "nc", "dig", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (installed by .ci/run)", tool)
		}
	}
	pair := netenv.NewPair(t)
	addForeignTables(t, pair.Agent)
	cfg := testConfig(t, pair.Agent)
	if edit != nil {
		edit(&cfg)
	}
	if err := Install(cfg); err != nil {
		t.Fatal(err)
	}
	// ICMP datagram sockets for every group, so an unprivileged ping can
	// only fail because of our rules.
	pair.Agent.Run(t, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
	w := &world{pair: pair, helper: helperBinary(t)}
	w.proxy4 = listenTCP(t, pair.Agent, "tcp4", "0.0.0.0:15001", true)
	w.proxy6 = listenTCP(t, pair.Agent, "tcp6", "[::]:15001", true)
	w.dns = serveDNS(t, pair.Agent, ":15002", proxyAnswer)
	w.dockerDNS = serveDNS(t, pair.Agent, "127.0.0.11:5353", dockerAnswer)
	w.localSvc4 = listenTCP(t, pair.Agent, "tcp4", "127.0.0.1:8080", false)
	w.localSvc6 = listenTCP(t, pair.Agent, "tcp6", "[::1]:8080", false)
	w.server4 = listenTCP(t, pair.World, "tcp4", "198.51.100.1:443", false)
	w.server6 = listenTCP(t, pair.World, "tcp6", "[2001:db8::1]:443", false)
	return w
}

func (w *world) drain() {
	drain(w.proxy4)
	drain(w.proxy6)
	drain(w.dns)
	drain(w.dockerDNS)
	drain(w.server4)
	drain(w.server6)
	drain(w.localSvc4)
	drain(w.localSvc6)
}

// run runs a command in the agent namespace, under setpriv with creds
// unless creds is nil (root), and returns its output and error.
func (w *world) run(t *testing.T, creds []string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	argv := append([]string{name}, args...)
	if creds != nil {
		argv = append(append([]string{"setpriv"}, creds...), argv...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", w.pair.Agent.Name}, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustRun is run that fails the test on error.
func (w *world) mustRun(t *testing.T, creds []string, name string, args ...string) string {
	t.Helper()
	out, err := w.run(t, creds, nil, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// helper runs the re-executed test binary in a helper mode.
func (w *world) helperRun(t *testing.T, creds []string, mode, addr string, mark uint32) string {
	t.Helper()
	env := []string{helperEnv + "=" + mode, "FORGE_NFT_TEST_ADDR=" + addr, "FORGE_NFT_TEST_MARK=" + strconv.FormatUint(uint64(mark), 10)}
	out, err := w.run(t, creds, env, w.helper)
	if err != nil {
		t.Fatalf("helper %s %s: %v\n%s", mode, addr, err, out)
	}
	return strings.TrimSpace(out)
}

func TestBehaviour(t *testing.T) {
	w := newWorld(t)

	t.Run("agent TCP is redirected to the proxy with its original destination", func(t *testing.T) {
		for _, tc := range []struct {
			host, port string
			proxy      <-chan accepted
			want       netip.AddrPort
		}{
			{"198.51.100.1", "443", w.proxy4, netip.MustParseAddrPort("198.51.100.1:443")},
			{"198.51.100.1", "22", w.proxy4, netip.MustParseAddrPort("198.51.100.1:22")},
			{"2001:db8::1", "443", w.proxy6, netip.MustParseAddrPort("[2001:db8::1]:443")},
			{"2001:db8::3", "8443", w.proxy6, netip.MustParseAddrPort("[2001:db8::3]:8443")},
		} {
			w.drain()
			w.mustRun(t, asAgent, "nc", "-z", "-w2", tc.host, tc.port)
			ev := expect(t, tc.proxy, "proxy accept for "+tc.host)
			if ev.OrigDst != tc.want {
				t.Errorf("original destination %v, want %v", ev.OrigDst, tc.want)
			}
			expectNone(t, w.server4, "world server (v4) reached directly")
			expectNone(t, w.server6, "world server (v6) reached directly")
		}
	})

	t.Run("agent group member is redirected", func(t *testing.T) {
		w.drain()
		w.mustRun(t, asAgentGroup, "nc", "-z", "-w2", "198.51.100.1", "443")
		expect(t, w.proxy4, "proxy accept for gid 1000")
		expectNone(t, w.server4, "world server reached directly")
	})

	t.Run("other users reach the world directly", func(t *testing.T) {
		for _, creds := range [][]string{nil, asOtherUser} {
			w.drain()
			w.mustRun(t, creds, "nc", "-z", "-w2", "198.51.100.1", "443")
			ev := expect(t, w.server4, "world server (v4)")
			if ev.Remote.Addr() != netenv.AgentV4 {
				t.Errorf("world saw %v, want the agent's address", ev.Remote)
			}
			w.mustRun(t, creds, "nc", "-z", "-w2", "2001:db8::1", "443")
			expect(t, w.server6, "world server (v6)")
			expectNone(t, w.proxy4, "proxy (v4)")
			expectNone(t, w.proxy6, "proxy (v6)")
		}
	})

	t.Run("IPv6 neighbour discovery still works", func(t *testing.T) {
		w.drain()
		w.mustRun(t, nil, "ip", "-6", "neigh", "flush", "all")
		w.mustRun(t, nil, "ip", "neigh", "flush", "all")
		w.mustRun(t, nil, "nc", "-z", "-w2", "2001:db8::1", "443")
		expect(t, w.server6, "world server (v6) after flushing neighbours")
		out := w.mustRun(t, nil, "ip", "-6", "neigh", "show", "2001:db8::1")
		if !strings.Contains(out, "lladdr") {
			t.Errorf("no resolved neighbour entry for 2001:db8::1: %q", out)
		}
	})

	t.Run("marked sockets are exempt even under the agent's UID", func(t *testing.T) {
		w.drain()
		if got := w.helperRun(t, asAgentWithNetAdmin, "dial", "198.51.100.1:443", DefaultMark); got != "dial: connected" {
			t.Fatalf("marked dial as uid 1000: %s", got)
		}
		expect(t, w.server4, "world server via marked socket")
		expectNone(t, w.proxy4, "proxy via marked socket")
		if got := w.helperRun(t, asAgentWithNetAdmin, "dial", "[2001:db8::1]:443", DefaultMark); got != "dial: connected" {
			t.Fatalf("marked v6 dial as uid 1000: %s", got)
		}
		expect(t, w.server6, "world server (v6) via marked socket")

		// The same credentials without the mark are redirected.
		if got := w.helperRun(t, asAgentWithNetAdmin, "dial", "198.51.100.1:443", 0); got != "dial: connected" {
			t.Fatalf("unmarked dial as uid 1000: %s", got)
		}
		expect(t, w.proxy4, "proxy via unmarked socket")
		expectNone(t, w.server4, "world server via unmarked socket")

		// And the supervisor's own case: root with the mark.
		var res string
		if err := w.pair.Agent.Do(func() error {
			res = helperDial("198.51.100.1:443", DefaultMark)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if res != "dial: connected" {
			t.Fatalf("marked dial as root: %s", res)
		}
		expect(t, w.server4, "world server via root's marked socket")
		expectNone(t, w.proxy4, "proxy via root's marked socket")
	})

	t.Run("agent TCP to loopback goes to the proxy, which decides", func(t *testing.T) {
		w.drain()
		w.mustRun(t, asAgent, "nc", "-z", "-w2", "127.0.0.1", "8080")
		if ev := expect(t, w.proxy4, "proxy accept for 127.0.0.1:8080"); ev.OrigDst != netip.MustParseAddrPort("127.0.0.1:8080") {
			t.Errorf("original destination %v, want 127.0.0.1:8080", ev.OrigDst)
		}
		w.mustRun(t, asAgent, "nc", "-z", "-w2", "::1", "8080")
		if ev := expect(t, w.proxy6, "proxy accept for [::1]:8080"); ev.OrigDst != netip.MustParseAddrPort("[::1]:8080") {
			t.Errorf("original destination %v, want [::1]:8080", ev.OrigDst)
		}
		expectNone(t, w.localSvc4, "local service (v4) reached directly")
		expectNone(t, w.localSvc6, "local service (v6) reached directly")
	})

	t.Run("agent UDP to an undeclared local port is rejected", func(t *testing.T) {
		w.drain()
		// Docker's embedded DNS behind its DNAT listens on a random port.
		if got := w.helperRun(t, asAgent, "udp", "127.0.0.11:5353", 0); !strings.Contains(got, "errno=EPERM") {
			t.Errorf("agent UDP to 127.0.0.11:5353: %s, want EPERM", got)
		}
		expectNone(t, w.dockerDNS, "local UDP service")
		// Root is not the agent.
		out := w.mustRun(t, nil, "dig", "+short", "+tries=1", "+time=2", "-p", "5353", "@127.0.0.11", "example.test", "A")
		if strings.TrimSpace(out) != dockerAnswer.String() {
			t.Errorf("root's UDP to 127.0.0.11:5353 answered %q", out)
		}
		expect(t, w.dockerDNS, "local UDP service for root")
	})

	t.Run("spoofed sources are dropped before the DNS proxy", func(t *testing.T) {
		for _, tc := range []struct{ src, dst string }{
			{"198.51.100.3", "198.51.100.1:53"},
			{"2001:db8::3", "[2001:db8::2]:53"},
			{"2001:db8::3", "[2001:db8::1]:53"},
			{"10.9.9.9", "127.0.0.1:53"},
		} {
			w.drain()
			t.Setenv("FORGE_NFT_TEST_SRC", tc.src)
			got := w.helperRun(t, asAgent, "udpfrom", tc.dst, 0)
			expectNone(t, w.dns, "DNS proxy answering spoofed "+tc.src)
			t.Logf("from %s to %s: %s", tc.src, tc.dst, got)
		}
		// The pod's own addresses are sources the agent may use.
		for _, tc := range []struct{ src, dst string }{
			{"198.51.100.2", "198.51.100.1:53"},
			{"2001:db8::2", "[2001:db8::1]:53"},
			{"127.0.0.1", "127.0.0.1:53"},
		} {
			w.drain()
			t.Setenv("FORGE_NFT_TEST_SRC", tc.src)
			if got := w.helperRun(t, asAgent, "udpfrom", tc.dst, 0); got != "udpfrom: sent" {
				t.Errorf("from %s: %s", tc.src, got)
			}
			expect(t, w.dns, "DNS proxy query from local source "+tc.src)
		}
	})

	t.Run("loopback destinations never leave by another device", func(t *testing.T) {
		w.pair.World.Run(t, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1", "net.ipv4.conf.eth0.route_localnet=1")
		heard := listenUDP(t, w.pair.World, "127.0.0.1:9998")
		t.Setenv("FORGE_NFT_TEST_DEV", "eth0")
		for _, dst := range []string{"127.0.0.1:9998", "127.0.0.1:53"} {
			got := w.helperRun(t, asAgent, "udpfrom", dst, 0)
			t.Logf("bound to eth0, to %s: %s", dst, got)
		}
		expectNone(t, heard, "world heard a loopback datagram sent out of eth0")
		// Root's bound socket is not the agent's: it does leave, which
		// proves the probe would see an escape.
		if got := w.helperRun(t, nil, "udpfrom", "127.0.0.1:9998", 0); got != "udpfrom: sent" {
			t.Fatalf("root: %s", got)
		}
		expect(t, heard, "root's loopback datagram out of eth0 (control)")
	})

	t.Run("agent DNS to any address reaches the DNS proxy", func(t *testing.T) {
		for _, tc := range []struct {
			server, transport string
			tcp               bool
		}{
			{"192.0.2.53", "udp", false},
			{"192.0.2.53", "tcp", true},
			{"2001:db8::53", "udp", false},
			{"2001:db8::53", "tcp", true},
			// Docker's embedded resolver: our nat chain runs first.
			{"127.0.0.11", "udp", false},
			{"127.0.0.11", "tcp", true},
		} {
			w.drain()
			args := []string{"+short", "+tries=1", "+time=2", "@" + tc.server, "example.test", "A"}
			if tc.tcp {
				args = append([]string{"+tcp"}, args...)
			}
			out := w.mustRun(t, asAgent, "dig", args...)
			if strings.TrimSpace(out) != proxyAnswer.String() {
				t.Errorf("dig @%s over %s answered %q, want %s from the DNS proxy", tc.server, tc.transport, out, proxyAnswer)
			}
			if q := expect(t, w.dns, "DNS proxy query"); q != "example.test. "+tc.transport {
				t.Errorf("DNS proxy saw %q, want example.test. over %s", q, tc.transport)
			}
			expectNone(t, w.dockerDNS, "Docker's resolver")
		}
	})

	t.Run("root DNS to 127.0.0.11 still reaches Docker's resolver", func(t *testing.T) {
		w.drain()
		out := w.mustRun(t, nil, "dig", "+short", "+tries=1", "+time=2", "@127.0.0.11", "example.test", "A")
		if strings.TrimSpace(out) != dockerAnswer.String() {
			t.Errorf("root's dig @127.0.0.11 answered %q, want %s from Docker's resolver", out, dockerAnswer)
		}
		expect(t, w.dockerDNS, "Docker's resolver")
		expectNone(t, w.dns, "DNS proxy")
	})

	t.Run("agent UDP fails immediately", func(t *testing.T) {
		for _, addr := range []string{"198.51.100.1:443", "198.51.100.1:9999", "[2001:db8::1]:443"} {
			got := w.helperRun(t, asAgent, "udp", addr, 0)
			errno, after, ok := parseUDPOutcome(got)
			if !ok {
				t.Errorf("UDP to %s: %s, want an immediate error", addr, got)
				continue
			}
			// EPERM: the netfilter verdict fails send(2) itself.
			if errno != "EPERM" {
				t.Errorf("UDP to %s failed with %s, want EPERM from the reject", addr, errno)
			}
			if after > time.Second {
				t.Errorf("UDP to %s took %s to fail", addr, after)
			}
		}
		// The same from root is not rejected: it waits for a reply.
		if got := w.helperRun(t, nil, "udp", "198.51.100.1:9999", 0); strings.Contains(got, "EPERM") {
			t.Errorf("root's UDP was rejected: %s", got)
		}
	})

	t.Run("agent ping fails at once", func(t *testing.T) {
		for _, dst := range []string{"198.51.100.1", "2001:db8::1"} {
			out, err := w.run(t, asAgent, nil, "ping", "-c1", "-W1", dst)
			if err == nil {
				t.Errorf("ping %s as the agent succeeded:\n%s", dst, out)
			}
			// IPv4 reports the reject as EPERM from sendmsg, IPv6 as the
			// ICMPv6 error our reject sends back.
			if !strings.Contains(out, "not permitted") && !strings.Contains(out, "Administratively prohibited") {
				t.Errorf("ping %s as the agent failed without our reject:\n%s", dst, out)
			}
			w.mustRun(t, nil, "ping", "-c1", "-W2", dst) // root still can
		}
		// Loopback stays reachable.
		w.mustRun(t, asAgent, "ping", "-c1", "-W2", "127.0.0.1")
	})
}

// parseUDPOutcome reads "udp: errno=EPERM after=1ms".
func parseUDPOutcome(s string) (errno string, after time.Duration, ok bool) {
	rest, found := strings.CutPrefix(s, "udp: errno=")
	if !found {
		return "", 0, false
	}
	errno, d, found := strings.Cut(rest, " after=")
	if !found {
		return "", 0, false
	}
	after, err := time.ParseDuration(d)
	return errno, after, err == nil
}
