package deploy_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/forge/forge-supervisor/deploy"
)

// instructions are a Dockerfile's non-comment lines.
func instructions(out []byte) []string {
	var instr []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			instr = append(instr, l)
		}
	}
	return instr
}

// TestDockerfileWrapsBaseImage: with a base image the Dockerfile is
// multi-stage, copies exactly the supervisor's three files onto the agent's
// image, runs as root, and carries the non-default settings as ENV.
func TestDockerfileWrapsBaseImage(t *testing.T) {
	out, err := deploy.Dockerfile(deploy.Options{
		BaseImage: "python:3.12-slim", AgentCommand: []string{"python", "-m", "agent"},
		Settings: []deploy.Setting{
			{Env: "FORGE_SUPERVISOR_DRY_RUN", Value: "true"},
			{Env: "FORGE_SUPERVISOR_LOG_LEVEL", Value: "info", IsDefault: true},
			{Env: "FORGE_SUPERVISOR_DNS_UPSTREAM", Value: "a b"},
			{Env: "FORGE_SUPERVISOR_PROXY_PORT", Value: "1"}, // a typed field's variable: the field wins
		},
		InboundPorts: []uint16{8080},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"FROM scratch AS forge-supervisor",
		`COPY ["forge-supervisor", "/forge-supervisor"]`,
		`COPY ["seccomp.json", "/etc/forge/seccomp.json"]`,
		`COPY ["egress_allowlist.json", "/etc/forge/egress_allowlist.json"]`,
		"FROM python:3.12-slim",
		`COPY --from=forge-supervisor ["/forge-supervisor", "/forge-supervisor"]`,
		`COPY --from=forge-supervisor ["/etc/forge/seccomp.json", "/etc/forge/seccomp.json"]`,
		`COPY --from=forge-supervisor ["/etc/forge/egress_allowlist.json", "/etc/forge/egress_allowlist.json"]`,
		"USER 0:0",
		"ENV FORGE_SUPERVISOR_DRY_RUN=true",
		`ENV FORGE_SUPERVISOR_DNS_UPSTREAM="a b"`,
		"EXPOSE 15000/tcp",
		"EXPOSE 8080/tcp",
		"STOPSIGNAL SIGTERM",
		`ENTRYPOINT ["/forge-supervisor", "--"]`,
		`CMD ["python", "-m", "agent"]`,
	}
	if got := instructions(out); !reflect.DeepEqual(got, want) {
		t.Errorf("instructions:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := deploy.Dockerfile(deploy.Options{BaseImage: "python 3"}); err == nil || !strings.Contains(err.Error(), `deploy: base image: "python 3" is not an image reference`) {
		t.Errorf("bad base image: %v", err)
	}
}

// TestNetworkPolicyModes: deny-all allows nothing (not even DNS); dev-open
// every TCP port plus DNS.
func TestNetworkPolicyModes(t *testing.T) {
	for _, tc := range []struct {
		mode, want string
	}{
		{"deny-all", "  policyTypes: [\"Egress\"]\n  # deny-all: no egress at all, not even DNS (the supervisor answers no name).\n  egress: []\n"},
		{"dev-open", "  - ports:\n    - protocol: UDP\n      port: 53\n    - protocol: TCP\n      port: 53\n" +
			"  # dev-open: every TCP port (the supervisor still blocks private and metadata addresses).\n  - ports:\n    - protocol: TCP\n"},
	} {
		out, err := deploy.Kubernetes(deploy.Options{Image: "i", NetworkPolicy: &deploy.Egress{Mode: tc.mode}}, []byte(`{"mode":"`+tc.mode+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		np := string(out)[strings.Index(string(out), "kind: NetworkPolicy"):]
		if !strings.HasSuffix(np, tc.want) {
			t.Errorf("%s:\n%s\nwant it to end with:\n%s", tc.mode, np, tc.want)
		}
	}
	if _, err := deploy.Kubernetes(deploy.Options{Image: "i", NetworkPolicy: &deploy.Egress{Mode: "open"}}, []byte("{}")); err == nil {
		t.Error("unknown mode accepted")
	}
}
