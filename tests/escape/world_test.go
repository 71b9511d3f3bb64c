package escape

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/netenv"
	"github.com/forge/forge-supervisor/tests/testpki"
	"github.com/forge/forge-supervisor/tests/world"
)

// farResolver is an "outside resolver" address that is not on the world's
// link: the world namespace owns it (the agent's default route leads
// there), so a query that escaped redirection would be seen.
const farResolver = "203.0.113.53"

// maxRecorded bounds what the world keeps of one TCP stream: markers sit
// in the first bytes.
const maxRecorded = 64 << 10

// stream is one TCP connection the world accepted, with every byte the
// client sent (up to maxRecorded).
type stream struct {
	Local, Remote string
	mu            sync.Mutex
	data          bytes.Buffer
}

func (s *stream) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.data.Bytes()...)
}

// escapeWorld is the world of tests/world, rebuilt so that it records
// what it receives: TCP streams on its servers, datagrams, DNS queries
// (upstream and canary resolvers log every question) and, in nftables
// sets, every packet from the agent's link by destination and protocol.
type escapeWorld struct {
	*world.World
	mu          sync.Mutex
	streams     []*stream
	datagrams   []string
	upstreamLog string
	canaryLog   string
}

func newEscapeWorld(t *testing.T) *escapeWorld {
	t.Helper()
	w := &escapeWorld{World: world.Base(t, "forge-escape")}
	p := w.Pair
	w.World.World.Run(t, "ip", "addr", "add", farResolver+"/32", "dev", "eth0")
	w.installCanary(t)
	w.startDNS(t)
	w.startTCP(t)
	w.startUDP(t)
	w.startLocalServices(t)
	w.selfCheck(t)
	p.Agent.SetResolver(t, netenv.WorldV4)
	// Unprivileged ICMP sockets allowed for everyone, so a failing ping
	// is the supervisor's doing, not the socket's.
	p.Agent.Run(t, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
	return w
}

// canaryRules record every packet that arrives from the agent's link:
// by destination, protocol and port for protocols with ports, by
// destination and protocol otherwise, and ICMP echo requests. Neighbour
// discovery and ICMP errors are not the agent's traffic.
const canaryRules = `
table inet escape_canary {
	set seen4 { type ipv4_addr . inet_proto . inet_service; flags dynamic; counter; size 65535; }
	set seen6 { type ipv6_addr . inet_proto . inet_service; flags dynamic; counter; size 65535; }
	set other4 { type ipv4_addr . inet_proto; flags dynamic; counter; size 65535; }
	set other6 { type ipv6_addr . inet_proto; flags dynamic; counter; size 65535; }
	chain input {
		type filter hook input priority -300; policy accept;
		iifname != "eth0" return
		meta l4proto { tcp, udp, udplite, sctp, dccp } meta nfproto ipv4 add @seen4 { ip daddr . meta l4proto . th dport } return
		meta l4proto { tcp, udp, udplite, sctp, dccp } meta nfproto ipv6 add @seen6 { ip6 daddr . meta l4proto . th dport } return
		icmp type echo-request add @other4 { ip daddr . meta l4proto } return
		icmpv6 type echo-request add @other6 { ip6 daddr . meta l4proto } return
		meta l4proto { icmp, ipv6-icmp } return
		meta nfproto ipv4 add @other4 { ip daddr . meta l4proto }
		meta nfproto ipv6 add @other6 { ip6 daddr . meta l4proto }
	}
}
`

// wireCanaryRules record, on the world's side of the link before any
// routing, what no host should ever receive from the pod: loopback
// destinations (the kernel drops them as martians after this hook, which
// is why an escape is invisible to the input chain) and multicast group
// reports other than the solicited-node MLD reports neighbour discovery
// needs.
const wireCanaryRules = `
table netdev escape_wire_canary {
	set lo4 { type ipv4_addr . inet_proto . inet_service; flags dynamic; size 1024; }
	set lo6 { type ipv6_addr . inet_proto . inet_service; flags dynamic; size 1024; }
	set mc4 { type ipv4_addr . inet_proto; flags dynamic; size 1024; }
	set mc6 { type ipv6_addr . inet_proto; flags dynamic; size 1024; }
	chain ingress {
		type filter hook ingress device "eth0" priority -500; policy accept;
		ip daddr 127.0.0.0/8 meta l4proto { tcp, udp } add @lo4 { ip daddr . meta l4proto . th dport }
		ip6 daddr ::1 meta l4proto { tcp, udp } add @lo6 { ip6 daddr . meta l4proto . th dport }
		meta l4proto igmp add @mc4 { ip daddr . meta l4proto }
		icmpv6 type mld2-listener-report @th,96,104 != 0xff0200000000000000000001ff add @mc6 { ip6 daddr . meta l4proto }
		icmpv6 type mld-listener-report ip6 daddr != ff02::1:ff00:0/104 add @mc6 { ip6 daddr . meta l4proto }
	}
}
`

// canarySets are the (family table set) triples seenKeys reads.
var canarySets = [][3]string{
	{"inet", "escape_canary", "seen4"}, {"inet", "escape_canary", "seen6"},
	{"inet", "escape_canary", "other4"}, {"inet", "escape_canary", "other6"},
	{"netdev", "escape_wire_canary", "lo4"}, {"netdev", "escape_wire_canary", "lo6"},
	{"netdev", "escape_wire_canary", "mc4"}, {"netdev", "escape_wire_canary", "mc6"},
}

func (w *escapeWorld) installCanary(t *testing.T) {
	t.Helper()
	f := filepath.Join(w.Dir, "canary.nft")
	if err := os.WriteFile(f, []byte(canaryRules+wireCanaryRules), 0o644); err != nil {
		t.Fatal(err)
	}
	w.World.World.Run(t, "nft", "-f", f)
}

// startLocalServices runs, as root in the agent's namespace, what shares a
// pod with the agent: a sidecar that would relay on loopback, and a
// resolver on 127.0.0.11 at an odd port like Docker's embedded DNS. Both
// record what they receive, like the world's servers.
func (w *escapeWorld) startLocalServices(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	if err := w.World.Agent.Do(func() (err error) {
		if ln, err = net.Listen("tcp", "127.0.0.1:7070"); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", "127.0.0.11:5353")
		return err
	}); err != nil {
		t.Fatalf("agent namespace: local services: %v", err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go serveEcho(recListener{Listener: ln, w: w})
	go w.recordDatagrams(pc, 5353)
}

// recordDatagrams keeps every datagram pc receives and answers it.
func (w *escapeWorld) recordDatagrams(pc net.PacketConn, port int) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		w.mu.Lock()
		w.datagrams = append(w.datagrams, fmt.Sprintf("udp :%d from %s: %q", port, from, buf[:min(n, 80)]))
		w.mu.Unlock()
		_, _ = pc.WriteTo([]byte("udp canary heard you"), from)
	}
}

// seenKeys lists the canary sets' elements as "addr . proto[ . port]".
func (w *escapeWorld) seenKeys(t *testing.T) []string {
	t.Helper()
	var keys []string
	for _, fts := range canarySets {
		set := fts[2]
		out, err := w.World.World.Cmd("nft", "-j", "list", "set", fts[0], fts[1], set).Output()
		if err != nil {
			t.Fatalf("nft list set %s: %v", set, err)
		}
		var doc struct {
			Nftables []map[string]json.RawMessage `json:"nftables"`
		}
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("nft json: %v\n%s", err, out)
		}
		for _, obj := range doc.Nftables {
			raw, ok := obj["set"]
			if !ok {
				continue
			}
			var s struct {
				Elem []json.RawMessage `json:"elem"`
			}
			_ = json.Unmarshal(raw, &s)
			for _, e := range s.Elem {
				keys = append(keys, elemKey(e))
			}
		}
	}
	return keys
}

