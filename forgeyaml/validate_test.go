package forgeyaml

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// head is a valid start of a forge.yaml; each case appends its mistake, so
// the lines in the expected messages count from 4.
const head = "agent_id: a\nversion: \"1\"\nentrypoint: /agent\n"

func parseText(t *testing.T, text string) (*Project, error) {
	t.Helper()
	return Parse("forge.yaml", t.TempDir(), []byte(text), Options{
		SettingKeys: []string{"proxy_port", "dns_port", "health_port", "agent_uid", "agent_gid", "log_level",
			"dry_run", "grace", "inbound_ports", "allowed_local_ports", "seccomp_path", "dns_upstream"},
	})
}

// TestValidationErrors: every kind of mistake names the file, the line and
// column, the key, and what to do; each message is asserted whole.
func TestValidationErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", head + "egres:\n  mode: allowlist\n",
			`forge.yaml:4:1: egres: unknown key; did you mean "egress"?`},
		{"unknown egress key", head + "egress:\n  allowed_domain: [a.example]\n",
			`forge.yaml:5:3: egress.allowed_domain: unknown key; did you mean "allowed_domains"?`},
		{"unknown supervisor key", head + "supervisor:\n  proxyport: 1\n",
			`forge.yaml:5:3: supervisor.proxyport: unknown key; did you mean "proxy_port"?`},
		{"port out of range", head + "supervisor:\n  proxy_port: 70000\n",
			`forge.yaml:5:15: supervisor.proxy_port: 70000 is not a port number 1..65535`},
		{"port not a number", head + "supervisor:\n  dns_port: fifty\n",
			`forge.yaml:5:13: supervisor.dns_port: must be a port number 1..65535, not "fifty"`},
		{"CIDR with host bits", head + "egress:\n  allowed_private_cidrs: [10.1.2.3/8]\n",
			`forge.yaml:5:27: egress.allowed_private_cidrs[0]: "10.1.2.3/8": host bits are set; did you mean 10.0.0.0/8?`},
		{"bare host in allowed_tcp", head + "egress:\n  allowed_tcp:\n    - db.example.com\n",
			`forge.yaml:6:7: egress.allowed_tcp[0]: "db.example.com": missing port; write host:port like "db.example.com:5432", or host:* for every port`},
		{"two supervisor ports the same", head + "supervisor:\n  proxy_port: 15002\n",
			`forge.yaml:5:15: supervisor.proxy_port: 15002 is also dns_port; the supervisor's three ports must differ`},
		{"inbound port is a supervisor port", head + "supervisor:\n  inbound_ports: [8080, 15000]\n",
			`forge.yaml:5:25: supervisor.inbound_ports[1]: 15000 is the supervisor's health_port; the agent cannot use it`},
		{"unknown mode", head + "egress:\n  mode: allow\n",
			`forge.yaml:5:9: egress.mode: "allow" is not a mode; use deny-all, allowlist or dev-open`},
		{"unknown profile", head + "egress:\n  profile: lax\n",
			`forge.yaml:5:12: egress.profile: "lax" is not a profile; use strict, standard or permissive`},
		{"unknown capability", head + "egress:\n  capabilities: [slak]\n",
			`forge.yaml:5:18: egress.capabilities[0]: unknown capability bundle "slak"; did you mean "slack"?`},
		{"endpoint without a port", head + "model:\n  base_url: ftp://models.example\n",
			`forge.yaml:5:13: model.base_url: "ftp://models.example": scheme "ftp" has no default port; write the port, like ftp://models.example:4317`},
		{"endpoint at a private address", head + "egress:\n  mode: allowlist\nmodel:\n  base_url: http://10.0.0.5:8000/v1\n",
			`forge.yaml:7:13: model.base_url: "10.0.0.5:8000": 10.0.0.5 is a private address and allow_private_ips is false, so this rule could never allow anything; add 10.0.0.5/32 to allowed_private_cidrs instead, or set allow_private_ips`},
		{"duplicate key", head + "egress:\n  mode: allowlist\n  mode: deny-all\n",
			`forge.yaml:6:3: egress.mode: appears twice in the same mapping; keep one`},
		{"alias", head + "egress:\n  allowed_domains: &d [a.example]\n  allowed_tcp: *d\n",
			`forge.yaml:5:20: egress.allowed_domains: anchors (&d) are not supported; write the value out`},
		{"missing agent_id", "version: \"1\"\nentrypoint: /agent\n",
			`forge.yaml:1:1: agent_id: required (Forge refuses a project without it)`},
		{"scalar where a list belongs", head + "egress:\n  allowed_domains: api.example.com\n",
			`forge.yaml:5:20: egress.allowed_domains: must be a list (- item lines or [a, b]), not "api.example.com"`},
		{"agent as root", head + "supervisor:\n  agent_uid: 0\n",
			`forge.yaml:5:14: supervisor.agent_uid: must not be 0: the agent never runs as root`},
		{"unknown seccomp requirement", head + "supervisor:\n  seccomp:\n    requires: [debuger]\n",
			`forge.yaml:6:16: supervisor.seccomp.requires[0]: unknown requirement "debuger"; did you mean "debugger"?`},
		{"unknown syscall", head + "supervisor:\n  seccomp:\n    syscalls: [ptrace, teleport]\n",
			`forge.yaml:6:24: supervisor.seccomp.syscalls[1]: "teleport" is not a syscall libseccomp knows`},
		{"policy_path in forge.yaml", head + "supervisor:\n  policy_path: /etc/forge/p.json\n",
			`forge.yaml:5:3: supervisor.policy_path: the egress: section of this file is the policy; remove supervisor.policy_path`},
		{"relative seccomp_path", head + "supervisor:\n  seccomp_path: seccomp.json\n",
			`forge.yaml:5:17: supervisor.seccomp_path: "seccomp.json": the profile's path inside the container must be absolute`},
		{"wildcard domain with a port", head + "egress:\n  allowed_domains: [\"api.example.com:8443\"]\n",
			`forge.yaml:5:21: egress.allowed_domains[0]: "api.example.com:8443": domain lists hold names only and open ports 80 and 443; for another port use allowed_tcp, like "db.example.com:5432"`},
		// yaml.v3 places this one at the mapping that holds the broken
		// flow sequence (line 4), not at the "[" itself.
		{"YAML syntax", head + "egress:\n  mode: [allowlist\n",
			`forge.yaml: line 4: did not find expected ',' or ']'`},
		{"two documents", head + "---\nagent_id: b\n",
			`forge.yaml: line 4: a second YAML document (---); a forge.yaml is one document`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseText(t, tc.yaml)
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			if !strings.Contains(err.Error()+"\n", tc.want+"\n") {
				t.Errorf("error:\n%v\nwant a line:\n%s", err, tc.want)
			}
		})
	}
}

