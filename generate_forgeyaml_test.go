package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge/forge-supervisor/jail"
	"github.com/forge/forge-supervisor/policy"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of the forge.yaml projects")

// projectsDir holds realistic Forge projects; each has want/ with the
// golden output of every target.
const projectsDir = "forgeyaml/testdata/projects"

// TestGenerateFromForgeYAML renders every target from each project and
// compares it with the golden files; the outputs must also load in the
// supervisor's own parsers.
func TestGenerateFromForgeYAML(t *testing.T) {
	for _, project := range []string{"research", "minimal", "debugger"} {
		fy := filepath.Join(projectsDir, project, "forge.yaml")
		for _, tc := range []struct {
			file string
			args []string
		}{
			{"egress_allowlist.json", []string{"generate", "allowlist", "-forge-yaml", fy}},
			{"Dockerfile", []string{"generate", "dockerfile", "-forge-yaml", fy}},
			{"k8s.yaml", []string{"generate", "k8s", "-forge-yaml", fy, "-image", "registry.example/" + project + ":1", "-network-policy"}},
			{"seccomp.json", []string{"generate", "seccomp", "-forge-yaml", fy}},
		} {
			t.Run(project+"/"+tc.file, func(t *testing.T) {
				code, out, errOut := runGen(t, tc.args...)
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errOut)
				}
				checkGolden(t, filepath.Join(projectsDir, project, "want", tc.file), []byte(out))
				switch tc.file {
				case "egress_allowlist.json":
					if _, err := policy.Parse([]byte(out)); err != nil {
						t.Errorf("allowlist does not load: %v", err)
					}
				case "seccomp.json":
					if _, err := jail.ParseProfile([]byte(out)); err != nil {
						t.Errorf("profile does not load: %v", err)
					}
				}
			})
		}
	}
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run TestGenerateFromForgeYAML -update creates it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -run TestGenerateFromForgeYAML -update rewrites it):\n%s", path, got)
	}
}

// TestEverySettingReachesTheManifests: a setting given before "generate"
// (flag or environment) appears in the Deployment's env and, when not the
// default, as an ENV line of the Dockerfile.
func TestEverySettingReachesTheManifests(t *testing.T) {
	args := []string{"-dry-run", "-log-level", "debug", "-seccomp-path", "/opt/forge/seccomp.json", "-dns-rate", "42",
		"-inbound-ports", "8080", "generate"}
	_, k8s, errOut := runGen(t, append(args, "k8s", "-forge-yaml", filepath.Join(projectsDir, "minimal", "forge.yaml"), "-image", "i")...)
	_, docker, _ := runGen(t, append(args, "dockerfile", "-forge-yaml", filepath.Join(projectsDir, "minimal", "forge.yaml"))...)
	if errOut != "" {
		t.Fatal(errOut)
	}
	for _, want := range []string{"FORGE_SUPERVISOR_DRY_RUN\n          value: \"true\"", "FORGE_SUPERVISOR_LOG_LEVEL\n          value: \"debug\"",
		"FORGE_SUPERVISOR_DNS_RATE\n          value: \"42\"", "FORGE_SUPERVISOR_INBOUND_PORTS\n          value: \"8080\"",
		"containerPort: 8080"} {
		if !strings.Contains(k8s, want) {
			t.Errorf("Deployment lacks %q", want)
		}
	}
	for _, want := range []string{"ENV FORGE_SUPERVISOR_DRY_RUN=true\n", "ENV FORGE_SUPERVISOR_LOG_LEVEL=debug\n",
		"ENV FORGE_SUPERVISOR_SECCOMP_PATH=/opt/forge/seccomp.json\n", `COPY ["seccomp.json", "/opt/forge/seccomp.json"]`,
		"ENV FORGE_SUPERVISOR_DNS_RATE=42\n", "EXPOSE 8080/tcp\n"} {
		if !strings.Contains(docker, want) {
			t.Errorf("Dockerfile lacks %q:\n%s", want, docker)
		}
	}
	// Each setting's text parses back to the same value.
	cfg, _, _, err := ParseConfig(append(args, "k8s"), env(everyEnv))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settings() {
		text := cfg.settingText(s.flag)
		var back Config
		if err := s.parse(&back, text); err != nil && text != "" {
			t.Errorf("-%s: %q does not parse back: %v", s.flag, text, err)
		}
		if again := back.settingText(s.flag); again != text {
			t.Errorf("-%s: %q reads back as %q", s.flag, text, again)
		}
	}
}

