// Command forge-supervisor runs as PID 1 in an agent's container and makes
// its egress allowlist a kernel fact. This file turns configuration into
// running actors and nothing else; see docs/architecture.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/jail"
	"github.com/forge/forge-supervisor/obs"
)

func main() {
	// The jail mode (the agent's first moments) never returns.
	jail.RunIfJail()
	os.Exit(run(os.Args[1:]))
}

// exitStartup is the status when the supervisor itself cannot start; the
// agent never ran.
const exitStartup = 1

// sinkCloseTimeout is how long the exiting supervisor waits for its last
// log lines to be read; past it they are counted as dropped and it exits.
const sinkCloseTimeout = 5 * time.Second

func run(args []string) int {
	cfg, sub, argv, err := ParseConfig(args, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		configUsage(os.Stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "forge-supervisor: %v\n", err)
		return 2
	}
	switch sub {
	case subGenerate:
		return runGenerate(cfg, argv, os.Stdout, os.Stderr)
	case subCheck, subLint, subSuggest:
		return runTool(cfg, sub, argv, os.Stdin, os.Stdout, os.Stderr)
	case subVersion:
		fmt.Println("forge-supervisor", version)
		return 0
	case subConfig:
		b, err := cfg.JSON()
		if err != nil {
			fmt.Fprintf(os.Stderr, "forge-supervisor: %v\n", err)
			return 2
		}
		fmt.Println(string(b))
		return 0
	}
	// One writer owns stdout: whole lines, EAGAIN waited out, bounded.
	sink := obs.NewSink(os.Stdout, 0, os.Stderr)
	defer sink.Close(sinkCloseTimeout)
	log, err := obs.NewLogger(sink, cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "forge-supervisor: %v\n", err)
		return 2
	}
	code, err := supervise(cfg, argv, log, sink)
	if err != nil {
		// One clear line: on stderr for humans, as an event for pipelines.
		log.Error("supervisor_failed", zap.Error(err))
		fmt.Fprintf(os.Stderr, "forge-supervisor: %v\n", err)
		return exitStartup
	}
	return code
}

// signalName names the signal behind a 128+N status, "" otherwise.
func signalName(code int) string {
	if code <= 128 || code > 128+64 {
		return ""
	}
	return unix.SignalName(syscall.Signal(code - 128))
}

// proxyEnv advertises the explicit fallback proxy in every spelling that
// common HTTP clients read.
func proxyEnv(port uint16) []string {
	http := fmt.Sprintf("http://127.0.0.1:%d", port)
	socks := fmt.Sprintf("socks5h://127.0.0.1:%d", port)
	var env []string
	for _, kv := range [][2]string{
		{"HTTP_PROXY", http}, {"HTTPS_PROXY", http}, {"ALL_PROXY", socks}, {"NO_PROXY", "localhost,127.0.0.1,::1"},
	} {
		env = append(env, kv[0]+"="+kv[1], strings.ToLower(kv[0])+"="+kv[1])
	}
	return env
}

// answerCacheBytes maps the setting (0: off) to the DNS proxy's field
// (0: default, negative: off).
func answerCacheBytes(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func denyRcode(name string) int {
	if name == "nxdomain" {
		return 3 // NXDOMAIN
	}
	return 5 // REFUSED
}
