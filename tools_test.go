package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The tools are subcommands: ParseConfig hands their arguments over
// unparsed, and runTool maps the outcome to the exit status.
func TestToolSubcommands(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "egress_allowlist.json")
	if err := os.WriteFile(pol, []byte(`{"mode":"allowlist","allowed_domains":["api.example.com"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	forgeYAML := filepath.Join("forgeyaml", "testdata", "projects", "research", "forge.yaml")
	for _, tc := range []struct {
		args  []string
		stdin string
		code  int
		out   string
	}{
		{[]string{"check", "-policy", pol, "-name", "api.example.com"}, "", 0, "ALLOW: tcp api.example.com"},
		{[]string{"-policy-path", pol, "check", "-name", "evil.test", "-json"}, "", 1, `"decision": "deny"`},
		{[]string{"check", "-policy", pol, "-name", "api.example.com", "-ip", "not-an-ip"}, "", 2, ""},
		{[]string{"check", "-policy", pol}, "", 2, ""},
		{[]string{"check", "-policy", filepath.Join(dir, "missing.json"), "-name", "a.example"}, "", 2, ""},
		{[]string{"lint", pol}, "", 0, "0 errors"},
		{[]string{"lint", filepath.Join(dir, "missing.json")}, "", 1, "error:"},
		{[]string{"-policy-path", pol, "suggest"}, `{"msg":"egress_denied","sni":"pypi.org","dst_port":443,"reason":"not_in_allowlist"}` + "\n", 0, `+  "allowed_domains": ["api.example.com", "pypi.org"]`},
		{[]string{"check", "-h"}, "", 0, "usage: forge-supervisor"},
		// forge.yaml: through its effective allowlist, as the supervisor runs it.
		{[]string{"lint", forgeYAML}, "", 0, "ports opened:"},
		{[]string{"check", "-policy", forgeYAML, "-name", "db.example.com", "-port", "5432"}, "", 0, "ALLOW"},
		{[]string{"suggest", "-policy", forgeYAML}, `{"msg":"egress_denied","sni":"pypi.org","dst_port":443,"reason":"not_in_allowlist"}`, 0, "add the entries above to it by hand"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cfg, sub, argv, err := ParseConfig(tc.args, env(nil))
			if err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			code := runTool(cfg, sub, argv, strings.NewReader(tc.stdin), &out, &errOut)
			if code != tc.code || !strings.Contains(out.String(), tc.out) {
				t.Errorf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, tc.code, out.String(), errOut.String())
			}
		})
	}
}
