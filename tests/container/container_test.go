// Package container runs forge-supervisor the way a deployment does: in a
// FROM-scratch image built from the generated Dockerfile and seccomp
// profile, under podman with runc, on an internal podman network whose only
// other member is a "world" container. Nothing can leave the machine: the
// network is --internal (no gateway, no route out) and the supervisor's DNS
// upstream is the world container.
package container

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

// Names and addresses of the test's podman objects. They are fixed so a
// crashed run's leftovers are removed by the next run (removal is by exact
// name, so nothing else is touched).
const (
	image        = "localhost/forge-supervisor-ct:test"
	network      = "forge-supervisor-ct"
	worldName    = "forge-supervisor-ct-world"
	subnet       = "198.51.100.0/24" // TEST-NET-2: documentation, never routed
	worldIP      = "198.51.100.10"
	agentIP      = "198.51.100.20"
	worldAddr    = worldIP + ":8080"
	deniedAddr   = "198.51.100.9:80" // no one is there: only the supervisor can answer
	testDeadline = 3 * time.Minute
	// exitAllPassed and exitLeftChild are the test agent's statuses.
	exitAllPassed = 42
	exitLeftChild = 7
)

// minimalCaps is the set the generated manifest adds (deploy.Capabilities,
// the fast path on); TestContainer checks it against the binary's own
// "generate k8s".
var minimalCaps = []string{"NET_ADMIN", "SETUID", "SETGID", "SETPCAP", "KILL", "NET_RAW"}

// The fast-path gauge as the agent's fast-path check reports it (when it is
// 1 the check has fetched the world once more, on the kernel path).
const (
	fastPathOn  = "\nok fast-path: forge_supervisor_fast_path_available 1 (then fetched " + worldAddr + " again)\n"
	fastPathOff = "\nok fast-path: forge_supervisor_fast_path_available 0\n"
)

// runtimeFlags are what podman needs on these machines (TESTING.md): runc,
// since crun fails on hybrid cgroups, and explicit rlimits.
var runtimeFlags = []string{"--runtime", "runc"}

var runFlags = []string{"--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"}

func requireTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("container tests need root (rootful podman)")
	}
	for _, tool := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("container tests need %s (apt-get install -y podman runc): %v", tool, err)
		}
	}
}

