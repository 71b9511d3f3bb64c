package bench

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// concurrencyLevels are the numbers of agents' connections in flight at
// once in BenchmarkConnectConcurrency: one client, a busy agent, a build
// fetching dependencies in parallel.
var concurrencyLevels = []int{1, 8, 32}

// BenchmarkConnectConcurrency is BenchmarkConnectFirstBytePlain with c
// clients at once: each op, for each path in turn, c goroutines each open
// a connection, send a request and read the first byte. It reports the
// latency each path adds over direct at the same concurrency, p50 and p99.
func BenchmarkConnectConcurrency(b *testing.B) {
	up := bulkUpstream(b, 1)
	eng := startProxy(b, "engine", up)
	_, hap := startHAProxy(b, tlsUpstream(b), up)
	bare := startProxy(b, "bare", up)
	paths := []struct{ name, addr string }{{"direct", up}, {"bare", bare}, {"engine", eng}, {"haproxy", hap}}
	for _, c := range concurrencyLevels {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			lat := map[string][]time.Duration{}
			var mu sync.Mutex
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// Paths in turn, so noise hits all of them alike.
				for _, p := range paths {
					var wg sync.WaitGroup
					errs := make(chan error, c)
					for range c {
						wg.Add(1)
						go func() {
							defer wg.Done()
							d, err := plainFirstByte(p.addr)
							if err != nil {
								errs <- fmt.Errorf("%s: %w", p.name, err)
								return
							}
							mu.Lock()
							lat[p.name] = append(lat[p.name], d)
							mu.Unlock()
						}()
					}
					wg.Wait()
					close(errs)
					if err := <-errs; err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			reportLatency(b, "direct", lat, []string{"bare", "engine", "haproxy"}, c)
		})
	}
}

// plainFirstByte connects, sends a request and reads the first byte.
func plainFirstByte(addr string) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"); err != nil {
		return 0, err
	}
	if _, err := c.Read(make([]byte, 1)); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