// TestForgeYAMLPrecedence: flag > environment > forge.yaml > default, and
// a bad value in forge.yaml is reported at its line.
func TestForgeYAMLPrecedence(t *testing.T) {
	fy := writePolicy(t, "forge.yaml", "agent_id: a\nversion: \"1\"\nentrypoint: /a\nsupervisor:\n  dns_rate: 7\n  log_level: warn\n  dry_run: true\n")
	cfg, _, _, err := ParseConfig([]string{"-log-level", "error", "generate", "k8s", "-forge-yaml=" + fy}, env(map[string]string{"FORGE_SUPERVISOR_DRY_RUN": "false"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DNSRate != 7 || cfg.LogLevel != "error" || cfg.DryRun {
		t.Errorf("dns_rate %v (forge.yaml 7), log_level %q (flag error), dry_run %v (env false)", cfg.DNSRate, cfg.LogLevel, cfg.DryRun)
	}
	// At runtime the policy path names the forge.yaml.
	cfg, _, _, err = ParseConfig([]string{"/agent"}, env(map[string]string{"FORGE_SUPERVISOR_POLICY_PATH": fy}))
	if err != nil || cfg.DNSRate != 7 || cfg.LogLevel != "warn" || !cfg.DryRun || cfg.PolicyPath != fy {
		t.Errorf("runtime: %+v, %v", cfg, err)
	}
	bad := writePolicy(t, "forge.yaml", "agent_id: a\nversion: \"1\"\nentrypoint: /a\nsupervisor:\n  log_level: loud\n")
	_, _, _, err = ParseConfig([]string{"-policy-path", bad, "/agent"}, env(nil))
	if want := bad + `:5:14: supervisor.log_level: "loud": must be one of debug, info, warn, error`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want %s", err, want)
	}
	off := writePolicy(t, "forge.yaml", "agent_id: a\nversion: \"1\"\nentrypoint: /a\nsupervisor:\n  enabled: false\n")
	if _, _, _, err = ParseConfig([]string{"-policy-path", off, "/agent"}, env(nil)); err == nil || !strings.Contains(err.Error(), "supervisor.enabled is false") {
		t.Errorf("enabled: false: err = %v", err)
	}
}

// TestRuntimePolicyFromForgeYAML: FORGE_SUPERVISOR_POLICY_PATH=forge.yaml
// enforces the egress section, endpoint ports included.
func TestRuntimePolicyFromForgeYAML(t *testing.T) {
	p, err := loadRuntimePolicy(filepath.Join(projectsDir, "research", "forge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		port  uint16
		allow bool
	}{
		{"otel-collector.observability.svc.cluster.local", 4317, true},
		{"vllm.models.svc.cluster.local", 8000, true},
		{"vllm.models.svc.cluster.local", 9000, false},
		{"api.slack.com", 443, true},
		{"api.tavily.com", 443, true},
		{"evil.example", 443, false},
	} {
		if v := p.CheckName(tc.name, tc.port); v.Allow != tc.allow {
			t.Errorf("%s:%d: %+v, want allowed=%v", tc.name, tc.port, v, tc.allow)
		}
	}
	if _, err := loadRuntimePolicy(writePolicy(t, "forge.yml", "agent_id: a\n")); err == nil || !strings.Contains(err.Error(), "version: required") {
		t.Errorf("bad forge.yml: %v", err)
	}
}

// TestGenerateForgeYAMLConflicts: the policy comes from one place.
func TestGenerateForgeYAMLConflicts(t *testing.T) {
	fy := filepath.Join(projectsDir, "minimal", "forge.yaml")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"generate", "k8s", "-image", "i", "-forge-yaml", fy, "-policy-path", "x.json"}, "-policy-path and -forge-yaml both give the policy"},
		{[]string{"generate", "allowlist"}, "allowlist needs -forge-yaml FILE"},
		{[]string{"generate", "seccomp", "-forge-yaml", fy, "/agent"}, "seccomp takes no agent command"},
	} {
		code, _, errOut := runGen(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, %s; want %q", tc.args, code, errOut, tc.want)
		}
	}
}

// TestGenerateK8sSeccompPath: -seccomp-path decides where the seccomp
// ConfigMap is mounted and what the supervisor is told; a directory that
// would hide the policy or the binary is refused.
func TestGenerateK8sSeccompPath(t *testing.T) {
	pol := writePolicy(t, "egress_allowlist.json", `{"mode":"deny-all"}`)
	code, out, errOut := runGen(t, "-seccomp-path", "/opt/forge/agent.json", "generate", "k8s", "-policy-path", pol, "-image", "i")
	if code != 0 {
		t.Fatal(errOut)
	}
	for _, want := range []string{"  \"agent.json\": |2\n", "mountPath: \"/opt/forge\"\n",
		"- name: FORGE_SUPERVISOR_SECCOMP_PATH\n          value: \"/opt/forge/agent.json\"\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("manifest lacks %q", want)
		}
	}
	for _, bad := range []string{"/etc/forge/policy/s.json", "/s.json", "/etc/forge/x.json"} {
		code, _, errOut := runGen(t, "-seccomp-path", bad, "generate", "k8s", "-policy-path", pol, "-image", "i")
		if code != 2 || !strings.Contains(errOut, "choose a directory of its own") {
			t.Errorf("-seccomp-path %s: exit %d, %s", bad, code, errOut)
		}
	}
}