// elemKey renders one set element of nft's JSON: a plain value, a
// {"concat": [...]}, or {"elem": {"val": ..., "counter": ...}}.
func elemKey(raw json.RawMessage) string {
	var wrapped struct {
		Elem *struct {
			Val json.RawMessage `json:"val"`
		} `json:"elem"`
	}
	if json.Unmarshal(raw, &wrapped) == nil && wrapped.Elem != nil {
		return elemKey(wrapped.Elem.Val)
	}
	var concat struct {
		Concat []any `json:"concat"`
	}
	if json.Unmarshal(raw, &concat) == nil && concat.Concat != nil {
		parts := make([]string, len(concat.Concat))
		for i, p := range concat.Concat {
			parts[i] = fmt.Sprint(p)
		}
		return strings.Join(parts, " . ")
	}
	var v any
	_ = json.Unmarshal(raw, &v)
	return fmt.Sprint(v)
}

// echHTTPSRdata is the RDATA of `1 . alpn="h2" ech="AEX+DQBB…"` in hex.
const echHTTPSRdata = "00010000010003026832000500470045fe0d0041a5002000207f44942f60bd9faa1488e2657c42117a40f6cf365ed8de5d2fd5a16678775b200004000100010012636c6f7564666c6172652d6563682e636f6d0000"

