// Command agent is the container test's stand-in for an AI agent, built
// static (CGO_ENABLED=0) into a FROM-scratch image next to the supervisor.
//
//	agent world ADDR                 serve "hello from world" over HTTP on ADDR
//	agent check WORLD DENIED DNS     run every check, print one line each
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
