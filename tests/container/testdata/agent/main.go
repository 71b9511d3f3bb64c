// Command agent is the container test's stand-in for an AI agent, built
// static (CGO_ENABLED=0) into a FROM-scratch image next to the supervisor.
//
//	agent world ADDR                 serve "hello from world" over HTTP on ADDR
//	agent check WORLD DENIED DNS     run every check, print one line each
//	                                 (fast-path reports the supervisor's
//	                                 forge_supervisor_fast_path_available
//	                                 and, once it is 1, fetches WORLD again)
//	agent leave-child                start "agent sleep" in the same process
//	                                 group, then exit 7 leaving it behind
//	agent sleep                      sleep a minute
//
// check prints "ok NAME: detail" or "FAIL NAME: detail" per check and exits
// 42 when all pass (so the test also sees the supervisor propagate the
// agent's status), 1 otherwise.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// exitAllPassed is the agent's status when every check passed.
const exitAllPassed = 42

func main() {
	switch {
	case len(os.Args) == 3 && os.Args[1] == "world":
		world(os.Args[2])
	case len(os.Args) == 5 && os.Args[1] == "check":
		os.Exit(check(os.Args[2], os.Args[3], os.Args[4]))
	case len(os.Args) == 2 && os.Args[1] == "leave-child":
		os.Exit(leaveChild())
	case len(os.Args) == 2 && os.Args[1] == "sleep":
		time.Sleep(time.Minute)
	default:
		fmt.Fprintln(os.Stderr, "usage: agent world ADDR | agent check WORLD DENIED DNS | agent leave-child | agent sleep")
		os.Exit(2)
	}
}

func world(addr string) {
	srv := &http.Server{
		Addr:              addr,
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "hello from world\n")
		}),
	}
	fmt.Fprintln(os.Stderr, srv.ListenAndServe())
	os.Exit(1)
}

type result struct {
	name   string
	err    error
	detail string
}

func check(worldAddr, deniedAddr, dnsAddr string) int {
	checks := []struct {
		name string
		fn   func() (string, error)
	}{
		{"identity", identity},
		{"capabilities", capabilities},
		{"environment", func() (string, error) {
			if v := os.Getenv("FORGE_SUPERVISOR"); v != "1" {
				return "", fmt.Errorf("FORGE_SUPERVISOR=%q, want 1", v)
			}
			return "FORGE_SUPERVISOR=1", nil
		}},
		{"seccomp", seccompDenies},
		{"allowed", func() (string, error) { return httpGet(worldAddr, true) }},
		{"denied", func() (string, error) { return httpGet(deniedAddr, false) }},
		{"dns-denied", func() (string, error) { return dnsDenied(dnsAddr) }},
		{"raw-socket", rawSocketDenied},
		{"fast-path", func() (string, error) { return fastPath(worldAddr) }},
	}
	code := exitAllPassed
	for _, c := range checks {
		detail, err := c.fn()
		if err != nil {
			fmt.Printf("FAIL %s: %v\n", c.name, err)
			code = 1
			continue
		}
		fmt.Printf("ok %s: %s\n", c.name, detail)
	}
	return code
}

func identity() (string, error) {
	groups, err := unix.Getgroups()
	if err != nil {
		return "", err
	}
	uid, euid, gid, egid := unix.Getuid(), unix.Geteuid(), unix.Getgid(), unix.Getegid()
	if uid != 1000 || euid != 1000 || gid != 1000 || egid != 1000 || !slices.Equal(groups, []int{1000}) {
		return "", fmt.Errorf("uid %d euid %d gid %d egid %d groups %v, want 1000 and [1000]", uid, euid, gid, egid, groups)
	}
	return "uid 1000 gid 1000 groups [1000]", nil
}

// capabilities reads the kernel's view of this process.
func capabilities() (string, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "", err
	}
	defer f.Close()
	want := map[string]string{
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapBnd": "0000000000000000", "CapAmb": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2",
	}
	seen := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		w, tracked := want[k]
		if !ok || !tracked {
			continue
		}
		seen++
		if v = strings.TrimSpace(v); v != w {
			return "", fmt.Errorf("%s is %s, want %s", k, v, w)
		}
	}
	if seen != len(want) {
		return "", fmt.Errorf("found %d of %d fields in /proc/self/status", seen, len(want))
	}
	return "no capabilities (bounding set empty), no_new_privs, seccomp filter mode", nil
}

// seccompDenies: unshare(CLONE_NEWUSER) is allowed to an unprivileged
// process by the kernel, so EPERM here comes from the supervisor's filter
// (the container runs with the runtime's filter off).
func seccompDenies() (string, error) {
	err := unix.Unshare(unix.CLONE_NEWUSER)
	if !errors.Is(err, unix.EPERM) {
		return "", fmt.Errorf("unshare(CLONE_NEWUSER) = %v, want EPERM", err)
	}
	return "unshare(CLONE_NEWUSER): EPERM", nil
}

