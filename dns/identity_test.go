package dns

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/forge/forge-supervisor/policy"
)

const dnsGitOnly = `package forge.egress
default decision := {"allow": false, "reason": "not_git"}
decision := {"allow": true, "reason": "git_dns", "rule": "git_only"} if {
	input.kind == "dns"
	input.process.exe == "/usr/bin/git"
}`

// sourceOwners answers Identify by the query's source port.
type sourceOwners struct {
	mu     sync.Mutex
	byPort map[uint16]*policy.Process
	asked  []netip.AddrPort
}

func (s *sourceOwners) identify(_ context.Context, _ bool, src netip.AddrPort) *policy.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, src)
	if p := s.byPort[src.Port()]; p != nil {
		return p
	}
	return &policy.Process{Unknown: "owner_exited"}
}

// askFrom sends q over UDP from a socket whose source port is first
// registered as exe's.
func askFrom(t *testing.T, owners *sourceOwners, addr, exe string, q *dns.Msg) *dns.Msg {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if exe != "" {
		owners.mu.Lock()
		owners.byPort[c.LocalAddr().(*net.UDPAddr).AddrPort().Port()] = &policy.Process{PID: 9, Exe: exe}
		owners.mu.Unlock()
	}
	co := &dns.Conn{Conn: c}
	if err := co.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	r, err := co.ReadMsg()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The asking process reaches a policy that reads input.process, and every
// DNS event says which process asked.
func TestDNSIdentity(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	pol, err := policy.ParseRego("git.rego", []byte(dnsGitOnly))
	if err != nil {
		t.Fatal(err)
	}
	owners := &sourceOwners{byPort: map[uint16]*policy.Process{}}
	tp := startProxy(t, pol, []string{up.addr}, func(c *Config) { c.Identify = owners.identify })
	if r := askFrom(t, owners, tp.addr, "/usr/bin/git", query("www.allowed.test", dns.TypeA)); r.Rcode != dns.RcodeSuccess {
		t.Errorf("git: rcode %s, want NOERROR", dns.RcodeToString[r.Rcode])
	}
	if r := askFrom(t, owners, tp.addr, "/usr/bin/curl", query("www.allowed.test", dns.TypeA)); r.Rcode != dns.RcodeRefused {
		t.Errorf("curl: rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	if r := askFrom(t, owners, tp.addr, "", query("www.allowed.test", dns.TypeA)); r.Rcode != dns.RcodeRefused {
		t.Errorf("exited: rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	if lines := auditLines(tp.logs, "dns_allowed"); len(lines) != 1 || field(lines[0], "exe") != "/usr/bin/git" || field(lines[0], "pid") != int64(9) {
		t.Errorf("dns_allowed lines: %v", lines)
	}
	denied := auditLines(tp.logs, "dns_denied")
	if len(denied) != 2 {
		t.Fatalf("dns_denied lines: %v", denied)
	}
	got := map[string]string{}
	for _, l := range denied {
		got[field(l, "exe").(string)] = field(l, "reason").(string) + "/" + field(l, "process_unknown").(string)
	}
	if got["/usr/bin/curl"] != "not_git/" || got[""] != policy.ReasonProcessUnknown+"/owner_exited" {
		t.Errorf("denials by exe: %v", got)
	}
	for _, src := range owners.asked {
		if !src.Addr().IsLoopback() || src.Port() == 0 {
			t.Errorf("asked about source %s, want the client's loopback address and port", src)
		}
	}
}

// Without a policy that needs it and without IdentifyAlways, no lookup.
func TestDNSIdentityOnlyWhenNeeded(t *testing.T) {
	up := startUpstream(t, worldAnswers(t))
	pol := mustParse(t, `{"mode":"allowlist","allowed_domains":["*.allowed.test"]}`)
	owners := &sourceOwners{byPort: map[uint16]*policy.Process{}}
	tp := startProxy(t, pol, []string{up.addr}, func(c *Config) { c.Identify = owners.identify })
	ask(t, "udp", tp.addr, query("www.allowed.test", dns.TypeA))
	lines := auditLines(tp.logs, "dns_allowed")
	if len(lines) != 1 || len(owners.asked) != 0 || field(lines[0], "exe") != nil {
		t.Errorf("identity looked up for a JSON policy: asked %v, lines %v", owners.asked, lines)
	}
	// IdentifyAlways: the audit wants it.
	tp2 := startProxy(t, pol, []string{up.addr}, func(c *Config) { c.Identify, c.IdentifyAlways = owners.identify, true })
	ask(t, "tcp", tp2.addr, query("www.allowed.test", dns.TypeA))
	if lines := auditLines(tp2.logs, "dns_allowed"); len(lines) != 1 || len(owners.asked) != 1 || field(lines[0], "process_unknown") != "owner_exited" {
		t.Errorf("IdentifyAlways over TCP: asked %v, lines %v", owners.asked, lines)
	}
}
