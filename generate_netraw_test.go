package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestGeneratedNetRawFollowsFastPath: the generated container keeps
// NET_RAW exactly when its supervisor would run the kernel verdict path,
// whichever layer (flag, environment, forge.yaml) turns that off.
func TestGeneratedNetRawFollowsFastPath(t *testing.T) {
	pol := writePolicy(t, "egress_allowlist.json", `{"mode":"allowlist","allowed_domains":["api.example.com"]}`+"\n")
	project := func(supervisor string) string {
		return writePolicy(t, "forge.yaml", "agent_id: a\nversion: \"1\"\nentrypoint: /a\nsupervisor:\n"+supervisor)
	}
	byPolicy := []string{"-policy-path", pol}
	for _, tc := range []struct {
		name string
		// flags are the supervisor's (before "generate"), gen generate's.
		flags, gen []string
		env        map[string]string
		wantRaw    bool
	}{
		{"default", nil, byPolicy, nil, true},
		{"forge.yaml without the setting", nil, []string{"-forge-yaml", project("  dns_rate: 7\n")}, nil, true},
		{"environment", nil, byPolicy, map[string]string{"FORGE_SUPERVISOR_FAST_PATH": "0"}, false},
		{"flag", []string{"-fast-path=false"}, byPolicy, nil, false},
		{"forge.yaml", nil, []string{"-forge-yaml", project("  fast_path: false\n")}, nil, false},
		{"environment over forge.yaml", nil, []string{"-forge-yaml", project("  fast_path: false\n")},
			map[string]string{"FORGE_SUPERVISOR_FAST_PATH": "true"}, true},
		// The process of every connection is looked up by the proxy only,
		// so the supervisor keeps the fast path off (fastPathRuledOut).
		{"audit_process in forge.yaml", nil, []string{"-forge-yaml", project("  audit_process: true\n")}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, target := range []string{"k8s", "dockerfile"} {
				args := append(append(append([]string(nil), tc.flags...), "generate", target, "-image", "reg.example/a:1"), tc.gen...)
				cfg, _, rest, err := ParseConfig(args, env(tc.env))
				if err != nil {
					t.Fatalf("ParseConfig(%q): %v", args, err)
				}
				var out, errb bytes.Buffer
				if code := runGenerate(cfg, rest, &out, &errb); code != 0 {
					t.Fatalf("%s: exit %d: %s", target, code, errb.String())
				}
				var has bool
				switch target {
				case "k8s":
					has = strings.Contains(out.String(), "\n            - \"NET_RAW\" # ")
				case "dockerfile":
					has = strings.Contains(out.String(), ",KILL,NET_RAW ...\n")
				}
				if has != tc.wantRaw {
					t.Errorf("%s: NET_RAW granted %v, want %v:\n%s", target, has, tc.wantRaw, out.String())
				}
			}
		})
	}
}
