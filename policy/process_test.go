package policy

import (
	"context"
	"net/netip"
	"testing"
)

func TestReadsProcess(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want bool
	}{
		{"only the other fields", `decision := {"allow": input.name == "a", "reason": input.kind} if input.port == 443`, false},
		{"input.process.exe", `decision := {"allow": input.process.exe == "/usr/bin/git", "reason": "x"}`, true},
		{"bracket form", `decision := {"allow": input["process"].pid > 0, "reason": "x"}`, true},
		{"dynamic key", `k := "process"
decision := {"allow": input[k].pid > 0, "reason": "x"}`, true},
		{"input as a value", `f(x) := x.process.exe
decision := {"allow": f(input) == "a", "reason": "x"}`, true},
		{"nested in another ref", `m := {"tcp": 1}
decision := {"allow": m[input.process.exe] == 1, "reason": "x"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustParseRego(t, "package forge.egress\n"+tc.body)
			if got := p.NeedsProcess(); got != tc.want {
				t.Errorf("NeedsProcess = %v, want %v", got, tc.want)
			}
		})
	}
	if mustLoadJSON(t, "testdata/good/forge_standard.json").NeedsProcess() {
		t.Error("a JSON allowlist needs no process")
	}
	var nilPolicy *Policy
	if nilPolicy.NeedsProcess() {
		t.Error("nil policy needs a process")
	}
}

func mustLoadJSON(t *testing.T, path string) *Policy {
	t.Helper()
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	gitProc    = &Process{PID: 10, Exe: "/usr/bin/git", Cmdline: []string{"git", "fetch"}, UID: 1000, Ancestors: []string{"/bin/bash"}}
	gitHelper  = &Process{PID: 11, Exe: "/usr/lib/git-core/git-remote-http", UID: 1000, Ancestors: []string{"/usr/bin/git", "/bin/bash"}}
	curlProc   = &Process{PID: 12, Exe: "/usr/bin/curl", UID: 1000, Ancestors: []string{"/bin/bash"}}
	fakeHelper = &Process{PID: 13, Exe: "/usr/lib/git-core/git-remote-http", UID: 1000, Ancestors: []string{"/bin/bash"}}
	exitedProc = &Process{Unknown: "owner_exited"}
)

// The worked example of docs/rego.md: only git reaches github.com.
func TestRegoOnlyGitReachesGitHub(t *testing.T) {
	p := mustLoadRego(t, "testdata/rego/process_git.rego")
	if !p.NeedsProcess() {
		t.Fatal("the policy reads input.process but NeedsProcess is false")
	}
	gh := netip.MustParseAddr("198.51.100.10")
	res := regoResolver{resolves: map[string][]netip.Addr{"github.com": {gh}}}
	req := Request{Name: "github.com", IP: gh, Port: 443}
	for _, tc := range []struct {
		name   string
		proc   *Process
		allow  bool
		reason string
		rule   string
	}{
		{"git itself", gitProc, true, "git_https", "git_only"},
		{"git's https helper under git", gitHelper, true, "git_https", "git_only"},
		{"curl", curlProc, false, "not_git", "git_only"},
		{"a helper binary not started by git", fakeHelper, false, "not_git", "git_only"},
		{"owner exited before the lookup", exitedProc, false, ReasonProcessUnknown, "process:owner_exited"},
		{"not looked up", nil, false, ReasonProcessUnknown, "process:not_looked_up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := p.DecideFor(context.Background(), req, tc.proc, res)
			if v.Allow != tc.allow || v.Reason != tc.reason || v.Rule != tc.rule {
				t.Errorf("DecideFor = %+v, want {%v %s %s}", v, tc.allow, tc.reason, tc.rule)
			}
		})
	}
	// DNS: every identified process may resolve the names.
	if v := p.CheckNameFor("github.com", 0, curlProc); !v.Allow || v.Reason != "github_dns" {
		t.Errorf("dns for curl: %+v", v)
	}
	// ...but a question with no identity fails closed, DNS too.
	if v := p.CheckNameFor("github.com", 0, exitedProc); v.Allow || v.Reason != ReasonProcessUnknown {
		t.Errorf("dns for an exited process: %+v", v)
	}
	if v := p.CheckName("github.com", 0); v.Allow || v.Reason != ReasonProcessUnknown {
		t.Errorf("CheckName without a process: %+v", v)
	}
	// Go's guarantees still come first: metadata is blocked for git too.
	if v := p.DecideFor(context.Background(), Request{Name: "github.com", IP: netip.MustParseAddr("169.254.169.254"), Port: 443}, gitProc, res); v.Reason != ReasonMetadata {
		t.Errorf("metadata for git: %+v", v)
	}
}

// The second worked example: nothing under the tool runner gets out.
func TestRegoDenyToolSubprocesses(t *testing.T) {
	p := mustLoadRego(t, "testdata/rego/process_tool.rego")
	api := netip.MustParseAddr("198.51.100.20")
	res := regoResolver{resolves: map[string][]netip.Addr{"api.example.com": {api}}}
	req := Request{Name: "api.example.com", IP: api, Port: 443}
	model := &Process{PID: 5, Exe: "/usr/bin/python3", Ancestors: []string{"/usr/bin/bash"}}
	tool := &Process{PID: 6, Exe: "/usr/local/bin/tool-runner", Ancestors: []string{"/usr/bin/python3", "/usr/bin/bash"}}
	child := &Process{PID: 7, Exe: "/usr/bin/curl", Ancestors: []string{"/usr/bin/sh", "/usr/local/bin/tool-runner", "/usr/bin/python3"}}
	if v := p.DecideFor(context.Background(), req, model, res); !v.Allow || v.Reason != "llm_https" {
		t.Errorf("model client: %+v", v)
	}
	for name, proc := range map[string]*Process{"the tool runner": tool, "its grandchild": child} {
		if v := p.DecideFor(context.Background(), req, proc, res); v.Allow || v.Reason != "tool_subprocess" {
			t.Errorf("%s: %+v, want tool_subprocess", name, v)
		}
		if v := p.CheckNameFor("api.example.com", 0, proc); v.Allow || v.Reason != "tool_subprocess" {
			t.Errorf("%s, DNS: %+v, want tool_subprocess", name, v)
		}
	}
}

// Rego sees every field of input.process, unknown ones included.
func TestRegoProcessInput(t *testing.T) {
	p := mustParseRego(t, `package forge.egress
decision := {"allow": true, "reason": "echo", "rule": concat("|", [
	format_int(input.process.pid, 10), input.process.exe, concat(" ", input.process.cmdline),
	format_int(input.process.uid, 10), concat(",", input.process.ancestors), input.process.unknown])}`)
	v := p.CheckNameFor("a.example", 0, gitProc)
	if want := "10|/usr/bin/git|git fetch|1000|/bin/bash|"; v.Rule != want {
		t.Errorf("rule %q, want %q", v.Rule, want)
	}
	// A policy that never reads input.process is not held to identity.
	q := mustParseRego(t, `package forge.egress
decision := {"allow": true, "reason": "any"}`)
	if q.NeedsProcess() {
		t.Fatal("NeedsProcess for a policy without input.process")
	}
	if v := q.CheckNameFor("a.example", 0, exitedProc); !v.Allow {
		t.Errorf("identity-free policy denied an unknown process: %+v", v)
	}
}
