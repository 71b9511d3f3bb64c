package deploy_test

import (
	"encoding/json"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/forge/forge-supervisor/deploy"
	"github.com/forge/forge-supervisor/jail"
)

func defaultK8s(t *testing.T) string {
	t.Helper()
	out, err := deploy.Kubernetes(deploy.Options{Image: "forge-agent:latest", AgentCommand: []string{"/agent"}}, readPolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestSecurityContext asserts every field of the container's and the pod's
// security settings as exact lines, so a regression cannot hide in a golden
// file update.
func TestSecurityContext(t *testing.T) {
	y := defaultK8s(t)
	for _, want := range []string{
		"\n      automountServiceAccountToken: false\n",
		"\n      hostNetwork: false\n",
		"\n      hostPID: false\n",
		"\n      hostIPC: false\n",
		"\n      securityContext:\n" +
			"        # The runtime's default filter for the supervisor; the supervisor loads its\n" +
			"        # stricter profile (/etc/forge/seccomp/seccomp.json) into the agent itself.\n" +
			"        seccompProfile:\n          type: RuntimeDefault\n",
		"\n        securityContext:\n" +
			"          runAsUser: 0\n" +
			"          runAsGroup: 0\n" +
			"          runAsNonRoot: false\n" +
			"          privileged: false\n" +
			"          # no_new_privs for the whole container: nothing gains privileges by execve.\n" +
			"          allowPrivilegeEscalation: false\n" +
			"          readOnlyRootFilesystem: true\n" +
			"          capabilities:\n" +
			"            drop: [\"ALL\"]\n" +
			"            add:\n" +
			"            - \"NET_ADMIN\" # ",
		"\n        livenessProbe:\n          httpGet:\n            path: /healthz\n            port: health\n",
		"\n        readinessProbe:\n          httpGet:\n            path: /readyz\n            port: health\n",
		"\n        - name: health\n          containerPort: 15000\n          protocol: TCP\n",
		"\n        resources:\n          requests:\n            cpu: \"250m\"\n            memory: \"256Mi\"\n" +
			"          limits:\n            cpu: \"2\"\n            memory: \"2Gi\"\n",
		"\n        - name: FORGE_SUPERVISOR_REQUIRE_KERNEL\n          value: \"true\"\n",
		"\n        - name: FORGE_SUPERVISOR_POLICY_PATH\n          value: \"/etc/forge/policy/egress_allowlist.json\"\n",
	} {
		if !strings.Contains(y, want) {
			t.Errorf("manifest lacks:\n%s", want)
		}
	}
	// Exactly the six capabilities, in order, and nothing that widens the
	// container.
	var added []string
	for _, l := range strings.Split(y, "\n") {
		if strings.HasPrefix(l, "            - \"") {
			added = append(added, strings.Trim(strings.Fields(l)[1], `"`))
		}
	}
	if want := []string{"NET_ADMIN", "SETUID", "SETGID", "SETPCAP", "KILL", "NET_RAW"}; !reflect.DeepEqual(added, want) {
		t.Errorf("capabilities added = %v, want %v", added, want)
	}
	for _, bad := range []string{"SYS_ADMIN", "DAC_OVERRIDE", "privileged: true", "hostNetwork: true", "Unconfined"} {
		if strings.Contains(y, bad) {
			t.Errorf("manifest contains %q", bad)
		}
	}
}

func TestCapabilities(t *testing.T) {
	names := func(o deploy.Options) []string {
		var n []string
		for _, c := range o.WithDefaults().Capabilities() {
			if c.Why == "" {
				t.Errorf("%s has no reason", c.Name)
			}
			n = append(n, c.Name)
		}
		return n
	}
	five := []string{"NET_ADMIN", "SETUID", "SETGID", "SETPCAP", "KILL"}
	withRaw := append(append([]string(nil), five...), "NET_RAW")
	if got := names(deploy.Options{}); !reflect.DeepEqual(got, withRaw) {
		t.Errorf("defaults (fast path on): %v, want %v", got, withRaw)
	}
	// The kernel verdict path off: no raw sockets, no NET_RAW.
	if got := names(deploy.Options{NoFastPath: true}); !reflect.DeepEqual(got, five) {
		t.Errorf("fast path off: %v, want %v", got, five)
	}
	// A privileged port adds exactly NET_BIND_SERVICE.
	if got, want := names(deploy.Options{DNSPort: 53}), append(withRaw, "NET_BIND_SERVICE"); !reflect.DeepEqual(got, want) {
		t.Errorf("dns port 53: %v, want %v", got, want)
	}
	if got, want := names(deploy.Options{DNSPort: 53, NoFastPath: true}), append(five, "NET_BIND_SERVICE"); !reflect.DeepEqual(got, want) {
		t.Errorf("dns port 53, fast path off: %v, want %v", got, want)
	}
}

// TestYAMLStructure: one document per object, each starting with
// apiVersion/kind, and (when PyYAML is installed) every document parses
// to the expected objects with the policy bytes intact.
func TestYAMLStructure(t *testing.T) {
	policies := map[string]string{
		"forge json":          string(readPolicy(t)),
		"no final newline":    `{"mode":"deny-all"}`,
		"leading spaces":      "  {\"mode\": \"deny-all\"}\n",
		"trailing blanks":     "package forge\n\n\n",
		"carriage returns":    "{\r\n\"mode\": \"deny-all\"\r\n}\r\n",
		"control and unicode": "a\x01b \u2028 \"quoted\" \\ ünï",
		"yaml lookalikes":     "---\n...\n# not a comment\nkey: value\n- item\n",
	}
	for name, pol := range policies {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, err := deploy.Kubernetes(deploy.Options{Image: "img", AgentCommand: []string{"/agent", "a: b", "#x", "\ttab\n"}}, []byte(pol))
			if err != nil {
				t.Fatal(err)
			}
			docs := strings.Split(string(out), "\n---\n")
			if len(docs) != 3 {
				t.Fatalf("%d documents, want 3 (ConfigMap, ConfigMap, Deployment)", len(docs))
			}
			for i, kind := range []string{"ConfigMap", "ConfigMap", "Deployment"} {
				if !strings.Contains(docs[i], "\nkind: "+kind+"\n") {
					t.Errorf("document %d is not a %s", i, kind)
				}
				if strings.Contains(docs[i], "\t") && !strings.Contains(pol, "\t") {
					t.Errorf("document %d contains a tab", i)
				}
			}
			checkWithPyYAML(t, out, pol, []string{"/agent", "a: b", "#x", "\ttab\n"})
		})
	}
}

