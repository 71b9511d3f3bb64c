package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dnsperfSeconds bounds each dnsperf run; seven targets keep the whole
// comparison near 30 s.
const dnsperfSeconds = 3

const dnsBenchPolicy = `{"mode":"allowlist","allowed_domains":["*.allowed.test","allowed.test"]}`

// BenchmarkDNSComparison measures, in one run and interleaved so noise hits
// all alike, the realistic query mix of dnsMix against an upstream that
// answers after upstreamDelay (a resolver one hop away):
//
//   - direct: asking the upstream itself;
//   - proxy: the supervisor's DNS proxy as deployed (answer cache on);
//   - proxy_nocache: the same with its answer cache off (every query
//     forwarded, as before the cache);
//   - dnsmasq_cache / dnsmasq: dnsmasq forwarding, its cache on (the
//     default) and off;
//   - unbound: unbound forwarding to the upstream, its cache on;
//   - bare: the bare Go forwarder (serveBareDNS), the floor for forwarding
//     in Go.
//
// Every server runs in a process of its own. b.N sequential queries per
// target give latency percentiles; then dnsperf gives each target's
// throughput. The cache hit rate is that of the mix: the share of queries
// that repeat an earlier question (every TTL outlives the run).
func BenchmarkDNSComparison(b *testing.B) {
	dnsmasq := dnsLookPath(b, "dnsmasq")
	upstream, upstreamPID := startProxyPID(b, "slow-upstream", "")
	dnsWaitAnswering(b, upstream)
	cached, cachedPID := dnsStartDnsmasqPID(b, dnsmasq, "--server="+dnsmasqServer(upstream))
	forwarder, forwarderPID := dnsStartDnsmasqPID(b, dnsmasq, "--server="+dnsmasqServer(upstream), "--cache-size=0")
	proxy, proxyPID := startProxyPID(b, "dns", upstream)
	dnsWaitAnswering(b, proxy)
	nocache, nocachePID := startProxyPID(b, "dns-nocache", upstream)
	dnsWaitAnswering(b, nocache)
	bare, barePID := startProxyPID(b, "bare-dns", upstream)
	dnsWaitAnswering(b, bare)
	type target struct {
		name, addr string
		pid        int // the process answering at addr, for its CPU time
	}
	targets := []target{
		{"direct", upstream, upstreamPID}, {"bare", bare, barePID},
		{"proxy", proxy, proxyPID}, {"proxy_nocache", nocache, nocachePID},
		{"dnsmasq_cache", cached, cachedPID}, {"dnsmasq", forwarder, forwarderPID},
	}
	if unbound, unboundPID, ok := dnsStartUnbound(b, upstream); ok {
		targets = append(targets, target{"unbound", unbound, unboundPID})
	}

	mix := dnsMix()
	lat := make(map[string][]time.Duration)
	conns := make(map[string]*dns.Conn)
	for _, tg := range targets {
		c, err := dns.Dial("udp", tg.addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[tg.name] = c
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		q := mix[i%len(mix)]
		for _, tg := range targets {
			lat[tg.name] = append(lat[tg.name], dnsAsk(b, conns[tg.name], q))
		}
	}
	b.StopTimer()
	b.ReportMetric(distinctShare(mix, min(b.N, len(mix))), "hit_rate_latency")

	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	direct := dnsPct(lat["direct"], 50)
	for _, tg := range targets {
		b.ReportMetric(us(dnsPct(lat[tg.name], 50)), tg.name+"_p50_µs")
		b.ReportMetric(us(dnsPct(lat[tg.name], 99)), tg.name+"_p99_µs")
		if tg.name != "direct" {
			b.ReportMetric(us(dnsPct(lat[tg.name], 50)-direct), tg.name+"_added_p50_µs")
		}
	}

	perf, err := exec.LookPath("dnsperf")
	if err != nil {
		b.Logf("dnsperf not installed: throughput skipped")
		return
	}
	data := filepath.Join(b.TempDir(), "queries")
	if err := os.WriteFile(data, []byte(dnsperfData(mix)), 0o644); err != nil {
		b.Fatal(err)
	}
	qps := make(map[string]float64)
	for _, tg := range targets {
		before := dnsProcCPU(b, tg.pid)
		var done int
		qps[tg.name], done = dnsperfRun(b, perf, data, tg.addr)
		b.ReportMetric(qps[tg.name], tg.name+"_qps")
		if done > 0 {
			cpu := dnsProcCPU(b, tg.pid) - before
			b.ReportMetric(us(cpu)/float64(done), tg.name+"_cpu_µs/q")
		}
		if tg.name == "proxy" && done > 0 {
			// dnsperf cycles through the file: after the first pass
			// every question repeats.
			b.ReportMetric(1-float64(distinctQuestions(mix))/float64(done), "hit_rate_dnsperf")
		}
	}
	ratio := func(a, b2 string) {
		if qps[b2] > 0 && qps[a] > 0 {
			b.ReportMetric(qps[a]/qps[b2], a+"/"+b2+"_qps")
			// For docs/bench.png: DNS throughput against its peers.
			recordPoint(b, point{Kind: pointThroughput, Path: "dns " + a + "/" + b2, Concurrency: 1, Value: qps[a] / qps[b2]})
		}
	}
	ratio("proxy", "direct")
	ratio("proxy", "dnsmasq_cache")
	ratio("proxy", "unbound")
	ratio("proxy_nocache", "dnsmasq")
	ratio("bare", "dnsmasq")
}

// distinctQuestions is how many different questions mix asks.
func distinctQuestions(mix []mixQuery) int {
	seen := make(map[mixQuery]bool)
	for _, q := range mix {
		seen[q] = true
	}
	return len(seen)
}

func dnsAsk(b *testing.B, c *dns.Conn, mq mixQuery) time.Duration {
	q := new(dns.Msg)
	q.SetQuestion(mq.name, mq.qtype)
	start := time.Now()
	_ = c.SetDeadline(start.Add(2 * time.Second))
	if err := c.WriteMsg(q); err != nil {
		b.Fatal(err)
	}
	r, err := c.ReadMsg()
	d := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		b.Fatalf("%s %s: answer %s with %d records", mq.name, dns.TypeToString[mq.qtype], dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	return d
}

// dnsStartUnbound runs unbound (Debian's) forwarding everything to
// upstream, with its cache, no DNSSEC validation (the test zone is not
// signed) and the RFC 6761 test. zone unblocked; false when unbound is not
// installed.
func dnsStartUnbound(b *testing.B, upstream string) (string, int, bool) {
	b.Helper()
	bin := ""
	for _, p := range []string{"unbound", "/usr/sbin/unbound"} {
		if path, err := exec.LookPath(p); err == nil {
			bin = path
			break
		}
	}
	if bin == "" {
		b.Logf("unbound not installed (Debian package unbound): its row skipped")
		return "", 0, false
	}
	port := dnsFreePort(b)
	host, upPort, _ := net.SplitHostPort(upstream)
	conf := filepath.Join(b.TempDir(), "unbound.conf")
	text := fmt.Sprintf(`server:
	interface: 127.0.0.1
	port: %d
	do-daemonize: no
	username: ""
	chroot: ""
	directory: "%s"
	pidfile: ""
	use-syslog: no
	logfile: ""
	verbosity: 0
	num-threads: 2
	access-control: 127.0.0.0/8 allow
	do-not-query-localhost: no
	module-config: "iterator"
	local-zone: "test." nodefault
	qname-minimisation: no
	auto-trust-anchor-file: ""
forward-zone:
	name: "."
	forward-addr: %s@%s
`, port, filepath.Dir(conf), host, upPort)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-d", "-c", conf)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatalf("start unbound: %v", err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	dnsWaitAnswering(b, addr)
	return addr, cmd.Process.Pid, true
}

var (
	dnsperfQPSLine  = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	dnsperfDoneLine = regexp.MustCompile(`Queries completed:\s+([0-9]+)`)
)

// dnsperfRun runs dnsperf against addr for dnsperfSeconds with 100
// queries outstanding and returns its queries per second and how many
// queries completed.
func dnsperfRun(b *testing.B, perf, data, addr string) (float64, int) {
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), (dnsperfSeconds+10)*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, perf, "-s", host, "-p", port, "-d", data,
		"-l", strconv.Itoa(dnsperfSeconds), "-c", "4", "-q", "100", "-t", "2").CombinedOutput()
	if err != nil {
		b.Fatalf("dnsperf %s: %v\n%s", addr, err, out)
	}
	m := dnsperfQPSLine.FindSubmatch(out)
	if m == nil {
		b.Fatalf("dnsperf %s: no qps in output:\n%s", addr, out)
	}
	// DNSPERF_LOG=1 shows dnsperf's whole report (lost queries, rcodes,
	// latency spread) with -v.
	if os.Getenv("DNSPERF_LOG") != "" {
		b.Logf("dnsperf %s:\n%s", addr, out)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	done := 0
	if m := dnsperfDoneLine.FindSubmatch(out); m != nil {
		done, _ = strconv.Atoi(string(m[1]))
	}
	return v, done
}

// dnsProcCPU is the user+system CPU time process pid has used so far
// (/proc/PID/stat fields 14 and 15, in USER_HZ = 100 ticks per second).
func dnsProcCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses: state is
	// field 3, so utime (14) and stime (15) are at 11 and 12.
	rest := raw[bytes.LastIndexByte(raw, ')')+2:]
	f := strings.Fields(string(rest))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func dnsLookPath(b *testing.B, name string) string {
	for _, p := range []string{name, "/usr/sbin/" + name} {
		if bin, err := exec.LookPath(p); err == nil {
			return bin
		}
	}
	b.Skipf("%s not installed (Debian package %s)", name, name)
	return ""
}

func dnsmasqServer(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	return host + "#" + port
}

// dnsStartDnsmasq runs dnsmasq in the foreground on a free loopback port,
// with no config file, resolv.conf or hosts file, and stops it in cleanup.
func dnsStartDnsmasq(b *testing.B, bin string, args ...string) string {
	b.Helper()
	addr, _ := dnsStartDnsmasqPID(b, bin, args...)
	return addr
}

// dnsStartDnsmasqPID is dnsStartDnsmasq that also returns the process ID.
func dnsStartDnsmasqPID(b *testing.B, bin string, args ...string) (string, int) {
	b.Helper()
	port := dnsFreePort(b)
	cmd := exec.Command(bin, append([]string{
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--listen-address=127.0.0.1", "--bind-interfaces", "--port=" + strconv.Itoa(int(port)),
		"--pid-file=", "--user=root", "--log-facility=-",
	}, args...)...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatalf("start dnsmasq: %v", err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	dnsWaitAnswering(b, addr)
	return addr, cmd.Process.Pid
}

// dnsStartProxy runs the supervisor's DNS proxy in front of upstream with
// the audit log encoded as in production (JSON) but discarded.
func dnsStartProxy(b *testing.B, upstream string) string {
	b.Helper()
	p, err := newBenchDNSProxy(upstream, true)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("proxy Serve: %v", err)
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.Port())))
	dnsWaitAnswering(b, addr)
	return addr
}

