package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge/forge-supervisor/jail"
)

// runGen parses args like main does and runs the generate subcommand.
func runGen(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cfg, sub, rest, err := ParseConfig(args, env(nil))
	if err != nil {
		t.Fatalf("ParseConfig(%q): %v", args, err)
	}
	if sub != subGenerate {
		t.Fatalf("ParseConfig(%q): sub %q, want %q", args, sub, subGenerate)
	}
	var out, errb bytes.Buffer
	code = runGenerate(cfg, rest, &out, &errb)
	return code, out.String(), errb.String()
}

func writePolicy(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGenerateDockerfile(t *testing.T) {
	code, out, errOut := runGen(t, "-proxy-port", "16001", "generate", "dockerfile", "-policy-path", "my/policy.json", "--", "/agent", "-v")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"\nFROM scratch\n",
		"\nCOPY [\"policy.json\", \"/etc/forge/egress_allowlist.json\"]\n",
		"\nENV FORGE_SUPERVISOR_PROXY_PORT=16001\n",
		"\nENTRYPOINT [\"/forge-supervisor\", \"--\"]\n",
		"\nCMD [\"/agent\", \"-v\"]\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Dockerfile lacks %q:\n%s", want, out)
		}
	}
}

func TestGenerateK8s(t *testing.T) {
	pol := writePolicy(t, "egress_allowlist.json", `{"mode":"allowlist","allowed_domains":["api.example.com"]}`+"\n")
	code, out, errOut := runGen(t, "generate", "k8s", "-policy-path", pol, "-image", "reg.example/agent:1", "-name", "coder", "-namespace", "agents", "/agent")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"\nkind: ConfigMap\n", "\nkind: Deployment\n", "  name: \"coder\"\n", "  namespace: \"agents\"\n",
		"        image: \"reg.example/agent:1\"\n", "        args: [\"/agent\"]\n",
		"    {\"mode\":\"allowlist\",\"allowed_domains\":[\"api.example.com\"]}\n",
		"          runAsUser: 0\n", "          allowPrivilegeEscalation: false\n", "          readOnlyRootFilesystem: true\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("manifest lacks %q", want)
		}
	}
}

func TestGenerateSeccomp(t *testing.T) {
	code, out, errOut := runGen(t, "generate", "seccomp")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if _, err := jail.ParseProfile([]byte(out)); err != nil {
		t.Fatalf("generated profile does not parse: %v", err)
	}
}

// TestGenerateErrors: every mistake exits 2 with one line naming it, and
// writes nothing to stdout.
func TestGenerateErrors(t *testing.T) {
	bad := writePolicy(t, "bad.json", `{"mode":"allow-everything"}`)
	good := writePolicy(t, "good.json", `{"mode":"deny-all"}`)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no image", []string{"generate", "k8s", "-policy-path", good}, "deploy: image: required"},
		{"broken policy", []string{"generate", "k8s", "-image", "i", "-policy-path", bad}, "bad.json: policy: mode"},
		{"missing policy", []string{"generate", "k8s", "-image", "i", "-policy-path", "/no/such.json"}, "policy: open /no/such.json: no such file or directory"},
		{"unknown target", []string{"generate", "helm"}, `unknown target "helm"`},
		{"unknown flag", []string{"generate", "k8s", "-health-port", "1"}, "flag provided but not defined: -health-port"},
		{"seccomp with argv", []string{"generate", "seccomp", "/agent"}, "seccomp takes no agent command"},
		{"bad name", []string{"generate", "dockerfile", "-name", "My_Agent"}, `deploy: name: "My_Agent" is not a DNS-1123 label`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runGen(t, tc.args...)
			if code != 2 || out != "" || !strings.Contains(errOut, tc.want) || !strings.HasPrefix(errOut, "forge-supervisor: generate: ") {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2, nothing, and %q", code, out, errOut, tc.want)
			}
		})
	}
}

func TestGenerateHelp(t *testing.T) {
	for _, args := range [][]string{{"generate"}, {"generate", "-h"}} {
		code, out, _ := runGen(t, args...)
		if code != 0 || !strings.Contains(out, "usage: forge-supervisor [flags] generate allowlist|dockerfile|k8s|seccomp|rego") || !strings.Contains(out, "-image") {
			t.Errorf("%q: exit %d, usage %q", args, code, out)
		}
	}
}

// TestGenerateSubcommandParsing: "generate" after "--" is the agent's
// command; before it, flags are the supervisor's and the rest is
// generate's, unparsed.
func TestGenerateSubcommandParsing(t *testing.T) {
	_, sub, argv, err := ParseConfig([]string{"--", "generate", "k8s"}, env(nil))
	if err != nil || sub != "" || strings.Join(argv, " ") != "generate k8s" {
		t.Errorf("after --: sub %q argv %q err %v; want the agent command", sub, argv, err)
	}
	cfg, sub, argv, err := ParseConfig([]string{"-dns-port", "53", "generate", "k8s", "-image", "x", "--", "/a"}, env(nil))
	if err != nil || sub != subGenerate || cfg.DNSPort != 53 || strings.Join(argv, " ") != "k8s -image x -- /a" {
		t.Errorf("sub %q argv %q dns %d err %v", sub, argv, cfg.DNSPort, err)
	}
}

func TestGenerateRego(t *testing.T) {
	pol := writePolicy(t, "egress_allowlist.json", `{"mode":"allowlist","allowed_domains":["*.example.com"]}`)
	code, out, errOut := runGen(t, "generate", "rego", "-policy-path", pol)
	if code != 0 || !strings.Contains(out, "\npackage forge.egress\n") {
		t.Fatalf("exit %d, stderr %s, output:\n%s", code, errOut, out)
	}
	rego := writePolicy(t, "policy.rego", out)
	if code, _, errOut := runGen(t, "generate", "k8s", "-image", "i", "-policy-path", rego); code != 0 {
		t.Errorf("k8s with the generated Rego policy: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runGen(t, "generate", "rego", "-policy-path", pol, "/agent"); code != 2 || !strings.Contains(errOut, "rego takes no agent command") {
		t.Errorf("rego with argv: exit %d: %s", code, errOut)
	}
}