// pyCheck loads every document and prints, as JSON, the ConfigMap's data
// and the container's args and securityContext.
const pyCheck = `
import json, sys, yaml
docs = list(yaml.safe_load_all(sys.stdin.read()))
cm, sc, dep = docs
c = dep["spec"]["template"]["spec"]["containers"][0]
print(json.dumps({"kinds": [d["kind"] for d in docs], "data": cm["data"], "args": c["args"],
  "sc": c["securityContext"], "pod": dep["spec"]["template"]["spec"]["securityContext"],
  "mode": dep["spec"]["template"]["spec"]["volumes"][0]["configMap"]["defaultMode"]}))
`

// havePyYAML reports, once per test binary, whether python3 can import yaml.
var havePyYAML = sync.OnceValue(func() bool {
	return exec.Command("python3", "-c", "import yaml").Run() == nil
})

func checkWithPyYAML(t *testing.T, manifest []byte, policy string, args []string) {
	t.Helper()
	if !havePyYAML() {
		t.Log("python3 with PyYAML not available; structure checked by string assertions only")
		return
	}
	cmd := exec.Command("python3", "-c", pyCheck)
	cmd.Stdin = strings.NewReader(string(manifest))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("PyYAML rejects the manifest: %v\n%s", err, manifest)
	}
	var got struct {
		Kinds []string
		Data  map[string]string
		Args  []string
		SC    map[string]any
		Pod   map[string]any
		Mode  int
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Kinds, []string{"ConfigMap", "ConfigMap", "Deployment"}) {
		t.Errorf("kinds = %v", got.Kinds)
	}
	if got.Data["egress_allowlist.json"] != policy {
		t.Errorf("policy read back as %q, want %q", got.Data["egress_allowlist.json"], policy)
	}
	if !reflect.DeepEqual(got.Args, args) {
		t.Errorf("args read back as %q, want %q", got.Args, args)
	}
	wantSC := map[string]any{
		"runAsUser": 0.0, "runAsGroup": 0.0, "runAsNonRoot": false, "privileged": false,
		"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
		"capabilities": map[string]any{"drop": []any{"ALL"}, "add": []any{"NET_ADMIN", "SETUID", "SETGID", "SETPCAP", "KILL", "NET_RAW"}},
	}
	if !reflect.DeepEqual(got.SC, wantSC) {
		t.Errorf("securityContext read back as %v, want %v", got.SC, wantSC)
	}
	if want := map[string]any{"seccompProfile": map[string]any{"type": "RuntimeDefault"}}; !reflect.DeepEqual(got.Pod, want) {
		t.Errorf("pod securityContext = %v, want %v", got.Pod, want)
	}
	if got.Mode != 0o444 {
		t.Errorf("defaultMode = %o, want 0444", got.Mode)
	}
}

