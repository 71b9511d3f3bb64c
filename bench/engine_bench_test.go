// Package bench holds the performance budgets of forge-supervisor as
// go test benchmarks. Every figure is measured side by side in one run —
// direct connection, through the engine, through a peer (HAProxy) — and
// reported as a ratio, because the machines are shared and noisy.
package bench

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/internal/testkit"
	"github.com/forge/forge-supervisor/tests/testpki"
)

const benchPolicy = `{"profile":"standard","mode":"allowlist","allowed_domains":["allowed.test"],
 "tool_domains":[],"all_domains":["allowed.test"],"verify_sni_ip":false}`

// worldAddr is the "original destination" every engine connection claims;
// DialUpstream routes it to the loopback server (loopback itself is an
// always-blocked destination for the policy).
var worldAddr = netip.MustParseAddrPort("198.51.100.1:443")

func freePort(b *testing.B) uint16 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// startHAProxy runs HAProxy 2.6 in TCP mode with an SNI ACL in front of
// tlsUpstream, and a plain TCP frontend in front of bulkUpstream: the peer
// a sidecar user would compare us with. Skips when haproxy is missing.
func startHAProxy(b *testing.B, tlsUpstream, bulkUpstream string) (tlsAddr, bulkAddr string) {
	b.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		b.Skip("haproxy not installed (.ci/run installs it)")
	}
	p1, p2 := freePort(b), freePort(b)
	cfg := haproxyConfig(p1, p2, tlsUpstream, bulkUpstream)
	dir := b.TempDir()
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	tlsAddr, bulkAddr = fmt.Sprintf("127.0.0.1:%d", p1), fmt.Sprintf("127.0.0.1:%d", p2)
	waitListening(b, tlsAddr)
	waitListening(b, bulkAddr)
	return tlsAddr, bulkAddr
}

// haproxyConfig is the peer's configuration: an SNI ACL in front of
// tlsUpstream on port p1, plain TCP to bulkUpstream on p2.
func haproxyConfig(p1, p2 uint16, tlsUpstream, bulkUpstream string) string {
	return fmt.Sprintf(`global
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend sni
  bind 127.0.0.1:%d
  tcp-request inspect-delay 1s
  tcp-request content accept if { req_ssl_hello_type 1 }
  use_backend up if { req.ssl_sni -i allowed.test }
  default_backend deny
frontend bulk
  bind 127.0.0.1:%d
  default_backend bulk
backend up
  server s %s
backend bulk
  server s %s
backend deny
  tcp-request content reject
`, p1, p2, tlsUpstream, bulkUpstream)
}

func waitListening(b *testing.B, addr string) {
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("%s never listened", addr)
}

// tlsUpstream answers one HTTP request per TLS connection.
func tlsUpstream(b *testing.B) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{testpki.Cert(b, "allowed.test")}})
	if err != nil {
		b.Fatal(err)
	}
	return serveEach(b, ln, func(c net.Conn) {
		if skipRequestHead(c) == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		}
	})
}

// bulkUpstream reads a request head, then streams size bytes.
func bulkUpstream(b *testing.B, size int) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 256<<10)
	return serveEach(b, ln, func(c net.Conn) {
		_ = skipRequestHead(c)
		for left := size; left > 0; left -= len(chunk) {
			if _, err := c.Write(chunk[:min(left, len(chunk))]); err != nil {
				return
			}
		}
	})
}

// serveEach runs handle for every connection ln accepts, closing each
// after; ln is closed when the benchmark ends.
func serveEach(b *testing.B, ln net.Listener, handle func(net.Conn)) string {
	b.Cleanup(func() { ln.Close() })
	go testkit.AcceptEach(ln, handle)
	return ln.Addr().String()
}

// skipRequestHead reads up to the blank line that ends a request head.
// Bytes buffered past the head are dropped: the benchmarks' clients send
// nothing after it.
func skipRequestHead(c net.Conn) error {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if line == "\r\n" {
			return nil
		}
	}
}

// connectOnce does a full TLS handshake, one request, and reads the first
// response byte: connection setup plus first byte, as an agent sees it.
func connectOnce(addr string, cfg *tls.Config) (time.Duration, error) {
	start := time.Now()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"); err != nil {
		return 0, err
	}
	if _, err := c.Read(make([]byte, 1)); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// BenchmarkConnectFirstByte measures TLS connection setup + first byte,
// direct vs through the engine vs through HAProxy, and reports p50/p99
// and the added latency over direct.
func BenchmarkConnectFirstByte(b *testing.B) {
	up := tlsUpstream(b)
	eng := startProxy(b, "engine", up)
	hap, _ := startHAProxy(b, up, bulkUpstream(b, 1))
	bare := startProxy(b, "bare", up)
	// No session cache: every op is a full handshake.
	cfg := &tls.Config{ServerName: "allowed.test", RootCAs: testpki.Pool(b)}
	paths := withBaseline(b, []struct{ name, addr string }{{"direct", up}, {"bare", bare}, {"engine", eng}, {"haproxy", hap}}, up)
	lat := map[string][]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Interleave the paths so noise hits all three alike.
		for _, p := range paths {
			d, err := connectOnce(p.addr, cfg)
			if err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
			lat[p.name] = append(lat[p.name], d)
		}
	}
	b.StopTimer()
	reportLatency(b, "direct", lat, others(paths), 1)
}

