package stages

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/policy"
	"github.com/forge/forge-supervisor/procid"
	"github.com/forge/forge-supervisor/sockdiag"
	"github.com/forge/forge-supervisor/tests/testpki"
)

const gitOnlyRego = `package forge.egress
default decision := {"allow": false, "reason": "not_git"}
decision := {"allow": true, "reason": "git", "rule": "git_only"} if {
	input.kind == "tcp"
	input.name == "allowed.test"
	input.process.exe == "/usr/bin/git"
}`

// fakeOwners answers Identify by the client's source port, and records the
// 4-tuples it was asked.
type fakeOwners struct {
	mu     sync.Mutex
	byPort map[uint16]*policy.Process
	asked  [][2]netip.AddrPort
}

func (f *fakeOwners) identify(_ context.Context, src, dst netip.AddrPort) *policy.Process {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, [2]netip.AddrPort{src, dst})
	if p := f.byPort[src.Port()]; p != nil {
		return p
	}
	return &policy.Process{Unknown: "owner_exited"}
}

// A policy that reads input.process gets the connecting process: git is
// allowed, curl is not, an exited owner fails closed; every event
// carries the exe.
func TestIdentityReachesPolicyAndAudit(t *testing.T) {
	pol, err := policy.ParseRego("git.rego", []byte(gitOnlyRego))
	if err != nil {
		t.Fatal(err)
	}
	owners := &fakeOwners{byPort: map[uint16]*policy.Process{}}
	h := startHarness(t, map[uint16]string{80: httpServer(t)}, func(c *Config) {
		c.Policy.Store(pol)
		c.Identify = owners.identify
	})
	h.to(worldIP, 80)
	get := func(exe string) int {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if exe != "" {
			owners.mu.Lock()
			owners.byPort[c.LocalAddr().(*net.TCPAddr).AddrPort().Port()] = &policy.Process{PID: 7, Exe: exe}
			owners.mu.Unlock()
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/usr/bin/git"); code != 200 {
		t.Errorf("git: %d, want 200", code)
	}
	if code := get("/usr/bin/curl"); code != 403 {
		t.Errorf("curl: %d, want 403", code)
	}
	if code := get(""); code != 403 {
		t.Errorf("exited owner: %d, want 403", code)
	}
	want := map[string][2]string{
		"/usr/bin/git":  {"egress_allowed", "git"},
		"/usr/bin/curl": {"egress_denied", "not_git"},
		"":              {"egress_denied", policy.ReasonProcessUnknown},
	}
	for _, e := range h.events(3) {
		exe, _ := e["exe"].(string)
		w, ok := want[exe]
		if !ok || e["msg"] != w[0] || e["reason"] != w[1] {
			t.Errorf("event exe=%q msg=%v reason=%v, want %v", exe, e["msg"], e["reason"], w)
		}
		delete(want, exe)
	}
	if len(want) > 0 {
		t.Errorf("no events for %v", want)
	}
	// The 4-tuple is the client socket's view: its address, and the
	// original destination.
	for _, a := range owners.asked {
		if a[1] != netip.AddrPortFrom(worldIP, 80) || !a[0].Addr().IsLoopback() {
			t.Errorf("asked %s→%s, want the client's address → %s:80", a[0], a[1], worldIP)
		}
	}
}

// Identity costs nothing when neither the policy nor the audit wants it.
func TestIdentityOnlyWhenNeeded(t *testing.T) {
	owners := &fakeOwners{byPort: map[uint16]*policy.Process{}}
	h := startHarness(t, map[uint16]string{80: httpServer(t)}, func(c *Config) { c.Identify = owners.identify })
	h.to(worldIP, 80)
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
	io.Copy(io.Discard, c)
	c.Close()
	ev := h.events(1)[0]
	if _, ok := ev["exe"]; ok || len(owners.asked) != 0 {
		t.Errorf("a JSON policy without IdentifyAlways looked identity up: asked %v, event %v", owners.asked, ev)
	}
}

// With IdentifyAlways every event names the process, also a connection
// denied before the policy was asked (classification failed).
func TestIdentityOnEarlyDenial(t *testing.T) {
	owners := &fakeOwners{byPort: map[uint16]*policy.Process{}}
	h := startHarness(t, map[uint16]string{443: tlsServer(t)}, func(c *Config) {
		c.Identify, c.IdentifyAlways = owners.identify, true
	})
	h.to(worldIP, 443)
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	owners.mu.Lock()
	owners.byPort[c.LocalAddr().(*net.TCPAddr).AddrPort().Port()] = &policy.Process{PID: 8, Exe: "/usr/bin/nc"}
	owners.mu.Unlock()
	io.WriteString(c, "\x16\x03\x01\x00\x04\xff\xff\xff\xff") // a handshake record that is no ClientHello
	io.Copy(io.Discard, c)
	c.Close()
	ev := h.events(1)[0]
	if ev["msg"] != "egress_denied" || ev["exe"] != "/usr/bin/nc" || ev["pid"] != 8.0 {
		t.Errorf("early denial: %v, want egress_denied with exe /usr/bin/nc and pid 8", ev)
	}
}

// The explicit front asks with the proxy's own address as the peer: a
// real lookup (procid) finds curl behind a CONNECT, and a Rego rule on its
// exe decides.
func TestIdentityExplicitFrontRealLookup(t *testing.T) {
	needCurl(t)
	r, err := procid.New(procid.Options{})
	if err != nil {
		t.Skipf("sock_diag unavailable: %v", err)
	}
	defer r.Close()
	curlExe, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("no curl")
	}
	if p, err := filepath.EvalSymlinks(curlExe); err == nil {
		curlExe = p
	}
	pol, err := policy.ParseRego("curl.rego", []byte(`package forge.egress
default decision := {"allow": false, "reason": "not_curl"}
decision := {"allow": true, "reason": "curl", "rule": "curl_only"} if {
	input.name == "allowed.test"
	input.process.exe == `+strconv.Quote(curlExe)+`
}`))
	if err != nil {
		t.Fatal(err)
	}
	ca, _, _ := testpki.WriteFiles(t, t.TempDir(), "allowed.test")
	h := &explicitHarness{lookups: &fakeLookup{}}
	h.harness = startHarness(t, map[uint16]string{443: tlsServer(t)}, func(c *Config) {
		c.Explicit, c.Lookup, c.DialTimeout = true, h.lookups.lookup, 2*time.Second
		c.Policy.Store(pol)
		c.Identify = func(ctx context.Context, src, dst netip.AddrPort) *policy.Process {
			info, err := r.Lookup(ctx, sockdiag.TCP, src, dst)
			if err != nil {
				return &policy.Process{Unknown: info.Reason}
			}
			return &policy.Process{PID: info.PID, Exe: info.Exe}
		}
	})
	out, errs, code := curl(t, "--cacert", ca, "--proxy", "http://"+h.addr, "https://allowed.test/")
	if code != 0 || out != "hello from allowed.test" {
		t.Fatalf("curl exit %d, out %q, err %q", code, out, errs)
	}
	ev := h.onlyEvent()
	checkEvent(t, ev, map[string]any{"msg": "egress_allowed", "reason": "curl", "exe": curlExe})
}