// TestGenerateNetworkPolicyFromForgeBuiltAllowlist: a Forge-built
// egress_allowlist.json (no forge.yaml) gets the same NetworkPolicy; Rego
// cannot be expressed as one.
func TestGenerateNetworkPolicyFromForgeBuiltAllowlist(t *testing.T) {
	pol := writePolicy(t, "egress_allowlist.json", `{"profile":"standard","mode":"allowlist","allowed_domains":["api.example.com"],"tool_domains":["api.tavily.com"],"all_domains":["api.example.com","api.tavily.com"],"allowed_tcp":["db.example.com:5432","ssh.example.com:*"]}`)
	code, out, errOut := runGen(t, "generate", "k8s", "-policy-path", pol, "-image", "i", "-network-policy")
	if code != 0 {
		t.Fatal(errOut)
	}
	np := out[strings.Index(out, "kind: NetworkPolicy"):]
	for _, want := range []string{`ai.initializ.forge/allowed-domains: "api.example.com,api.tavily.com"`,
		"# an allowed_tcp rule opens every port of a host (host:*).\n  - ports:\n    - protocol: TCP\n"} {
		if !strings.Contains(np, want) {
			t.Errorf("NetworkPolicy lacks %q:\n%s", want, np)
		}
	}
	regoSrc, err := os.ReadFile("deploy/testdata/egress_allowlist.rego")
	if err != nil {
		t.Fatal(err)
	}
	rego := writePolicy(t, "policy.rego", string(regoSrc))
	if code, _, errOut := runGen(t, "generate", "k8s", "-policy-path", rego, "-image", "i", "-network-policy"); code != 2 || !strings.Contains(errOut, "not a Rego policy") {
		t.Errorf("rego: exit %d, %s", code, errOut)
	}
}

// TestRuntimeSeccompMatchesForgeYAML: a project that needs the debugger
// does not start with a profile that lacks ptrace, and does with the one
// generate wrote from it.
func TestRuntimeSeccompMatchesForgeYAML(t *testing.T) {
	fy := filepath.Join(projectsDir, "debugger", "forge.yaml")
	builtin := writePolicy(t, "builtin.json", string(mustRun(t, "generate", "seccomp")))
	err := checkForgeSeccomp(Config{PolicyPath: fy, SeccompPath: builtin})
	if err == nil || !strings.Contains(err.Error(), "needs the syscall ptrace") || !strings.Contains(err.Error(), "generate seccomp -forge-yaml "+fy) {
		t.Errorf("built-in profile: err = %v", err)
	}
	widened := writePolicy(t, "widened.json", string(mustRun(t, "generate", "seccomp", "-forge-yaml", fy)))
	if err := checkForgeSeccomp(Config{PolicyPath: fy, SeccompPath: widened}); err != nil {
		t.Errorf("generated profile: %v", err)
	}
	if err := checkForgeSeccomp(Config{PolicyPath: filepath.Join(projectsDir, "research", "forge.yaml"), SeccompPath: builtin}); err != nil {
		t.Errorf("browser and git need nothing: %v", err)
	}
}

func mustRun(t *testing.T, args ...string) []byte {
	t.Helper()
	code, out, errOut := runGen(t, args...)
	if code != 0 {
		t.Fatalf("%q: exit %d: %s", args, code, errOut)
	}
	return []byte(out)
}

// TestGeneratePolicyPathNamingForgeYAML: -policy-path (or
// FORGE_SUPERVISOR_POLICY_PATH) naming a forge.yaml works like -forge-yaml.
func TestGeneratePolicyPathNamingForgeYAML(t *testing.T) {
	fy := filepath.Join(projectsDir, "debugger", "forge.yaml")
	want := mustRun(t, "generate", "k8s", "-forge-yaml", fy, "-image", "i")
	if got := mustRun(t, "generate", "k8s", "-policy-path", fy, "-image", "i"); !bytes.Equal(got, want) {
		t.Error("generate -policy-path forge.yaml differs from -forge-yaml")
	}
	if got := mustRun(t, "-policy-path", fy, "generate", "k8s", "-image", "i"); !bytes.Equal(got, want) {
		t.Error("-policy-path forge.yaml before generate differs from -forge-yaml")
	}
}

// TestForgeYAMLMistakeReportedOnce: a bad port is one error, not one from
// the forge.yaml reader and another from the setting's parser.
func TestForgeYAMLMistakeReportedOnce(t *testing.T) {
	fy := writePolicy(t, "forge.yaml", "agent_id: a\nversion: \"1\"\nentrypoint: /a\nsupervisor:\n  proxy_port: 70000\n")
	_, _, _, err := ParseConfig([]string{"-policy-path", fy, "/agent"}, env(nil))
	if err == nil || strings.Count(err.Error(), "proxy_port") != 1 || !strings.Contains(err.Error(), fy+":5:15: supervisor.proxy_port: 70000 is not a port number 1..65535") {
		t.Errorf("err = %v", err)
	}
}