// httpGet fetches http://addr/. An allowed destination must answer "hello
// from world"; a denied one must get the supervisor's 403 and never reach
// anything (there is nothing at the denied address).
func httpGet(addr string, allowed bool) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	var resp *http.Response
	var err error
	for attempt := 0; attempt < 20; attempt++ { // the world container may still be starting
		if resp, err = client.Get("http://" + addr + "/"); err == nil || !allowed {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case allowed && (resp.StatusCode != 200 || string(body) != "hello from world\n"):
		return "", fmt.Errorf("%s: %s %q, want 200 hello from world", addr, resp.Status, body)
	case !allowed && resp.StatusCode != http.StatusForbidden:
		return "", fmt.Errorf("%s: %s %q, want the supervisor's 403", addr, resp.Status, body)
	}
	return fmt.Sprintf("%s: %s", addr, resp.Status), nil
}

// rawSocketDenied: the supervisor may hold CAP_NET_RAW (the kernel verdict
// path's reset sockets); the agent must not be able to open a raw socket.
func rawSocketDenied() (string, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err == nil {
		unix.Close(fd)
		return "", errors.New("socket(AF_INET, SOCK_RAW, IPPROTO_RAW) succeeded, want EPERM")
	}
	if !errors.Is(err, unix.EPERM) {
		return "", fmt.Errorf("socket(AF_INET, SOCK_RAW, IPPROTO_RAW) = %v, want EPERM", err)
	}
	return "socket(AF_INET, SOCK_RAW, IPPROTO_RAW): EPERM", nil
}

// healthAddr is the supervisor's health listener (its default port), which
// the agent may reach on loopback.
const healthAddr = "127.0.0.1:15000"

// fastPathWait bounds the wait for the kernel verdict path: it comes up
// alongside the agent (kverdict's Run sets the gauge and writes the fast
// sets while the agent starts), within milliseconds when it comes up at
// all.
const fastPathWait = 2 * time.Second

// heartbeatSlack: the set writer renews the fast path's heartbeat element,
// without which SYNs take the proxy, right after it writes the policy's
// addresses; the metrics show only the latter.
const heartbeatSlack = 250 * time.Millisecond

// fastPath reports the supervisor's forge_supervisor_fast_path_available.
// Once it is up (the gauge 1 and the policy's addresses in the open set),
// it fetches the world again: the test expects that connection on the
// kernel path. The test decides which value is right for the capabilities
// it gave.
func fastPath(worldAddr string) (string, error) {
	deadline := time.Now().Add(fastPathWait)
	for {
		gauge, up, err := fastPathMetrics()
		switch {
		case err != nil:
			return "", err
		case up:
			time.Sleep(heartbeatSlack)
			if _, err := httpGet(worldAddr, true); err != nil {
				return "", fmt.Errorf("%s, then: %w", gauge, err)
			}
			return gauge + " (then fetched " + worldAddr + " again)", nil
		case time.Now().After(deadline):
			return gauge, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fastPathMetrics reads /metrics: the gauge's line, and whether the fast
// path runs with the policy's addresses written.
func fastPathMetrics() (gauge string, up bool, err error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + healthAddr + "/metrics")
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	var open bool
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "forge_supervisor_fast_path_available "):
			gauge = l
		case strings.HasPrefix(l, `forge_supervisor_fast_path_set_elements_total{set="open"} `):
			open = !strings.HasSuffix(l, " 0")
		}
	}
	if err := sc.Err(); err != nil {
		return "", false, fmt.Errorf("read /metrics: %w", err)
	}
	if gauge == "" {
		return "", false, fmt.Errorf("/metrics (%s) has no forge_supervisor_fast_path_available", resp.Status)
	}
	return gauge, open && strings.HasSuffix(gauge, " 1"), nil
}

// dnsDenied asks the resolver for a name the policy does not allow; the
// supervisor's DNS proxy must refuse it without forwarding.
func dnsDenied(server string) (string, error) {
	m := new(dns.Msg)
	m.SetQuestion("denied.example.", dns.TypeA)
	c := &dns.Client{Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, net.JoinHostPort(server, "53"))
	if err != nil {
		return "", err
	}
	if r.Rcode != dns.RcodeRefused {
		return "", fmt.Errorf("rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	return "denied.example: REFUSED", nil
}

// exitLeftChild is leave-child's status.
const exitLeftChild = 7

// leaveChild leaves a helper behind in the agent's process group: the
// supervisor must kill it when the agent exits, which needs CAP_KILL since
// the helper runs under the agent's uid.
func leaveChild() int {
	cmd := exec.Command("/agent", "sleep")
	if err := cmd.Start(); err != nil {
		fmt.Println("FAIL leave-child:", err)
		return 1
	}
	fmt.Println("ok leave-child: helper pid", cmd.Process.Pid)
	return exitLeftChild
}