// BenchmarkBulkThroughput streams 64 MiB per op and reports MB/s per path
// and the ratio to direct.
func BenchmarkBulkThroughput(b *testing.B) {
	const size = 64 << 20
	up := bulkUpstream(b, size)
	eng := startProxy(b, "engine", up)
	_, hap := startHAProxy(b, tlsUpstream(b), up)
	bare := startProxy(b, "bare", up)
	paths := withBaseline(b, []struct{ name, addr string }{{"direct", up}, {"bare", bare}, {"engine", eng}, {"haproxy", hap}}, up)
	total := map[string]time.Duration{}
	// A large read buffer, as a bulk client would use: io.Discard's 8 KiB
	// ReadFrom would make the reader, not the path, the bottleneck.
	rbuf := make([]byte, 256<<10)
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, p := range paths {
			start := time.Now()
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				b.Fatal(err)
			}
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
			n, err := readAll(c, rbuf)
			c.Close()
			if err != nil || n != size {
				b.Fatalf("%s: %d bytes, %v", p.name, n, err)
			}
			total[p.name] += time.Since(start)
		}
	}
	b.StopTimer()
	mbps := func(d time.Duration) float64 { return float64(size) * float64(b.N) / d.Seconds() / 1e6 }
	for _, p := range paths {
		b.ReportMetric(mbps(total[p.name]), p.name+"_MB/s")
	}
	for _, name := range []string{"bare", "engine", "haproxy"} {
		ratio := mbps(total[name]) / mbps(total["direct"])
		b.ReportMetric(ratio, name+"/direct")
		recordPoint(b, point{Kind: pointThroughput, Path: name, Concurrency: 1, Value: ratio})
	}
	if _, ok := total["baseline"]; ok {
		b.ReportMetric(mbps(total["baseline"])/mbps(total["direct"]), "baseline/direct")
	}
}

// others are the paths compared with the first (direct).
func others(paths []struct{ name, addr string }) []string {
	var out []string
	for _, p := range paths[1:] {
		out = append(out, p.name)
	}
	return out
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// BenchmarkConnectFirstBytePlain is the same measurement over plain HTTP:
// no cryptography, so the figure is the proxy's own cost (accept, five
// stage hand-offs, classification, policy, upstream connect, relay start).
func BenchmarkConnectFirstBytePlain(b *testing.B) {
	up := bulkUpstream(b, 1)
	eng := startProxy(b, "engine", up)
	_, hap := startHAProxy(b, tlsUpstream(b), up)
	bare := startProxy(b, "bare", up)
	paths := withBaseline(b, []struct{ name, addr string }{{"direct", up}, {"bare", bare}, {"engine", eng}, {"haproxy", hap}}, up)
	lat := map[string][]time.Duration{}
	buf := make([]byte, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, p := range paths {
			start := time.Now()
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				b.Fatal(err)
			}
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
			if _, err := c.Read(buf); err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
			lat[p.name] = append(lat[p.name], time.Since(start))
			c.Close()
		}
	}
	b.StopTimer()
	reportLatency(b, paths[0].name, lat, others(paths), 1)
}

// reportLatency reports p50/p99 per path and the added latency over base,
// and records the added latency at concurrency conc for docs/bench.png.
func reportLatency(b *testing.B, base string, lat map[string][]time.Duration, others []string, conc int) {
	d50, d99 := pct(lat[base], 50), pct(lat[base], 99)
	b.ReportMetric(float64(d50.Microseconds()), base+"_p50_us")
	b.ReportMetric(float64(d99.Microseconds()), base+"_p99_us")
	for _, name := range others {
		p50, p99 := pct(lat[name], 50), pct(lat[name], 99)
		b.ReportMetric(float64(p50.Microseconds()), name+"_p50_us")
		b.ReportMetric(float64(p99.Microseconds()), name+"_p99_us")
		b.ReportMetric(float64((p50 - d50).Microseconds()), name+"_added_p50_us")
		b.ReportMetric(float64((p99 - d99).Microseconds()), name+"_added_p99_us")
		recordPoint(b, point{Kind: pointAddedP50, Path: name, Concurrency: conc, Value: float64((p50 - d50).Microseconds())})
		recordPoint(b, point{Kind: pointAddedP99, Path: name, Concurrency: conc, Value: float64((p99 - d99).Microseconds())})
	}
}

// readAll reads c to EOF into buf, returning the byte count.
func readAll(c net.Conn, buf []byte) (int64, error) {
	var n int64
	for {
		m, err := c.Read(buf)
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
