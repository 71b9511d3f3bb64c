package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

// Real git and ssh clients as the jailed agent (issue #11, "keep an e2e
// test for at least curl, python, node, git and ssh"): the supervisor's own
// agent is a script that runs them, so they go through the jail, the nft
// rules and the proxy or the kernel fast path, exactly as an agent's would.

// clientsPolicy opens git:// and ssh on allowed.test; HTTPS to it is an
// allowed domain. Port 2222 (an sshd listens there too) is not open.
const clientsPolicy = `{"profile":"standard","mode":"allowlist",
 "allowed_domains":["allowed.test"],"all_domains":["allowed.test"],
 "allowed_tcp":["allowed.test:9418","allowed.test:22"]}`

// agentHosts is the agent's /etc/hosts: names the agent knows the address
// of without asking DNS, as an agent with a hard-coded address would.
// evil.test shares allowed.test's address (so only the TLS name tells
// them apart); other.test is a host whose address no allowed name has.
const agentHosts = "127.0.0.1 localhost\n198.51.100.1 evil.test\n198.51.100.3 other.test\n"

// clientsScript runs each client as the agent, leaving NAME.out (its
// output) and NAME.rc (its exit status) in the results directory, then
// "done". Every client is bounded by timeout(1): a hang is a failure, not a
// stuck test.
const clientsScript = `
export HOME=%[1]s GIT_SSL_CAINFO=%[2]s GIT_TERMINAL_PROMPT=0 GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
cd %[1]s
run() { n=$1; shift; timeout 30 "$@" >%[3]s/$n.out 2>&1; echo $? >%[3]s/$n.rc; }
SSH="ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 -i %[1]s/id"
run git_allowed git clone -q git://allowed.test/repo.git git-allowed
run git_allowed_head git -C git-allowed log -1 --format=%%H
run git_denied git clone -q git://other.test/repo.git git-denied
run https_allowed git clone -q https://allowed.test/git/repo.git https-allowed
run https_allowed_head git -C https-allowed log -1 --format=%%H
run https_denied git clone -q https://evil.test/git/repo.git https-denied
run ssh_allowed $SSH root@allowed.test true
run ssh_denied_port $SSH -p 2222 root@allowed.test true
run ssh_denied_host $SSH root@other.test true
echo done >%[3]s/done
exec sleep 600
`

func TestGitAndSSHAsJailedAgent(t *testing.T) {
	for _, tool := range []string{"git", "ssh", "ssh-keygen", "/usr/sbin/sshd", "timeout"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (git, openssh-client and openssh-server: make deps, .ci/packages): %v", tool, err)
		}
	}
	for _, mode := range []struct{ name, env string }{
		{"fast_path_on", "FORGE_SUPERVISOR_FAST_PATH=1"},
		{"fast_path_off", "FORGE_SUPERVISOR_FAST_PATH=0"},
	} {
		t.Run(mode.name, func(t *testing.T) { testGitAndSSH(t, mode.env) })
	}
}