func TestContainer(t *testing.T) {
	requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	dir := t.TempDir()
	bin := staticSupervisor(t, ctx, dir)
	buildAgent(t, ctx, dir)

	// The build context, made by the binary's own generate subcommand.
	policy := fmt.Sprintf(`{"mode":"allowlist","allowed_tcp":[%q]}`, worldAddr)
	writeFile(t, filepath.Join(dir, "egress_allowlist.json"), policy)
	writeFile(t, filepath.Join(dir, "seccomp.json"), string(run(t, ctx, bin, "generate", "seccomp")))
	dockerfile := run(t, ctx, bin, "generate", "dockerfile", "--", "/agent", "check", worldAddr, deniedAddr, worldIP)
	manifest := run(t, ctx, bin, "generate", "k8s", "-policy-path", filepath.Join(dir, "egress_allowlist.json"), "-image", image)
	if got := manifestCaps(t, manifest); !slices.Equal(got, minimalCaps) {
		t.Fatalf("generate k8s adds %v; this test drops each of %v", got, minimalCaps)
	}
	if want := "--cap-add " + strings.Join(minimalCaps, ",") + " "; !bytes.Contains(dockerfile, []byte(want)) {
		t.Fatalf("generated Dockerfile does not say to run it with %q:\n%s", want, dockerfile)
	}
	for _, want := range []string{"\nFROM scratch\n", "\nENTRYPOINT [\"/forge-supervisor\", \"--\"]\n"} {
		if !bytes.Contains(dockerfile, []byte(want)) {
			t.Fatalf("generated Dockerfile lacks %q:\n%s", want, dockerfile)
		}
	}
	// The test agent's files come from "the user's build".
	dockerfile = append(dockerfile, "COPY [\"agent\", \"/agent\"]\n"...)
	writeFile(t, filepath.Join(dir, "Dockerfile"), string(dockerfile))

	podman(t, ctx, "build", "-q", "--layers=false", "-t", image, dir)
	t.Cleanup(func() { podmanQuiet("rmi", "-f", image) })
	podmanQuiet("rm", "-f", "-t", "0", worldName)
	podmanQuiet("network", "rm", "-f", network)
	podman(t, ctx, "network", "create", "--internal", "--subnet", subnet, network)
	t.Cleanup(func() {
		podmanQuiet("rm", "-f", "-t", "0", worldName)
		podmanQuiet("network", "rm", "-f", network)
	})
	podman(t, ctx, append(append([]string{"run", "-d"}, runFlags...), "--name", worldName, "--network", network,
		"--ip", worldIP, "--entrypoint", "/agent", image, "world", ":8080")...)

	agentNet := []string{"--network", network, "--ip", agentIP, "--dns", worldIP,
		"-e", "FORGE_SUPERVISOR_DNS_UPSTREAM=" + worldIP, "-e", "FORGE_SUPERVISOR_REQUIRE_KERNEL=true"}

	// As TESTING.md runs it: the runtime's capabilities plus NET_ADMIN, and
	// the runtime's seccomp filter off, so the agent's EPERM can only come
	// from the filter the supervisor loaded.
	t.Run("checks", func(t *testing.T) {
		out, code := runAgent(t, ctx, append(agentNet, "--cap-add", "NET_ADMIN", "--security-opt", "seccomp=unconfined"))
		expectChecks(t, out, code)
	})

	// As the generated manifest runs it: only its capabilities, read-only
	// root, no_new_privs, and the generated seccomp profile on the whole
	// container (the same file serves podman and the supervisor). With
	// NET_RAW the kernel verdict path runs: the allowed connection never
	// passes the proxy (source "kernel"), and the agent still has no
	// capability at all (its capabilities and raw-socket checks).
	minimal := append(append([]string(nil), agentNet...), "--cap-drop", "ALL", "--cap-add", strings.Join(minimalCaps, ","),
		"--read-only", "--security-opt", "no-new-privileges", "--security-opt", "seccomp="+filepath.Join(dir, "seccomp.json"))
	t.Run("minimal capabilities", func(t *testing.T) {
		out, code := runAgent(t, ctx, minimal)
		expectChecks(t, out, code)
		if !strings.Contains(out, `"msg":"fast_path_enabled"`) || strings.Contains(out, `"msg":"fast_path_unavailable"`) || !strings.Contains(out, fastPathOn) {
			t.Errorf("the fast path did not run with %v; output:\n%s", minimalCaps, out)
		}
		// The connections made before the fast path was up (it starts
		// alongside the agent) took the proxy; the one after, the kernel.
		if src := worldSources(out); !slices.Contains(src, "kernel") {
			t.Errorf("the allowed connections' sources are %q, want one kernel (the fast path)", src)
		}
	})

	// Each capability is necessary: without it, a named step fails. Only
	// NET_RAW costs no function: the supervisor says so and runs
	// proxy-only, every check passing through the proxy.
	type capDrop struct {
		drop     string
		argv     []string
		wantCode int
		wantLine string
	}
	drops := []capDrop{
		{"NET_ADMIN", nil, 1, "nft: probe: CAP_NET_ADMIN is not in the effective capability set"},
		{"SETUID", nil, 126, "jail: step 5 setresuid(1000): operation not permitted"},
		{"SETGID", nil, 126, "jail: step 1 setgroups([1000]): operation not permitted"},
		{"SETPCAP", nil, 126, "jail: step 2 prctl(PR_CAPBSET_DROP, 0): operation not permitted"},
		{"KILL", []string{"/agent", "leave-child"}, exitLeftChild, `"msg":"signal_forward_failed","signal":"SIGKILL"`},
		{"NET_RAW", nil, exitAllPassed, `"msg":"fast_path_unavailable","error":"CAP_NET_RAW is not in the effective capability set`},
	}
	for _, c := range minimalCaps {
		if !slices.ContainsFunc(drops, func(d capDrop) bool { return d.drop == c }) {
			t.Errorf("no test shows what %s is needed for", c)
		}
	}
	for _, tc := range drops {
		t.Run("without "+tc.drop, func(t *testing.T) {
			var caps []string
			for _, c := range minimalCaps {
				if c != tc.drop {
					caps = append(caps, c)
				}
			}
			out, code := runAgent(t, ctx, replaceCaps(minimal, caps), tc.argv...)
			if code != tc.wantCode || !strings.Contains(out, tc.wantLine) {
				t.Errorf("exit %d, want %d with %q; output:\n%s", code, tc.wantCode, tc.wantLine, out)
			}
			if tc.drop != "NET_RAW" {
				return
			}
			expectChecks(t, out, code)
			if strings.Contains(out, `"msg":"fast_path_enabled"`) || !strings.Contains(out, fastPathOff) {
				t.Errorf("without NET_RAW: fast_path_enabled logged or the gauge is not 0; output:\n%s", out)
			}
			if src := worldSources(out); len(src) == 0 || slices.ContainsFunc(src, func(s string) bool { return s != "transparent" }) {
				t.Errorf("without NET_RAW the allowed connections' sources are %q, want transparent (the proxy)", src)
			}
		})
	}

	// With every capability, the helper the agent leaves behind is killed
	// without complaint and the agent's status comes through.
	t.Run("leftover helper killed", func(t *testing.T) {
		out, code := runAgent(t, ctx, minimal, "/agent", "leave-child")
		if code != exitLeftChild || strings.Contains(out, "signal_forward_failed") || !strings.Contains(out, "ok leave-child") {
			t.Errorf("exit %d, want %d and no signal_forward_failed; output:\n%s", code, exitLeftChild, out)
		}
	})
}

// replaceCaps returns a copy of flags whose only capability flags are
// --cap-drop ALL --cap-add caps.
func replaceCaps(flags, caps []string) []string {
	var out []string
	for i := 0; i < len(flags); i++ {
		if flags[i] == "--cap-add" || flags[i] == "--cap-drop" {
			i++
			continue
		}
		out = append(out, flags[i])
	}
	return append(out, "--cap-drop", "ALL", "--cap-add", strings.Join(caps, ","))
}

