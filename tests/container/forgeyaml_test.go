package container

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

// The forge.yaml test's podman objects: a network of their own (another
// TEST-NET range), so it never meets TestContainer's leftovers.
const (
	fyBaseImage = "localhost/forge-supervisor-ct-agent-base:test"
	fyImage     = "localhost/forge-supervisor-ct-wrapped:test"
	fyNetwork   = "forge-supervisor-ct-fy"
	fyWorld     = "forge-supervisor-ct-fy-world"
	fyAgent     = "forge-supervisor-ct-fy-agent"
	fySubnet    = "203.0.113.0/24" // TEST-NET-3: documentation, never routed
	fyWorldIP   = "203.0.113.10"
	fyAgentIP   = "203.0.113.20"
	// fyExit is the agent script's status when every check passed.
	fyExit = 42
	// fyBusybox is Debian busybox-static's binary: the base image's whole
	// userland, and the world's web server.
	fyBusybox = "/bin/busybox"
)

// fyForgeYAML is the Forge project: the model server at an IP literal on
// port 8080 (which becomes an allowed_tcp rule), the agent's own image to
// wrap, and supervisor settings.
var fyForgeYAML = `agent_id: ct-agent
version: "1.0"
framework: custom
entrypoint: /bin/sh /app/agent.sh
model:
  provider: openai
  name: local-model
  base_url: http://` + fyWorldIP + `:8080/v1
egress:
  profile: standard
  mode: allowlist
  allowed_domains: [api.example.com]
supervisor:
  base_image: ` + fyBaseImage + `
  require_kernel: true
  dns_upstream: [` + fyWorldIP + `]
  grace: 5s
  log_level: info
`

// fyAgentScript is the agent: busybox sh and nc speaking HTTP/1.0 (the
// static busybox's wget needs glibc's NSS modules, which a scratch image
// lacks), run by the supervisor as uid 1000 under the generated profile.
const fyAgentScript = `#!/bin/sh
get() { printf 'GET /v1 HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" | nc -w 5 "${1%:*}" "${1##*:}" 2>&1; }
i=0
until out=$(get ` + fyWorldIP + `:8080) && case "$out" in *"hello from world"*) true ;; *) false ;; esac; do
	i=$((i+1)); [ $i -ge 40 ] && { echo "FAIL allowed: $out"; exit 1; }; sleep 0.25
done
echo "ok allowed: $(echo "$out" | head -n 1)"
out=$(get ` + fyWorldIP + `:9000)
case "$out" in *" 403 "*) echo "ok denied: $(echo "$out" | head -n 1)" ;; *) echo "FAIL denied: $out"; exit 1 ;; esac
echo "ok identity: $(id -u):$(id -g)"
sleep "${HOLD:-0}"
exit 42
`

