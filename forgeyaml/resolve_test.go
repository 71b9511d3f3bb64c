package forgeyaml

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/forge/forge-supervisor/policy"
)

func mustParse(t *testing.T, text string) *Project {
	t.Helper()
	proj, err := parseText(t, text)
	if err != nil {
		t.Fatal(err)
	}
	return proj
}

// TestForgeDefaults: no egress section is Forge's strict / deny-all, and
// the allowlist the supervisor writes loads as deny-all.
func TestForgeDefaults(t *testing.T) {
	a := mustParse(t, head).Allowlist
	if a.Profile != "strict" || a.Mode != "deny-all" || len(a.AllDomains) != 0 || a.AllowPrivateIPs != nil {
		t.Errorf("defaults = %+v", a)
	}
	p, err := a.Policy()
	if err != nil || p.Mode() != policy.ModeDenyAll {
		t.Errorf("policy %v, %v", p, err)
	}
}

// TestResolveLikeForge follows forge-core/security/resolver.go: allowlist
// mode keeps the explicit list with the endpoint hosts appended (auth,
// MCP, OTel, LLM), tool_domains from the tool names, all_domains the
// sorted union with the capability bundles.
func TestResolveLikeForge(t *testing.T) {
	a := mustParse(t, head+`
tools: [{name: github_api}, {name: custom_tool}]
builtin_tools: [web_search]
egress:
  mode: allowlist
  allowed_domains: [api.example.com]
  capabilities: [telegram]
mcp:
  servers:
    - {name: b, url: "https://mcp.b.example/sse"}
    - {name: a, url: "https://mcp.a.example/sse"}
auth:
  providers:
    - {type: oidc, settings: {issuer: "https://id.example/realm", jwks_url: "https://keys.example/jwks"}}
    - {type: static_token, settings: {url: "https://ignored.example"}}
observability:
  tracing: {enabled: true, endpoint: "https://otel.example:4318/v1/traces"}
model:
  base_url: https://llm.example/v1
  fallbacks: [{provider: x, base_url: "http://[2001:db8::5]:8000/v1"}]
`).Allowlist
	want := Allowlist{
		Profile: "strict", Mode: "allowlist",
		AllowedDomains: []string{"api.example.com", "id.example", "keys.example", "mcp.a.example", "mcp.b.example", "otel.example", "llm.example"},
		ToolDomains:    []string{"api.github.com", "github.com", "api.tavily.com", "api.perplexity.ai"},
		AllDomains: []string{"api.example.com", "api.github.com", "api.perplexity.ai", "api.tavily.com", "api.telegram.org",
			"github.com", "id.example", "keys.example", "llm.example", "mcp.a.example", "mcp.b.example", "otel.example"},
		AllowedTCP:          []string{"otel.example:4318", "[2001:db8::5]:8000"},
		AllowedPrivateCIDRs: nil,
	}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("got  %+v\nwant %+v", a, want)
	}
}

// TestTracingOff: a disabled collector adds nothing (Forge's OTelDomain).
func TestTracingOff(t *testing.T) {
	a := mustParse(t, head+"egress: {mode: allowlist}\nobservability:\n  tracing: {enabled: false, endpoint: \"otel.example:4317\"}\n").Allowlist
	if len(a.AllowedDomains) != 0 || len(a.AllowedTCP) != 0 {
		t.Errorf("%+v", a)
	}
}

// TestDenyAllAndDevOpenDropDomains: Forge's resolver returns no domains
// for them; the rules written by hand still reach the supervisor.
func TestDenyAllAndDevOpenDropDomains(t *testing.T) {
	for _, mode := range []string{"deny-all", "dev-open"} {
		a := mustParse(t, head+"egress:\n  mode: "+mode+"\n  allowed_domains: [a.example]\n  allowed_tcp: [\"db.example:5432\"]\n  allowed_private_cidrs: [10.0.0.0/8]\nmodel: {base_url: \"http://m.example:8000\"}\n").Allowlist
		if len(a.AllowedDomains)+len(a.ToolDomains)+len(a.AllDomains) != 0 ||
			!reflect.DeepEqual(a.AllowedTCP, []string{"db.example:5432"}) || !reflect.DeepEqual(a.AllowedPrivateCIDRs, []string{"10.0.0.0/8"}) {
			t.Errorf("%s: %+v", mode, a)
		}
	}
}

// TestAllowPrivateIPsTriState: true, false and unset stay three values;
// unset writes no key, so the policy's meaning of a missing key applies.
func TestAllowPrivateIPsTriState(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want string
	}{
		{"egress: {allow_private_ips: true}\n", `"allow_private_ips": true`},
		{"egress: {allow_private_ips: false}\n", `"allow_private_ips": false`},
		{"egress: {mode: deny-all}\n", ""},
	} {
		out, err := mustParse(t, head+tc.yaml).Allowlist.JSON()
		if err != nil {
			t.Fatal(err)
		}
		if has := strings.Contains(string(out), "allow_private_ips"); tc.want == "" && has || tc.want != "" && !strings.Contains(string(out), tc.want) {
			t.Errorf("%s→\n%s", tc.yaml, out)
		}
	}
}