func (w *escapeWorld) startDNS(t *testing.T) {
	t.Helper()
	records := []string{
		"--address=/allowed.test/198.51.100.1", "--address=/allowed.test/2001:db8::1",
		"--address=/evil.test/198.51.100.1", "--address=/evil.test/2001:db8::1",
		"--address=/other.test/198.51.100.3", "--address=/other.test/2001:db8::3",
		"--address=/wild.test/198.51.100.1",
		// An HTTPS record with alpn h2 and an ECH config (outer name
		// cloudflare-ech.com) for the dns_https_ech vector.
		"--dns-rr=ech.wild.test,65," + echHTTPSRdata,
		"--address=/exfil.test/198.51.100.1",
	}
	run := func(logFile string, listen ...string) {
		args := []string{"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
			"--bind-interfaces", "--user=root", "--pid-file=", "--port=53",
			"--log-queries=extra", "--log-facility=" + logFile}
		for _, a := range listen {
			args = append(args, "--listen-address="+a)
		}
		w.World.World.Start(t, "dnsmasq", append(args, records...)...)
	}
	w.upstreamLog = filepath.Join(w.Dir, "upstream-dns.log")
	w.canaryLog = filepath.Join(w.Dir, "canary-dns.log")
	// The supervisor's upstream: it may see allowed names only.
	run(w.upstreamLog, netenv.WorldV4.String(), netenv.WorldV6.String())
	// Outside resolvers the agent may try to reach directly: they must
	// see nothing at all.
	run(w.canaryLog, netenv.World2V4.String(), netenv.World2V6.String(), farResolver)
	for _, srv := range []string{netenv.WorldV4.String(), farResolver} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			out, err := w.World.World.Cmd("dig", "+short", "+time=1", "+tries=1", "@"+srv, "readiness.allowed.test").Output()
			if err == nil && strings.Contains(string(out), "198.51.100.1") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("dnsmasq on %s did not come up", srv)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// dnsQueries returns the query lines of a dnsmasq log, without the
// readiness probes.
func dnsQueries(path string) []string {
	b, _ := os.ReadFile(path)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "query[") && !strings.Contains(l, "readiness.allowed.test") {
			out = append(out, l)
		}
	}
	return out
}

// recListener records every accepted connection's incoming bytes.
type recListener struct {
	net.Listener
	w *escapeWorld
}

func (l recListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	s := &stream{Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String()}
	l.w.mu.Lock()
	l.w.streams = append(l.w.streams, s)
	l.w.mu.Unlock()
	return &recConn{Conn: c, s: s}, nil
}

type recConn struct {
	net.Conn
	s *stream
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.s.mu.Lock()
		if room := maxRecorded - c.s.data.Len(); room > 0 {
			c.s.data.Write(p[:min(n, room)])
		}
		c.s.mu.Unlock()
	}
	return n, err
}

