// Package world builds the end-to-end test world of ../shared/TESTING.md:
//
//	netns world  198.51.100.1 (+.3), 2001:db8::1 (+::3)
//	             dnsmasq :53, TLS :443, HTTP :80, echo :7000, banner :2525
//	   │ veth
//	netns agent  198.51.100.2, 2001:db8::2
//	             forge-supervisor as PID 1 (own PID namespace) + the agent
//
// Names served by the world's dnsmasq:
//
//	allowed.test  → 198.51.100.1, 2001:db8::1
//	evil.test     → 198.51.100.1, 2001:db8::1 (same host, denied name)
//	other.test    → 198.51.100.3, 2001:db8::3
//	big.test      TXT records large enough to force TCP
//	_mongodb._tcp.cluster0.wild.test  SRV → shard-00.cluster0.wild.test:27017
//	_grpc_config.api.wild.test        TXT grpc_config={}
package world

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/netenv"
	"github.com/forge/forge-supervisor/tests/testpki"
)

// World is a running test world.
type World struct {
	*netenv.Pair
	Dir    string // world-readable scratch directory
	CAFile string // PEM of the CA that signed the world's TLS certificates
	routes routes // added by HandleHTTPS
}

// Ports of the world's servers.
const (
	PortHTTPS  = 443
	PortHTTP   = 80
	PortEcho   = 7000 // echoes until EOF, then closes
	PortBanner = 2525 // server speaks first: writes a banner line
)

// New builds the world and starts its servers; all is torn down in
// t.Cleanup.
func New(t *testing.T) *World {
	t.Helper()
	netenv.RequireRoot(t)
	for _, tool := range []string{"dnsmasq", "nft", "unshare", "setpriv", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (installed by .ci/run): %v", tool, err)
		}
	}
	w := Base(t, "forge-world")
	w.startDNS(t)
	w.startServers(t)
	// The agent's libc resolver asks the world's; the supervisor's nft
	// rules redirect it to the DNS proxy anyway.
	w.Agent.SetResolver(t, netenv.WorldV4)
	return w
}

// Base is a world without servers: the namespace pair, a scratch
// directory (prefix names it; readable by the agent's UID) and a test CA
// with certificates for the world's names. Suites that run servers of
// their own build on it.
func Base(t *testing.T, prefix string) *World {
	t.Helper()
	netenv.RequireRoot(t)
	p := netenv.NewPair(t)
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	ca, _, _ := testpki.WriteFiles(t, dir, "allowed.test", "evil.test", "other.test", "x.wild.test")
	return &World{Pair: p, Dir: dir, CAFile: ca}
}

func (w *World) startDNS(t *testing.T) {
	t.Helper()
	var big []string
	for i := range 40 {
		big = append(big, fmt.Sprintf("--txt-record=big.test,%s", strings.Repeat(string(rune('a'+i%26)), 200)))
	}
	args := []string{
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--listen-address=" + netenv.WorldV4.String(), "--listen-address=" + netenv.WorldV6.String(),
		"--user=root", "--pid-file=", "--port=53",
		"--address=/allowed.test/198.51.100.1", "--address=/allowed.test/2001:db8::1",
		"--address=/evil.test/198.51.100.1", "--address=/evil.test/2001:db8::1",
		"--address=/other.test/198.51.100.3", "--address=/other.test/2001:db8::3",
		"--address=/x.wild.test/198.51.100.1",
		"--cname=alias.allowed.test,allowed.test",
		// DNS service names under the allowed wildcard *.wild.test (issue
		// #12): a mongodb+srv:// client's SRV lookup, a gRPC client's
		// service-config TXT lookup.
		"--srv-host=_mongodb._tcp.cluster0.wild.test,shard-00.cluster0.wild.test,27017,0,1",
		"--txt-record=_grpc_config.api.wild.test,grpc_config={}",
	}
	args = append(args, big...)
	w.World.Start(t, "dnsmasq", args...)
	// Wait until it answers.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if out, err := w.World.Cmd("dig", "+short", "+time=1", "+tries=1", "@198.51.100.1", "allowed.test").Output(); err == nil && strings.Contains(string(out), "198.51.100.1") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("world: dnsmasq did not come up")
}

func (w *World) startServers(t *testing.T) {
	t.Helper()
	cert := testpki.Cert(t, "allowed.test", "evil.test", "other.test", "x.wild.test")
	listen := func(port int) net.Listener {
		var ln net.Listener
		if err := w.World.Do(func() (err error) {
			ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
			return err
		}); err != nil {
			t.Fatalf("world: listen :%d: %v", port, err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	handler := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if h := w.route(r); h != nil {
			h.ServeHTTP(rw, r)
			return
		}
		fmt.Fprintf(rw, "world says hello to %s via %s\n", r.Host, r.Proto)
	})
	https := &http.Server{Handler: handler, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ReadHeaderTimeout: 5 * time.Second}
	go https.ServeTLS(listen(PortHTTPS), "", "")
	plain := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go plain.Serve(listen(PortHTTP))
	t.Cleanup(func() { https.Close(); plain.Close() })
	go serveRaw(listen(PortEcho), func(c net.Conn) {
		b, _ := io.ReadAll(io.LimitReader(c, 64<<20))
		fmt.Fprintf(c, "echo %d bytes\n", len(b))
	})
	go serveRaw(listen(PortBanner), func(c net.Conn) {
		io.WriteString(c, "220 world banner\r\n")
		io.Copy(io.Discard, io.LimitReader(c, 1<<20))
	})
}

func serveRaw(ln net.Listener, fn func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			fn(c)
		}()
	}
}

// WritePolicy writes a policy file into the world's directory.
func (w *World) WritePolicy(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(w.Dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