func TestDockerfile(t *testing.T) {
	out, err := deploy.Dockerfile(deploy.Options{AgentCommand: []string{"/agent", "--flag", `x"y`}})
	if err != nil {
		t.Fatal(err)
	}
	var instr []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			instr = append(instr, l)
		}
	}
	want := []string{
		"FROM scratch",
		`COPY ["forge-supervisor", "/forge-supervisor"]`,
		`COPY ["seccomp.json", "/etc/forge/seccomp.json"]`,
		`COPY ["egress_allowlist.json", "/etc/forge/egress_allowlist.json"]`,
		"EXPOSE 15000/tcp",
		"STOPSIGNAL SIGTERM",
		`ENTRYPOINT ["/forge-supervisor", "--"]`,
		`CMD ["/agent", "--flag", "x\"y"]`,
	}
	if !reflect.DeepEqual(instr, want) {
		t.Errorf("instructions:\n%s\nwant:\n%s", strings.Join(instr, "\n"), strings.Join(want, "\n"))
	}
	// CMD's exec form is JSON: it must decode to the exact argv.
	var argv []string
	if err := json.Unmarshal([]byte(strings.TrimPrefix(instr[len(instr)-1], "CMD ")), &argv); err != nil || !reflect.DeepEqual(argv, []string{"/agent", "--flag", `x"y`}) {
		t.Errorf("CMD decodes to %q (%v)", argv, err)
	}
	if strings.Contains(string(out), "\nUSER ") || strings.Contains(string(out), "\nRUN ") {
		t.Error("the image must run the supervisor as root and needs no RUN (no shell in scratch)")
	}
}

// TestSeccompRoundTrip: the exported profile parses back through the
// supervisor's own loader to the built-in profile.
func TestSeccompRoundTrip(t *testing.T) {
	out, err := deploy.Seccomp()
	if err != nil {
		t.Fatal(err)
	}
	p, err := jail.ParseProfile(out)
	if err != nil {
		t.Fatalf("exported profile does not parse: %v", err)
	}
	if want := jail.DefaultProfile(); !reflect.DeepEqual(p, want) {
		t.Errorf("round trip changed the profile:\ngot  %+v\nwant %+v", p, want)
	}
	again, err := p.MarshalOCI()
	if err != nil || string(again) != string(out) {
		t.Errorf("re-export differs (err %v)", err)
	}
	if err := jail.CheckProfile(""); err != nil {
		t.Fatalf("built-in profile does not compile: %v", err)
	}
}

func TestMarshalOCIRefusesInvalid(t *testing.T) {
	p := jail.DefaultProfile()
	p.DefaultAction = "SCMP_ACT_BOGUS"
	if _, err := p.MarshalOCI(); err == nil || !strings.Contains(err.Error(), `defaultAction: unknown or unsupported action "SCMP_ACT_BOGUS"`) {
		t.Errorf("err = %v", err)
	}
}

func TestInvalidOptions(t *testing.T) {
	pol := []byte(`{"mode":"deny-all"}`)
	for _, tc := range []struct {
		name string
		o    deploy.Options
		want string
	}{
		{"upper-case name", deploy.Options{Image: "i", Name: "Agent"}, `deploy: name: "Agent" is not a DNS-1123 label`},
		{"long namespace", deploy.Options{Image: "i", Namespace: strings.Repeat("a", 64)}, "deploy: namespace:"},
		{"no image", deploy.Options{}, "deploy: image: required"},
		{"image with space", deploy.Options{Image: "a b"}, `deploy: image: "a b" is not an image reference`},
		{"empty argv0", deploy.Options{Image: "i", AgentCommand: []string{""}}, "deploy: agent command: the command (argv[0]) is empty"},
		{"invalid utf-8 arg", deploy.Options{Image: "i", AgentCommand: []string{"/a", "\xff"}}, "deploy: agent command: argv[1] is not valid UTF-8"},
		{"same ports", deploy.Options{Image: "i", ProxyPort: 15000}, "deploy: ports: proxy 15000, dns 15002 and health 15000 must differ"},
		{"uid -1", deploy.Options{Image: "i", AgentUID: 1<<32 - 1}, "deploy: agent uid/gid: 4294967295"},
		{"bad quantity", deploy.Options{Image: "i", Resources: deploy.Resources{CPULimit: "2 cores"}}, `deploy: cpu limit: "2 cores" is not a Kubernetes quantity`},
		{"newline in source", deploy.Options{Image: "i", BinarySource: "a\nRUN x"}, "deploy: binary source:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := deploy.Kubernetes(tc.o, pol)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if _, err := deploy.Kubernetes(deploy.Options{Image: "i"}, nil); err == nil || !strings.Contains(err.Error(), "deploy: policy: 0 bytes") {
		t.Errorf("empty policy: err = %v", err)
	}
	if _, err := deploy.Dockerfile(deploy.Options{BinarySource: "x\ny"}); err == nil {
		t.Error("Dockerfile accepted a newline in a COPY source")
	}
}