func testGitAndSSH(t *testing.T, fastPath string) {
	w := world.New(t)
	srv := filepath.Join(w.Dir, "srv")
	commit := makeRepo(t, srv)
	startGitDaemon(t, w, srv)
	w.HandleHTTPS("/git/", http.StripPrefix("/git/", http.FileServer(http.Dir(srv))))
	home := agentHome(t, w)
	startSSHD(t, w, home)

	etc := filepath.Join(w.Dir, "etc")
	must(t, os.MkdirAll(etc, 0o755))
	passwd := filepath.Join(etc, "passwd")
	writeAgentPasswd(t, passwd, home)
	hosts := filepath.Join(etc, "hosts")
	must(t, os.WriteFile(hosts, []byte(agentHosts), 0o644))
	results := w.SharedDir(t)

	// The supervisor's mount namespace (unshare --mount-proc) gets the
	// agent's passwd (ssh needs an entry for its uid; a CI machine may have
	// no uid 1000) and hosts; exec keeps the supervisor PID 1.
	wrap := []string{"sh", "-c", `mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/hosts && shift 2 && exec "$@"`, "wrap", passwd, hosts}
	pol := w.WritePolicy(t, "egress_allowlist.json", clientsPolicy)
	s := w.StartLaunch(t, world.Launch{Policy: pol, Env: []string{fastPath}, Wrap: wrap},
		"sh", "-c", fmt.Sprintf(clientsScript, home, w.CAFile, results))
	s.WaitReady()
	waitFile(t, s, filepath.Join(results, "done"), 150*time.Second)

	result := func(name string) (string, string) {
		out, _ := os.ReadFile(filepath.Join(results, name+".out"))
		rc, _ := os.ReadFile(filepath.Join(results, name+".rc"))
		return strings.TrimSpace(string(out)), strings.TrimSpace(string(rc))
	}
	allowed := func(name string) {
		t.Helper()
		if out, rc := result(name); rc != "0" {
			t.Errorf("%s: exit %s, want 0: %q", name, rc, out)
		}
	}
	denied := func(name string) {
		t.Helper()
		if out, rc := result(name); rc == "0" || rc == "" || rc == "124" {
			t.Errorf("%s: exit %q, want a refusal (not success, not a hang): %q", name, rc, out)
		}
	}
	sameCommit := func(name string) {
		t.Helper()
		if out, _ := result(name); out != commit {
			t.Errorf("%s: the clone's HEAD is %q, want the world's commit %s", name, out, commit)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"git_allowed", "git_denied", "https_allowed", "https_denied", "ssh_allowed", "ssh_denied_port", "ssh_denied_host"} {
				out, rc := result(n)
				t.Logf("agent's %s: exit %s: %s", n, rc, out)
			}
		}
	})
	port := func(p float64) func(world.Event) bool {
		return func(e world.Event) bool { return e["dst_port"] == p }
	}
	audit := func(what, msg string, match func(world.Event) bool, reasons ...string) {
		t.Helper()
		e := s.WaitEvent(func(e world.Event) bool { return e.Msg() == msg && match(e) }, 10*time.Second)
		if len(reasons) > 0 && !slices.Contains(reasons, e.Str("reason")) {
			t.Errorf("%s: audit %v, want reason in %v", what, e, reasons)
		}
	}

	t.Run("git_daemon", func(t *testing.T) {
		allowed("git_allowed")
		sameCommit("git_allowed_head")
		audit("git:// to allowed.test", "egress_allowed", port(9418))
		denied("git_denied")
		audit("git:// to other.test", "egress_denied", func(e world.Event) bool {
			return e.Str("dst_ip") == "198.51.100.3" && e["dst_port"] == 9418.0
		}, "no_name_for_ip")
	})
	t.Run("git_https", func(t *testing.T) {
		allowed("https_allowed")
		sameCommit("https_allowed_head")
		audit("https to allowed.test", "egress_allowed", func(e world.Event) bool { return e.Str("sni") == "allowed.test" }, "allowed_domain")
		denied("https_denied")
		audit("https to evil.test", "egress_denied", func(e world.Event) bool { return e.Str("sni") == "evil.test" }, "not_in_allowlist")
	})
	t.Run("ssh", func(t *testing.T) {
		allowed("ssh_allowed")
		if out, _ := result("ssh_allowed"); !strings.Contains(out, "ssh-ok") {
			t.Errorf("ssh_allowed: %q, want the world's forced command's ssh-ok", out)
		}
		audit("ssh to allowed.test:22", "egress_allowed", port(22))
		denied("ssh_denied_port")
		audit("ssh to allowed.test:2222", "egress_denied", port(2222), "port_not_allowed")
		denied("ssh_denied_host")
		audit("ssh to other.test:22", "egress_denied", func(e world.Event) bool {
			return e.Str("dst_ip") == "198.51.100.3" && e["dst_port"] == 22.0
		}, "no_name_for_ip")
	})
}