// TestForgeYAMLContainer goes from a forge.yaml to a running agent the way
// the README says: generate allowlist, seccomp, dockerfile (wrapping the
// agent's own image) and k8s from the forge.yaml, build, run with the
// capabilities the manifest lists, and watch allowed and denied traffic,
// /readyz and the agent's exit status.
func TestForgeYAMLContainer(t *testing.T) {
	requireTools(t)
	if _, err := os.Stat(fyBusybox); err != nil {
		t.Skipf("the agent's base image needs a static busybox (apt-get install busybox-static): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()

	// The agent's own image: FROM scratch with busybox, running as a
	// non-root USER, as agent images do.
	base := t.TempDir()
	for _, d := range []string{"rootfs/bin", "rootfs/app/www", "rootfs/tmp"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile(fyBusybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "rootfs/bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "nc", "printf", "head", "id", "sleep", "httpd"} {
		if err := os.Symlink("busybox", filepath.Join(base, "rootfs/bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(base, "rootfs/app/agent.sh"), fyAgentScript)
	writeFile(t, filepath.Join(base, "rootfs/app/www/v1"), "hello from world\n")
	writeFile(t, filepath.Join(base, "Dockerfile"), "FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nWORKDIR /app\nUSER 1000:1000\nCMD [\"/bin/sh\", \"/app/agent.sh\"]\n")
	podman(t, ctx, "build", "-q", "--pull=never", "--layers=false", "-t", fyBaseImage, base)
	t.Cleanup(func() { podmanQuiet("rmi", "-f", fyBaseImage) })

	// The build context, all of it generated from forge.yaml.
	dir := t.TempDir()
	bin := staticSupervisor(t, ctx, dir)
	fy := filepath.Join(dir, "forge.yaml")
	writeFile(t, fy, fyForgeYAML)
	allowlist := run(t, ctx, bin, "generate", "allowlist", "-forge-yaml", fy)
	if !bytes.Contains(allowlist, []byte(`"`+fyWorldIP+`:8080"`)) {
		t.Fatalf("the model endpoint's port is not an allowed_tcp rule:\n%s", allowlist)
	}
	writeFile(t, filepath.Join(dir, "egress_allowlist.json"), string(allowlist))
	seccompPath := filepath.Join(dir, "seccomp.json")
	writeFile(t, seccompPath, string(run(t, ctx, bin, "generate", "seccomp", "-forge-yaml", fy)))
	dockerfile := run(t, ctx, bin, "generate", "dockerfile", "-forge-yaml", fy)
	for _, want := range []string{"\nFROM scratch AS forge-supervisor\n", "\nFROM " + fyBaseImage + "\n", "\nUSER 0:0\n",
		"\nENTRYPOINT [\"/forge-supervisor\", \"--\"]\n", "\nCMD [\"/bin/sh\", \"/app/agent.sh\"]\n",
		"\nENV FORGE_SUPERVISOR_REQUIRE_KERNEL=true\n", "\nENV FORGE_SUPERVISOR_DNS_UPSTREAM=" + fyWorldIP + ":53\n"} {
		if !bytes.Contains(dockerfile, []byte(want)) {
			t.Fatalf("generated Dockerfile lacks %q:\n%s", want, dockerfile)
		}
	}
	writeFile(t, filepath.Join(dir, "Dockerfile"), string(dockerfile))
	manifest := run(t, ctx, bin, "generate", "k8s", "-forge-yaml", fy, "-image", fyImage)
	caps := manifestCaps(t, manifest)

	podman(t, ctx, "build", "-q", "--pull=never", "--layers=false", "-t", fyImage, dir)
	t.Cleanup(func() { podmanQuiet("rmi", "-f", fyImage) })
	for _, c := range []string{fyAgent, fyWorld} {
		podmanQuiet("rm", "-f", "-t", "0", c)
	}
	podmanQuiet("network", "rm", "-f", fyNetwork)
	podman(t, ctx, "network", "create", "--internal", "--subnet", fySubnet, fyNetwork)
	t.Cleanup(func() {
		podmanQuiet("rm", "-f", "-t", "0", fyAgent)
		podmanQuiet("rm", "-f", "-t", "0", fyWorld)
		podmanQuiet("network", "rm", "-f", fyNetwork)
	})
	// The world: busybox httpd on 8080, nothing on 9000.
	podman(t, ctx, append(append([]string{"run", "-d"}, runFlags...), "--name", fyWorld, "--network", fyNetwork,
		"--ip", fyWorldIP, "--entrypoint", "/bin/httpd", fyBaseImage, "-f", "-p", "8080", "-h", "/app/www")...)

	// The agent as the manifest runs it: only its capabilities, read-only
	// root, no_new_privs, the generated profile on the whole container.
	podman(t, ctx, append(append([]string{"run", "-d"}, "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"),
		"--name", fyAgent, "--network", fyNetwork, "--ip", fyAgentIP, "--dns", fyWorldIP, "-e", "HOLD=5",
		"--cap-drop", "ALL", "--cap-add", strings.Join(caps, ","), "--read-only", "--tmpfs", "/tmp",
		"--security-opt", "no-new-privileges", "--security-opt", "seccomp="+seccompPath, fyImage)...)

	// /readyz, asked from inside the pod as root (the supervisor's own uid
	// is never redirected), while the agent holds.
	var ready string
	for i := 0; i < 60 && !strings.Contains(ready, "ready"); i++ {
		out, _ := exec.CommandContext(ctx, "podman", "--runtime", "runc", "exec", fyAgent, "/bin/sh", "-c",
			`printf 'GET /readyz HTTP/1.0\r\n\r\n' | nc -w 2 127.0.0.1 15000`).CombinedOutput()
		ready = string(out)
		time.Sleep(250 * time.Millisecond)
	}
	if !strings.Contains(ready, "ready") {
		t.Errorf("/readyz never answered ready: %q", ready)
	}

	code := waitExit(t, ctx, fyAgent)
	logs, _ := exec.CommandContext(ctx, "podman", "logs", fyAgent).CombinedOutput()
	// The agent's lines arrive as agent_output records: appended unwrapped.
	agent := append(world.AgentLines(string(logs), "stdout"), world.AgentLines(string(logs), "stderr")...)
	out := "\n" + string(logs) + "\n" + strings.Join(agent, "\n") + "\n"
	if code != fyExit {
		t.Errorf("exit %d, want %d (every check passed, status propagated)", code, fyExit)
	}
	for _, check := range []string{"allowed: HTTP/1.1 200 OK", "denied: HTTP/1.1 403 ", "identity: 1000:1000"} {
		if !strings.Contains(out, "\nok "+check) {
			t.Errorf("check %q did not pass", check)
		}
	}
	events := auditEvents(out)
	var sawAllowed, sawDenied bool
	for _, e := range events {
		switch {
		case e["msg"] == "egress_allowed" && e["rule"] == "allowed_tcp:"+fyWorldIP+":8080":
			sawAllowed = true
		case e["msg"] == "egress_denied" && fmt.Sprint(e["dst_port"]) == "9000":
			sawDenied = true
		}
	}
	if !sawAllowed || !sawDenied {
		t.Errorf("audit: allowed by the endpoint's rule %v, denied on 9000 %v", sawAllowed, sawDenied)
	}
	// The manifest's capabilities (NET_RAW among them) are enough for the
	// kernel verdict path, the default.
	if !strings.Contains(out, `"msg":"fast_path_enabled"`) || strings.Contains(out, `"msg":"fast_path_unavailable"`) {
		t.Errorf("the fast path did not run with the manifest's capabilities %v", caps)
	}
	if t.Failed() {
		t.Logf("container output:\n%s", out)
	}
}

// capLine is one capability of the generated Deployment: `- "NET_ADMIN" # why`.
var capLine = regexp.MustCompile(`(?m)^ {12}- "([A-Z_]+)" #`)

// manifestCaps are the capabilities the generated manifest adds.
func manifestCaps(t *testing.T, manifest []byte) []string {
	t.Helper()
	var caps []string
	for _, m := range capLine.FindAllSubmatch(manifest, -1) {
		caps = append(caps, string(m[1]))
	}
	if len(caps) == 0 {
		t.Fatalf("no capabilities in the manifest:\n%s", manifest)
	}
	return caps
}

// waitExit waits for the container to stop and returns its exit status.
func waitExit(t *testing.T, ctx context.Context, name string) int {
	t.Helper()
	out, err := exec.CommandContext(ctx, "podman", "--runtime", "runc", "wait", name).Output()
	if err != nil {
		t.Fatalf("podman wait %s: %v", name, err)
	}
	var code int
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "%d", &code); err != nil {
		t.Fatalf("podman wait %s: %q", name, out)
	}
	return code
}
