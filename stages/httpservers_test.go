package stages

import (
	"bufio"
	"fmt"
	"github.com/forge/forge-supervisor/conn"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// realServer is an HTTP/1.1 server of some other implementation at addr;
// served lists the Host of every request it served.
type realServer struct {
	name   string
	addr   string
	served func() []string
}

// pythonServer runs testdata/hostserver.py (Python's http.server).
func pythonServer(t *testing.T) realServer {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skipf("needs python3: %v", err)
	}
	cmd := exec.Command(py, "-u", "testdata/hostserver.py")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var (
		mu    sync.Mutex
		hosts []string
	)
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if p, ok := strings.CutPrefix(line, "PORT "); ok {
				port <- p
			} else if h, ok := strings.CutPrefix(line, "SERVED "); ok {
				mu.Lock()
				hosts = append(hosts, h)
				mu.Unlock()
			}
		}
	}()
	select {
	case p := <-port:
		return realServer{name: "python http.server", addr: "127.0.0.1:" + p, served: func() []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), hosts...)
		}}
	case <-time.After(10 * time.Second):
		t.Fatal("python server did not start")
	}
	return realServer{}
}

// goServer is Go's net/http.
func goServer(t *testing.T) realServer {
	u := newRecordingUpstream(t)
	return realServer{name: "Go net/http", addr: u.addr, served: u.seen}
}

// nginxServer runs nginx (Debian nginx-light, installed by .ci/run) with
// an access log of the host of every request it served.
func nginxServer(t *testing.T) realServer {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			t.Skipf("needs nginx (installed by .ci/run): %v", err)
		}
		bin = "/usr/sbin/nginx"
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logFile := filepath.Join(dir, "hosts.log")
	conf := fmt.Sprintf(`daemon off; worker_processes 1; pid %[1]s/nginx.pid; error_log stderr;
events { worker_connections 64; }
http {
  log_format hosts '$host';
  access_log %[2]s hosts;
  client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
  server { listen %[3]s; server_name _; location / { return 200 "served $host\n"; } }
}
`, dir, logFile, addr)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	// Its own process group: the workers die with the master.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("nginx did not start")
		}
	}
	return realServer{name: "nginx", addr: addr, served: func() []string {
		b, _ := os.ReadFile(logFile)
		return strings.Fields(string(b))
	}}
}

// TestHTTPSmugglingAgainstRealServers sends the HTTP framing vectors of
// issue #11 (items 4, 5, 6) through the engine to real servers — Python's
// http.server, Go's net/http, nginx — and requires that none of them ever
// serves denied.test, and that each connection is denied with its reason.
// On the old gate Python served denied.test for every vector.
func TestHTTPSmugglingAgainstRealServers(t *testing.T) {
	smuggled := "GET /x HTTP/1.1\r\nHost: denied.test\r\n\r\n"
	type vector struct {
		name   string
		first  string // sent and answered first; "" skips
		second string
		reason string
	}
	vectors := []vector{
		{"absolute-form target ≠ Host", "", "GET http://allowed.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n", ReasonHostMismatch},
		{"CL.0 GET", "", fmt.Sprintf("GET / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: %d\r\n\r\n%s", len(smuggled), smuggled), ReasonBodyOnBodiless},
		{"CL.0 HEAD", "", fmt.Sprintf("HEAD / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: %d\r\n\r\n%s", len(smuggled), smuggled), ReasonBodyOnBodiless},
		{"CL.0 OPTIONS", "", fmt.Sprintf("OPTIONS / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: %d\r\n\r\n%s", len(smuggled), smuggled), ReasonBodyOnBodiless},
		{"CL.0 DELETE chunked", "", fmt.Sprintf("DELETE / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled), ReasonBodyOnBodiless},
	}
	for _, prefix := range []string{"\x0c", "\x0b", "\x85", " ", "\x00"} {
		vectors = append(vectors, vector{fmt.Sprintf("refused upgrade, then %q", prefix), wsUpgrade, prefix + smuggled, ReasonMalformedHTTP})
	}
	for _, mk := range []func(*testing.T) realServer{pythonServer, goServer, nginxServer} {
		srv := mk(t)
		t.Run(srv.name, func(t *testing.T) {
			for _, v := range vectors {
				t.Run(v.name, func(t *testing.T) {
					h := newHarness(t, false, map[uint16]string{80: srv.addr})
					h.to(worldIP, 80)
					c, br := dialEngine(t, h)
					if v.first != "" {
						io.WriteString(c, v.first)
						if b := readBody(t, br); !strings.Contains(b, "allowed.test") {
							t.Fatalf("first answer %q", b)
						}
					}
					io.WriteString(c, v.second)
					rest, _ := io.ReadAll(br)
					if strings.Contains(string(rest), "denied.test") {
						t.Errorf("the server answered for denied.test: %q", rest)
					}
					checkEvent(t, h.events(1)[0], map[string]any{"msg": "egress_denied", "reason": v.reason})
					time.Sleep(100 * time.Millisecond) // let the server log what it served
					for _, host := range srv.served() {
						if conn.NormHost(strings.Split(host, ":")[0]) != "allowed.test" {
							t.Errorf("%s served %q", srv.name, host)
						}
					}
				})
			}
		})
	}
}

// TestHTTPControlsAgainstRealServers: what real clients do keeps working
// with every server — keep-alive, a GET with an empty body, a POST body
// that holds a request, a HEAD, an absolute-form request naming its Host.
func TestHTTPControlsAgainstRealServers(t *testing.T) {
	reqs := []string{
		"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 37\r\n\r\nGET / HTTP/1.1\r\nHost: denied.test\r\n\r\n",
		"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
		"HEAD / HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
	}
	for _, mk := range []func(*testing.T) realServer{pythonServer, goServer, nginxServer} {
		srv := mk(t)
		t.Run(srv.name, func(t *testing.T) {
			h := newHarness(t, false, map[uint16]string{80: srv.addr})
			h.to(worldIP, 80)
			c, br := dialEngine(t, h)
			for _, r := range reqs {
				io.WriteString(c, r)
				resp, err := readResponse(br, strings.HasPrefix(r, "HEAD"))
				if err != nil || resp != 200 {
					t.Fatalf("request %q: status %d, %v", r, resp, err)
				}
			}
			c.Close()
			checkEvent(t, h.events(1)[0], map[string]any{"msg": "egress_allowed", "reason": "allowed_domain"})
			for _, host := range srv.served() {
				if conn.NormHost(strings.Split(host, ":")[0]) != "allowed.test" {
					t.Errorf("%s served %q", srv.name, host)
				}
			}
		})
	}
}

// readResponse reads one response (of a HEAD request when head) and its
// body, and returns its status.
func readResponse(br *bufio.Reader, head bool) (int, error) {
	req := &http.Request{Method: "GET"}
	if head {
		req.Method = "HEAD"
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}