// TestAllowlistJSONShape: Forge's five keys first, empty lists as [],
// and the file loads in the supervisor.
func TestAllowlistJSONShape(t *testing.T) {
	out, err := mustParse(t, head).Allowlist.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	dec := json.NewDecoder(strings.NewReader(string(out)))
	dec.Token()
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var v json.RawMessage
		dec.Decode(&v)
		if string(v) == "null" {
			t.Errorf("%s is null", k)
		}
	}
	if want := []string{"profile", "mode", "allowed_domains", "tool_domains", "all_domains", "allowed_tcp", "allowed_private_cidrs"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
}

func TestAgentCommand(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want []string
		err  string
	}{
		{head, []string{"/agent"}, ""},
		{"agent_id: a\nversion: \"1\"\nentrypoint: python -m agent.main\n", []string{"python", "-m", "agent.main"}, ""},
		{"agent_id: a\nversion: \"1\"\nframework: forge\n", nil, ""},
		{"agent_id: a\nversion: \"1\"\nentrypoint: \"python agent.py > log\"\n", nil, `entrypoint "python agent.py > log" needs a shell`},
		{"agent_id: a\nversion: \"1\"\nentrypoint: \"sh -c 'x'\"\nsupervisor: {command: [sh, -c, x]}\n", []string{"sh", "-c", "x"}, ""},
	} {
		got, err := mustParse(t, tc.yaml).AgentCommand()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.yaml, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %q, %v; want %q", tc.yaml, got, err, tc.want)
		}
	}
}

// TestSupervisorSettings: values become the text the supervisor parses,
// lists joined, with their source line.
func TestSupervisorSettings(t *testing.T) {
	s := mustParse(t, head+"supervisor:\n  dry_run: true\n  dns_upstream: [10.0.0.10, \"10.0.0.11:53\"]\n  inbound_ports: [8080]\n  enabled: true\n").Supervisor
	want := []Setting{
		{Key: "dry_run", Value: "true", Source: "forge.yaml:5"},
		{Key: "dns_upstream", Value: "10.0.0.10,10.0.0.11:53", Source: "forge.yaml:6"},
		{Key: "inbound_ports", Value: "8080", Source: "forge.yaml:7"},
	}
	if !reflect.DeepEqual(s.Settings, want) || !s.Enabled || !reflect.DeepEqual(s.InboundPorts, []uint16{8080}) {
		t.Errorf("%+v", s)
	}
	if off := mustParse(t, head+"supervisor: {enabled: false}\n").Supervisor; off.Enabled {
		t.Error("enabled: false read as true")
	}
}

// TestForgeTables pins the tables copied from Forge.
func TestForgeTables(t *testing.T) {
	if len(forgeToolDomains) != 15 || len(forgeCapabilityBundles) != 3 ||
		!reflect.DeepEqual(forgeCapabilityBundles["slack"], []string{"slack.com", "hooks.slack.com", "api.slack.com"}) {
		t.Error("Forge's tables changed; compare with forge-core/security/tool_domains.go and capabilities.go")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(head))
	f.Add([]byte(head + "egress:\n  mode: allowlist\n  allowed_tcp: [\"a.example:1\"]\nmodel: {base_url: \"http://[::1]:80\"}\n"))
	f.Add([]byte(head + "supervisor:\n  seccomp: {requires: [debugger]}\n  inbound_ports: [1, 1]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		proj, err := Parse("f.yaml", t.TempDir(), data, Options{SettingKeys: []string{"log_level"}})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		// Whatever it accepts, the supervisor loads.
		if _, err := proj.Allowlist.Policy(); err != nil {
			t.Fatalf("accepted a project whose allowlist does not load: %v", err)
		}
	})
}

// TestLocalhostEndpoints: Forge always allows localhost; the supervisor's
// equivalent for an endpoint in the pod is allowed_local_ports, never an
// allowlist rule.
func TestLocalhostEndpoints(t *testing.T) {
	proj := mustParse(t, head+"egress: {mode: allowlist}\nmodel:\n  base_url: http://localhost:11434\n  fallbacks: [{provider: x, base_url: \"http://127.0.0.1:8000/v1\"}]\n"+
		"supervisor:\n  allowed_local_ports: [9229]\n")
	if a := proj.Allowlist; len(a.AllowedDomains)+len(a.AllowedTCP) != 0 {
		t.Errorf("localhost reached the allowlist: %+v", a)
	}
	s := proj.Supervisor
	if !reflect.DeepEqual(s.AllowedLocalPorts, []uint16{9229, 11434, 8000}) {
		t.Errorf("allowed_local_ports %v", s.AllowedLocalPorts)
	}
	if len(s.Settings) != 1 || s.Settings[0].Value != "9229,11434,8000" ||
		s.Settings[0].Source != "forge.yaml:9 and model.base_url, model.fallbacks[0].base_url" {
		t.Errorf("settings %+v", s.Settings)
	}
}
