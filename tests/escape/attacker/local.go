package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The supervisor's ports (defaults of the interface contract).
const (
	healthPort = 15000
	proxyPort  = 15001
	dnsPort    = 15002
)

// proxyDirect: talk to the transparent proxy's own port, hoping it treats
// the request as an explicit proxy request and forwards it.
// proxyAllowed is the control of the proxyDirect vectors: the agent uses
// the supervisor's own address as its HTTP proxy (HTTPS_PROXY=
// http://127.0.0.1:15001, as the fallback advertises) for an allowed name,
// and is served under the policy (issue #18).
func proxyAllowed(r *Result) {
	c, err := dialFlow(r, "127.0.0.1", proxyPort)
	if err != nil {
		r.Observed = "error"
		r.note("connect: %v", err)
		return
	}
	defer c.Close()
	fmt.Fprintf(c, "GET http://allowed.test/%s HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n", marker(r.Vector))
	b, err := readAll(c)
	if !strings.Contains(string(b), "world says hello to allowed.test") {
		r.Observed = "error"
		r.note("no answer from allowed.test through the proxy: %q %v", clip(b), err)
		return
	}
	r.Observed = allowed
	r.note("served through the advertised proxy address")
}

// selfPort connects to one of the supervisor's own ports on the pod's
// address: redirected to the proxy, it must be denied as a loop.
func selfPort(ip string, port int) vectorFunc {
	return func(r *Result) { send(r, ip, port, []byte(fill(r, "GET /%s HTTP/1.1\r\nHost: %s.evil.test\r\n\r\n"))) }
}

func proxyDirect(ip string) vectorFunc {
	return func(r *Result) {
		head := fmt.Sprintf("GET http://%s.evil.test/ HTTP/1.1\r\nHost: %s.evil.test\r\n\r\n", marker(r.Vector), marker(r.Vector))
		send(r, ip, proxyPort, []byte(head))
	}
}

// healthReadOnly: the health server is reachable from the agent; it must
// only answer GETs and must not reveal what the agent sent beyond names.
func healthReadOnly(r *Result) { healthReadOnlyAt("127.0.0.1")(r) }

// healthReadOnlyAt is healthReadOnly on another local address (the pod's
// own): nft lets the agent reach the health port directly on any local
// address, so it must be as read-only there.
func healthReadOnlyAt(ip string) vectorFunc {
	return func(r *Result) { checkHealthReadOnly(r, "http://"+net.JoinHostPort(ip, strconv.Itoa(healthPort))) }
}

func checkHealthReadOnly(r *Result, base string) {
	client := &http.Client{Timeout: 3 * time.Second}
	get := func(path string) (int, string) {
		resp, err := client.Get(base + path)
		if err != nil {
			r.note("GET %s: %v", path, err)
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		return resp.StatusCode, string(b)
	}
	for _, p := range []string{"/healthz", "/readyz", "/denials", "/metrics"} {
		code, body := get(p)
		r.note("GET %s %d", p, code)
		if code != http.StatusOK {
			r.Observed = "error"
		}
		secret := os.Getenv("ESCAPE_SECRET")
		if secret != "" && strings.Contains(body, secret) {
			r.escape("%s reveals the request's secret token", p)
		}
		if p == "/denials" && strings.Contains(body, "/esc-path") {
			r.escape("/denials reveals request paths")
		}
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		for _, p := range []string{"/denials", "/healthz", "/metrics"} {
			req, _ := http.NewRequest(m, base+p, strings.NewReader("{}"))
			resp, err := client.Do(req)
			if err != nil {
				r.note("%s %s: %v", m, p, err)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				r.escape("%s %s answered %d, want 405", m, p, resp.StatusCode)
			}
		}
	}
	r.note("POST/PUT/DELETE checked")
}

// goroutines reads go_goroutines from the supervisor's /metrics.
func goroutines() (int, error) {
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://127.0.0.1:" + strconv.Itoa(healthPort) + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	return 0, fmt.Errorf("no go_goroutines in /metrics")
}

// slowloris: many clients that send nothing (to a denied IP) or a partial
// ClientHello (to the world) and then stall. The supervisor must close
// each by its classification deadline and its goroutine count must come
// back to where it was.
const (
	slowSilent  = 40
	slowPartial = 20
	slowHold    = 4 * time.Second
	// slowSlack: goroutines that may legitimately differ between two
	// samples (metrics scrape, DNS workers, timers).
	slowSlack = 8
)

func slowloris(r *Result) {
	before, err := goroutines()
	if err != nil {
		r.Observed = "error"
		r.note("baseline: %v", err)
		return
	}
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		closed int
		open   int
	)
	start := func(ip string, port int, prefix []byte) {
		defer wg.Done()
		var fr Result
		c, err := dialFlow(&fr, ip, port)
		if err != nil {
			return
		}
		defer c.Close()
		mu.Lock()
		r.Flows = append(r.Flows, fr.Flows...)
		mu.Unlock()
		if prefix != nil {
			_, _ = c.Write(prefix)
		}
		_ = c.SetReadDeadline(time.Now().Add(slowHold))
		_, err = io.Copy(io.Discard, c)
		mu.Lock()
		defer mu.Unlock()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			open++
		} else {
			closed++
		}
	}
	partial := rawClientHello([]byte(marker(r.Vector)+".evil.test"), nil)[:20]
	for range slowSilent {
		wg.Add(1)
		go start(otherV4, 7777, nil)
	}
	for range slowPartial {
		wg.Add(1)
		go start(worldV4, 443, partial)
	}
	time.Sleep(300 * time.Millisecond)
	during, _ := goroutines()
	wg.Wait()
	var after int
	for range 50 {
		after, _ = goroutines()
		if after <= before+slowSlack {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.note("goroutines before=%d during=%d after=%d; %d closed by the supervisor, %d still open after %v", before, during, after, closed, open, slowHold)
	if open > 0 {
		r.escape("%d silent connections outlived the classification deadline", open)
	}
	if after > before+slowSlack {
		r.escape("goroutines did not return to baseline (%d → %d)", before, after)
	}
}