func (w *escapeWorld) listen(t *testing.T, network string, port int) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := w.World.World.Do(func() (err error) {
		ln, err = net.Listen(network, fmt.Sprintf("[::]:%d", port))
		return err
	}); err != nil {
		t.Fatalf("world: listen %s :%d: %v", network, port, err)
	}
	t.Cleanup(func() { ln.Close() })
	return recListener{Listener: ln, w: w}
}

func (w *escapeWorld) startTCP(t *testing.T) {
	t.Helper()
	cert := testpki.Cert(t, "allowed.test", "evil.test", "other.test", "x.wild.test")
	handler := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(rw, "world says hello to %s via %s\n", r.Host, r.Proto)
	})
	https := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}},
		ErrorLog:  discardLog()}
	go https.ServeTLS(w.listen(t, "tcp", 443), "", "")
	plain := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, ErrorLog: discardLog()}
	go plain.Serve(w.listen(t, "tcp", 80))
	t.Cleanup(func() { https.Close(); plain.Close() })
	for _, port := range []int{7000, 7777} {
		ln := w.listen(t, "tcp", port)
		go serveEcho(ln)
	}
}

func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			b, _ := io.ReadAll(io.LimitReader(c, 1<<20))
			fmt.Fprintf(c, "echo %d bytes\n", len(b))
		}()
	}
}

// startUDP runs UDP canaries that answer, so an escaped datagram is also
// visible to the agent.
func (w *escapeWorld) startUDP(t *testing.T) {
	t.Helper()
	for _, port := range []int{443, 9999, 9998, 9995} {
		var pc net.PacketConn
		if err := w.World.World.Do(func() (err error) {
			pc, err = net.ListenPacket("udp", fmt.Sprintf("[::]:%d", port))
			return err
		}); err != nil {
			t.Fatalf("world: udp :%d: %v", port, err)
		}
		t.Cleanup(func() { pc.Close() })
		go w.recordDatagrams(pc, port)
	}
}

func (w *escapeWorld) snapshot() ([]*stream, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*stream(nil), w.streams...), append([]string(nil), w.datagrams...)
}

// selfCheck proves the ground truth works before the supervisor runs:
// traffic from the agent namespace (no supervisor yet) must show up in the
// canary sets and the TCP record. Then the records are cleared.
func (w *escapeWorld) selfCheck(t *testing.T) {
	t.Helper()
	agent := w.World.Agent
	if err := agent.Do(func() error {
		u, err := net.Dial("udp", netenv.World2V4.String()+":9999")
		if err != nil {
			return err
		}
		defer u.Close()
		if _, err := u.Write([]byte("canary self-check")); err != nil {
			return err
		}
		c, err := net.DialTimeout("tcp", netenv.World2V4.String()+":7777", 2*time.Second)
		if err != nil {
			return err
		}
		_, err = c.Write([]byte("canary-self-check"))
		c.Close()
		return err
	}); err != nil {
		t.Fatalf("canary self-check: %v", err)
	}
	agent.Run(t, "ping", "-c1", "-W2", netenv.World2V4.String())
	agent.Run(t, "ping", "-6", "-c1", "-W2", netenv.World2V6.String())
	want := []string{world2V4 + " . udp . 9999", world2V4 + " . tcp . 7777", world2V4 + " . icmp", world2V6 + " . ipv6-icmp"}
	deadline := time.Now().Add(3 * time.Second)
	for {
		keys := w.seenKeys(t)
		missing := ""
		for _, k := range want {
			if !containsString(keys, k) {
				missing = k
			}
		}
		streams, _ := w.snapshot()
		gotTCP := false
		for _, s := range streams {
			gotTCP = gotTCP || strings.Contains(string(s.bytes()), "canary-self-check")
		}
		if missing == "" && gotTCP {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("canary self-check: missing %q (keys %v), TCP recorded %v", missing, keys, gotTCP)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, fts := range canarySets {
		w.World.World.Run(t, "nft", "flush", "set", fts[0], fts[1], fts[2])
	}
	w.mu.Lock()
	w.streams, w.datagrams = nil, nil
	w.mu.Unlock()
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