func dnsWaitAnswering(b *testing.B, addr string) {
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	q := new(dns.Msg)
	q.SetQuestion("allowed.test.", dns.TypeA)
	for range 50 {
		if r, _, err := c.Exchange(q, addr); err == nil && r.Rcode == dns.RcodeSuccess {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("no DNS answer from %s", addr)
}

func dnsFreePort(b *testing.B) uint16 {
	for range 16 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		pc.Close()
		if err == nil {
			l.Close()
			return uint16(port)
		}
	}
	b.Fatal("no port free on both udp and tcp")
	return 0
}

func dnsPct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// dnsLoadClients is how many concurrent clients BenchmarkDNSProxyLoad runs:
// enough to keep both cores of the test machine busy through the proxy.
const dnsLoadClients = 32

// BenchmarkDNSProxyLoad drives the proxy over loopback from concurrent
// clients (each one query outstanding) in front of a dnsmasq upstream. It
// exists to be profiled (-cpuprofile): the CPU the proxy spends per query.
func BenchmarkDNSProxyLoad(b *testing.B) {
	dnsmasq := dnsLookPath(b, "dnsmasq")
	upstream := dnsStartDnsmasq(b, dnsmasq, "--address=/allowed.test/198.51.100.1")
	proxy := dnsStartProxy(b, upstream)
	b.SetParallelism((dnsLoadClients + 1) / 2)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := dns.Dial("udp", proxy)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		for pb.Next() {
			dnsAsk(b, c, mixQuery{name: "www.allowed.test.", qtype: dns.TypeA})
		}
	})
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "µs/query")
}

// BenchmarkDNSProxyDnsperf runs dnsperf (100 queries outstanding) through
// the proxy for dnsperfSeconds per iteration; with -cpuprofile it shows
// where the proxy spends its CPU under the comparison's load.
func BenchmarkDNSProxyDnsperf(b *testing.B) {
	dnsmasq := dnsLookPath(b, "dnsmasq")
	perf := dnsLookPath(b, "dnsperf")
	upstream := dnsStartDnsmasq(b, dnsmasq, "--address=/allowed.test/198.51.100.1")
	proxy := dnsStartProxy(b, upstream)
	data := filepath.Join(b.TempDir(), "queries")
	if err := os.WriteFile(data, []byte("allowed.test A\nwww.allowed.test A\napi.allowed.test AAAA\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		before := dnsProcCPU(b, os.Getpid())
		qps, done := dnsperfRun(b, perf, data, proxy)
		b.ReportMetric(qps, "qps")
		if done > 0 {
			b.ReportMetric(float64((dnsProcCPU(b, os.Getpid())-before).Microseconds())/float64(done), "cpu_µs/q")
		}
	}
}
