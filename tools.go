package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/forge/forge-supervisor/forgeyaml"
	"github.com/forge/forge-supervisor/ops"
	"github.com/forge/forge-supervisor/policy"
)

const toolsUsage = `usage: forge-supervisor [flags] check [-policy P] -name NAME [-port N] [-ip ADDR] [-exe PATH] [-ancestors A,B] [-dns] [-json]
         the decision, reason and rule for a hypothetical connection or DNS
         query; exit status 0 allow, 1 deny
       forge-supervisor [flags] lint [-json] [POLICY]        (JSON, Rego or forge.yaml)
         errors, inert entries, redundant rules, over-broad wildcards and the
         ports a policy opens; exit status 1 when it does not load
       forge-supervisor [flags] suggest [-policy P] [-in FILE] < audit.ndjson
         the allowlist additions that would have allowed what was denied
         (audit NDJSON or a /denials body), as a patch to the policy file

The policy defaults to -policy-path (FORGE_SUPERVISOR_POLICY_PATH).
`

// runTool runs one of the operator's tools and returns its exit status.
func runTool(cfg Config, sub string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var code int
	var err error
	switch sub {
	case subCheck:
		code, err = runCheck(cfg, fs, args, stdout)
	case subLint:
		asJSON := fs.Bool("json", false, "print JSON")
		if err = fs.Parse(args); err == nil {
			path := cfg.PolicyPath
			switch fs.NArg() {
			case 0:
			case 1:
				path = fs.Arg(0)
			default:
				err = fmt.Errorf("one policy file, got %q", fs.Args())
			}
			if err == nil {
				code = ops.Lint(stdout, path, loadForTools, *asJSON)
			}
		}
	case subSuggest:
		path := fs.String("policy", cfg.PolicyPath, "the policy file to patch (a new file when it does not exist)")
		inPath := fs.String("in", "", "read the events from this file instead of stdin")
		if err = fs.Parse(args); err == nil && fs.NArg() > 0 {
			err = fmt.Errorf("unexpected arguments %q", fs.Args())
		}
		if err == nil {
			in := stdin
			if *inPath != "" {
				f, ferr := os.Open(*inPath)
				if ferr != nil {
					fmt.Fprintf(stderr, "forge-supervisor: suggest: %v\n", ferr)
					return ops.ExitUsage
				}
				defer f.Close()
				in = f
			}
			code = ops.Suggest(stdout, in, *path, loadForTools)
		}
	}
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, toolsUsage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "forge-supervisor: %s: %v\n%s", sub, err, toolsUsage)
		return ops.ExitUsage
	}
	return code
}

func runCheck(cfg Config, fs *flag.FlagSet, args []string, stdout io.Writer) (int, error) {
	path := fs.String("policy", cfg.PolicyPath, "policy file")
	name := fs.String("name", "", "SNI, Host or DNS name")
	port := fs.Uint("port", 443, "destination port")
	ipText := fs.String("ip", "", "destination address (taken to be what the name resolved to)")
	exe := fs.String("exe", "", "executable of the asking process, for a policy that reads input.process")
	ancestors := fs.String("ancestors", "", "comma-separated executables of its parents, nearest first")
	uid := fs.Uint("uid", uint(cfg.AgentUID), "uid of the asking process")
	dns := fs.Bool("dns", false, "ask about a DNS query for -name instead of a connection")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return 0, err
	}
	if fs.NArg() > 0 {
		return 0, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	q := ops.CheckQuery{Name: *name, DNS: *dns, Exe: *exe, UID: uint32(*uid)}
	if *port == 0 || *port > 65535 {
		return 0, errors.New("-port must be 1..65535")
	}
	q.Port = uint16(*port)
	if *ipText != "" {
		ip, err := netip.ParseAddr(*ipText)
		if err != nil {
			return 0, fmt.Errorf("-ip %q: not an IP address", *ipText)
		}
		q.IP = ip.Unmap()
	}
	if q.Name == "" && !q.IP.IsValid() {
		return 0, errors.New("give -name, -ip or both")
	}
	if *ancestors != "" {
		q.Ancestors = strings.Split(*ancestors, ",")
	}
	p, err := loadRuntimePolicy(*path)
	if err != nil {
		return 0, err
	}
	return ops.Check(stdout, p, q, *asJSON), nil
}

// loadForTools reads a policy as the supervisor would: egress_allowlist.json
// and Rego through ops.LoadFile, a forge.yaml through its effective
// allowlist (what `generate allowlist` writes).
func loadForTools(path string) (ops.Loaded, error) {
	if !forgeyaml.IsForgeYAML(path) {
		return ops.LoadFile(path)
	}
	proj, err := loadForgeYAML(path)
	if err != nil {
		return ops.Loaded{}, fmt.Errorf("policy: %w", err)
	}
	data, err := proj.Allowlist.JSON()
	if err != nil {
		return ops.Loaded{}, fmt.Errorf("policy: %s: %w", path, err)
	}
	p, err := policy.Parse(data)
	if err != nil {
		return ops.Loaded{}, fmt.Errorf("policy: %s: %w", path, err)
	}
	return ops.Loaded{Policy: p, Allowlist: data, Derived: true}, nil
}