// expectChecks asserts the agent's report, the exit status propagated
// through the supervisor, and the supervisor's audit lines.
func expectChecks(t *testing.T, out string, code int) {
	t.Helper()
	if code != exitAllPassed {
		t.Errorf("exit %d, want %d (every check passed, status propagated)", code, exitAllPassed)
	}
	for _, check := range []string{"identity", "capabilities", "environment", "seccomp", "allowed", "denied", "dns-denied", "raw-socket", "fast-path"} {
		if !strings.Contains(out, "\nok "+check+": ") {
			t.Errorf("check %s did not pass", check)
		}
	}
	events := auditEvents(out)
	find := func(msg, key, val string) map[string]any {
		for _, e := range events {
			if e["msg"] == msg && fmt.Sprint(e[key]) == val {
				return e
			}
		}
		t.Errorf("no %s event with %s=%s", msg, key, val)
		return nil
	}
	if e := find("supervisor_started", "interception", "kernel"); e != nil && e["policy_mode"] != "allowlist" {
		t.Errorf("supervisor_started: %v", e)
	}
	if e := find("egress_denied", "dst_ip", "198.51.100.9"); e != nil && (e["reason"] != "ip_literal" || e["proto"] != "http") {
		t.Errorf("egress_denied: %v", e)
	}
	if e := find("egress_allowed", "dst_ip", worldIP); e != nil && e["rule"] != "allowed_tcp:"+worldAddr {
		t.Errorf("egress_allowed: %v", e)
	}
	find("dns_denied", "qname", "denied.example")
	find("supervisor_stopped", "exit_code", fmt.Sprint(exitAllPassed))
	if t.Failed() {
		t.Logf("container output:\n%s", out)
	}
}

// worldSources are the sources of the audit lines that allowed the agent's
// connections to the world: "kernel" on the fast path, "transparent"
// through the proxy.
func worldSources(out string) []string {
	var src []string
	for _, e := range auditEvents(out) {
		if e["msg"] == "egress_allowed" && e["dst_ip"] == worldIP {
			src = append(src, fmt.Sprint(e["source"]))
		}
	}
	return src
}

func auditEvents(out string) []map[string]any {
	var events []map[string]any
	for _, l := range strings.Split(out, "\n") {
		var e map[string]any
		if strings.HasPrefix(l, "{") && json.Unmarshal([]byte(l), &e) == nil {
			events = append(events, e)
		}
	}
	return events
}

// runAgent runs the image with flags (and argv instead of its CMD) and
// returns stdout+stderr, then the agent's own lines unwrapped, prefixed by
// a newline so lines can be matched with "\n...", and the exit status.
func runAgent(t *testing.T, ctx context.Context, flags []string, argv ...string) (string, int) {
	t.Helper()
	args := append(append(append(append([]string{}, runtimeFlags...), "run"), runFlags...), flags...)
	args = append(append(args, image), argv...)
	cmd := exec.CommandContext(ctx, "podman", args...)
	out, err := cmd.CombinedOutput()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
	// The agent's own lines arrive as agent_output records: append them
	// unwrapped, so its report can be matched line by line.
	agent := append(world.AgentLines(string(out), "stdout"), world.AgentLines(string(out), "stderr")...)
	return "\n" + string(out) + "\n" + strings.Join(agent, "\n") + "\n", code
}

func podman(t *testing.T, ctx context.Context, args ...string) {
	t.Helper()
	out, err := exec.CommandContext(ctx, "podman", append(append([]string{}, runtimeFlags...), args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// podmanQuiet runs a cleanup command whose failure (nothing to remove) is
// expected.
func podmanQuiet(args ...string) {
	_ = exec.Command("podman", append(append([]string{}, runtimeFlags...), args...)...).Run()
}

func run(t *testing.T, ctx context.Context, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// moduleRoot is the repository root, from this file's location.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// staticSupervisor copies $FORGE_SUPERVISOR_BIN (make test sets it to the
// static build) into the build context, or builds the static binary there
// the way the Makefile does. A scratch image has no loader, so a dynamic
// binary is refused.
func staticSupervisor(t *testing.T, ctx context.Context, dir string) string {
	t.Helper()
	dst := filepath.Join(dir, "forge-supervisor")
	if src := os.Getenv("FORGE_SUPERVISOR_BIN"); src != "" {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
	} else {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", "osusergo,netgo",
			"-ldflags", `-s -w -linkmode external -extldflags "-static"`, "-o", dst, ".")
		cmd.Dir = moduleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("static build of forge-supervisor: %v\n%s", err, out)
		}
	}
	f, err := elf.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("%s is dynamically linked; a FROM-scratch image needs the static build (make build)", dst)
		}
	}
	return dst
}

// buildAgent builds the test agent, static, into the build context.
func buildAgent(t *testing.T, ctx context.Context, dir string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "agent"), "./tests/container/testdata/agent")
	cmd.Dir = moduleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build test agent: %v\n%s", err, out)
	}
}