// TestSkillNeedsExplicitDebugger: a skill that needs gdb cannot widen the
// profile by itself; naming the requirement accepts the risk.
func TestSkillNeedsExplicitDebugger(t *testing.T) {
	dir := t.TempDir()
	skill := filepath.Join(dir, "skills", "dbg", "SKILL.md")
	if err := os.MkdirAll(filepath.Dir(skill), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(skill, []byte("---\nname: dbg\nmetadata:\n  forge:\n    requires:\n      bins: [gdb]\n---\nbody\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Parse("forge.yaml", dir, []byte(head), Options{})
	want := `skills/dbg/SKILL.md: metadata.forge.requires.bins: gdb needs the "debugger" seccomp requirement (ptrace, process_vm_readv, process_vm_writev); add "debugger" to supervisor.seccomp.requires in forge.yaml to accept that risk`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	proj, err := Parse("forge.yaml", dir, []byte(head+"supervisor:\n  seccomp:\n    requires: [debugger]\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := proj.SeccompWidening()
	if len(w.Requires) != 1 || w.Requires[0].Name != "debugger" || w.Requires[0].Why != "supervisor.seccomp.requires; skills/dbg/SKILL.md requires gdb" {
		t.Errorf("widening = %+v", w)
	}
}

// TestSettingCheck: a value the supervisor's own parser refuses is
// reported at its line with the parser's words.
func TestSettingCheck(t *testing.T) {
	_, err := Parse("f.yaml", t.TempDir(), []byte(head+"supervisor:\n  log_level: loud\n"), Options{
		SettingKeys: []string{"log_level"},
		CheckSetting: func(k, v string) error {
			if v != "info" {
				return errorString("must be one of debug, info, warn, error")
			}
			return nil
		},
	})
	if want := `f.yaml:5:14: supervisor.log_level: "loud": must be one of debug, info, warn, error`; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// TestEveryProblemReported: one run lists every mistake, not the first.
func TestEveryProblemReported(t *testing.T) {
	_, err := parseText(t, head+"egress:\n  mode: allow\n  profile: lax\nsupervisor:\n  proxy_port: 0\n")
	if err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("want three problems, got:\n%v", err)
	}
}

// TestTypedKeyNeedsASetting: a key this package types must also be a
// setting of the supervisor reading it, or the value would go nowhere.
func TestTypedKeyNeedsASetting(t *testing.T) {
	_, err := Parse("forge.yaml", t.TempDir(), []byte(head+"supervisor:\n  inbound_ports: [8080]\n"), Options{SettingKeys: []string{"log_level"}})
	if want := `forge.yaml:5:3: supervisor.inbound_ports: this forge-supervisor has no inbound_ports setting; upgrade it or remove the key`; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

// TestSkillCapabilityBrowser: Forge's requires.capabilities: [browser]
// implies the browser requirement, like the chromium bin.
func TestSkillCapabilityBrowser(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "SKILL.md"), []byte("---\nmetadata:\n  forge:\n    requires:\n      capabilities: [browser]\n---\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	proj, err := Parse("forge.yaml", dir, []byte(head), Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := proj.SeccompWidening()
	if len(w.Requires) != 1 || w.Requires[0].Name != "browser" || w.Requires[0].Why != "SKILL.md (capability browser) requires chromium" {
		t.Errorf("%+v", w)
	}
}

// TestSkillNotARegularFile: a SKILL.md that is a device is refused, not
// read forever.
func TestSkillNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "skills", "z"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "skills", "z", "SKILL.md")); err != nil {
		t.Fatal(err)
	}
	_, err := Parse("forge.yaml", dir, []byte(head), Options{})
	if err == nil || err.Error() != "skills/z/SKILL.md: not a regular file" {
		t.Errorf("err = %v", err)
	}
}