// makeRepo makes a bare repository dir/repo.git with one commit, ready for
// git daemon and for git's dumb HTTP protocol (update-server-info), and
// returns the commit's hash.
func makeRepo(t *testing.T, dir string) string {
	t.Helper()
	work := filepath.Join(dir, "work")
	must(t, os.MkdirAll(work, 0o755))
	must(t, os.WriteFile(filepath.Join(work, "README"), []byte("served by the test world\n"), 0o644))
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=world", "-c", "user.email=world@world.test", "-c", "init.defaultBranch=main"}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("-C", work, "init", "-q")
	git("-C", work, "add", "README")
	git("-C", work, "commit", "-q", "-m", "forge e2e")
	bare := filepath.Join(dir, "repo.git")
	git("clone", "-q", "--bare", work, bare)
	git("-C", bare, "update-server-info")
	return git("-C", work, "rev-parse", "HEAD")
}

// startGitDaemon serves dir's repositories on git://*:9418 in the world.
func startGitDaemon(t *testing.T, w *world.World, dir string) {
	t.Helper()
	startWorldDaemon(t, w, "git-daemon", "git", "daemon", "--reuseaddr", "--export-all", "--informative-errors",
		"--base-path="+dir, dir)
	waitWorldListening(t, w, "9418")
}

// agentHome is the agent's home: its ssh key (id, id.pub) is made here,
// owned by the agent as ssh requires.
func agentHome(t *testing.T, w *world.World) string {
	t.Helper()
	home := filepath.Join(w.Dir, "home")
	must(t, os.MkdirAll(home, 0o755))
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "agent", "-f", filepath.Join(home, "id")).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	for _, p := range []string{home, filepath.Join(home, "id"), filepath.Join(home, "id.pub")} {
		must(t, os.Chown(p, 1000, 1000))
	}
	return home
}

// sshdConfig lets only the agent's key in, as root, and whatever the
// client asks to run, runs `echo ssh-ok`: a full login that proves the
// path, and nothing else.
const sshdConfig = `Port 22
Port 2222
ListenAddress 0.0.0.0
ListenAddress ::
PidFile none
AuthorizedKeysFile %[1]s/id.pub
StrictModes no
PermitRootLogin prohibit-password
AllowUsers root
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
ForceCommand echo ssh-ok
`

// startSSHD runs sshd in the world on :22 and :2222 with a host key made
// here, accepting the key in home.
func startSSHD(t *testing.T, w *world.World, home string) {
	t.Helper()
	must(t, os.MkdirAll("/run/sshd", 0o755)) // its privilege-separation directory
	dir := filepath.Join(w.Dir, "sshd")
	must(t, os.MkdirAll(dir, 0o700))
	hostKey := filepath.Join(dir, "host_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen host key: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "sshd_config")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf(sshdConfig, home)), 0o600))
	startWorldDaemon(t, w, "sshd", "/usr/sbin/sshd", "-D", "-e", "-f", cfg, "-h", hostKey)
	waitWorldListening(t, w, "22")
	waitWorldListening(t, w, "2222")
}

// writeAgentPasswd writes a passwd file: the host's entries with the
// agent's uid 1000 (re)defined, its home being home.
func writeAgentPasswd(t *testing.T, path, home string) {
	t.Helper()
	b, err := os.ReadFile("/etc/passwd")
	must(t, err)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Split(l, ":"); len(f) > 2 && f[2] == "1000" {
			continue
		}
		lines = append(lines, l)
	}
	lines = append(lines, "agent:x:1000:1000:forge agent:"+home+":/bin/sh")
	must(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
}

// startWorldDaemon runs a server in the world in a process group of its
// own, its output in a file, and kills the whole group in t.Cleanup: git
// daemon and sshd fork a child per connection, and a child that outlived
// its parent would keep a pipe (and netenv's Start, waiting on it) open.
func startWorldDaemon(t *testing.T, w *world.World, name string, argv ...string) {
	t.Helper()
	log, err := os.Create(filepath.Join(w.Dir, name+".log"))
	must(t, err)
	cmd := w.World.Cmd(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("world: start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s:\n%s", name, b)
		}
	})
}

// waitWorldListening waits until a TCP listener on port runs in the world.
func waitWorldListening(t *testing.T, w *world.World, port string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := w.World.Cmd("ss", "-Htln", "sport = :"+port).Output()
		if strings.Contains(string(out), ":"+port) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("nothing listens on :%s in the world", port)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
