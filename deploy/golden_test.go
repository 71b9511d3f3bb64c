package deploy_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/deploy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./deploy -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./deploy -update rewrites it):\n--- got ---\n%s", name, got)
	}
}

// readPolicy is the Forge policy the golden manifests embed.
func readPolicy(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "egress_allowlist.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// customOptions differ from every default, so the golden files show each
// setting's effect.
func customOptions() deploy.Options {
	return deploy.Options{
		Name: "coder", Namespace: "agents", Image: "registry.example/forge/coder:1.2.3",
		AgentCommand: []string{"/usr/local/bin/agent", "--task", "say \"hi\"; rm -rf /"},
		PolicyPath:   "policies/team.rego",
		AgentUID:     2000, AgentGID: 3000, ProxyPort: 16001, DNSPort: 16002, HealthPort: 80,
		Grace: 30 * time.Second,
		Resources: deploy.Resources{CPURequest: "500m", MemoryRequest: "1Gi", CPULimit: "4",
			MemoryLimit: "8Gi", TmpSize: "10Gi"},
		// The fast path off, as generate passes it: the setting, and no
		// NET_RAW.
		Settings:   []deploy.Setting{{Env: "FORGE_SUPERVISOR_FAST_PATH", Value: "false"}},
		NoFastPath: true,
	}
}

func TestGolden(t *testing.T) {
	def := deploy.Options{Image: "forge-agent:latest", AgentCommand: []string{"/agent"}}
	for _, tc := range []struct {
		name   string
		render func() ([]byte, error)
	}{
		{"default.Dockerfile", func() ([]byte, error) { return deploy.Dockerfile(def) }},
		{"custom.Dockerfile", func() ([]byte, error) { return deploy.Dockerfile(customOptions()) }},
		{"nocmd.Dockerfile", func() ([]byte, error) { return deploy.Dockerfile(deploy.Options{}) }},
		{"default.k8s.yaml", func() ([]byte, error) { return deploy.Kubernetes(def, readPolicy(t)) }},
		{"custom.k8s.yaml", func() ([]byte, error) {
			return deploy.Kubernetes(customOptions(), []byte("package forge\n\n  indented\tline\n\n"))
		}},
		{"seccomp.json", deploy.Seccomp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.render()
			if err != nil {
				t.Fatal(err)
			}
			again, err := tc.render()
			if err != nil || !bytes.Equal(got, again) {
				t.Fatalf("two renders differ (err %v): output must be deterministic", err)
			}
			golden(t, tc.name, got)
		})
	}
}
