package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// version is set at build time: -ldflags "-X main.version=...".
var version = "dev"

// Limits of the settings. Each says why that bound.
const (
	// maxDuration catches unit typos ("10000h") in every duration setting;
	// no timeout of the supervisor is meaningfully longer than a day.
	maxDuration = 24 * time.Hour
	// maxDNSCacheSize: at ~200 bytes an entry, 4M entries is under 1 GiB,
	// already more than any agent's working set of names.
	maxDNSCacheSize = 1 << 22
	// maxDNSAnswerCacheBytes: 1 GiB of answers is millions of them, more
	// than any agent asks; a bigger value is a typo.
	maxDNSAnswerCacheBytes = 1 << 30
	// maxDNSRate: one supervisor cannot usefully forward more than a
	// million queries per second; higher is a typo.
	maxDNSRate = 1e6
	// maxWildcardBudget: 1 MiB of agent-chosen names a minute per rule is
	// already a wide channel; more is a typo, or a wish to turn the guard
	// off, which 0 says plainly.
	maxWildcardBudget = 1 << 20
	// invalidID is (uid_t)-1: setresuid/setresgid read it as "leave
	// unchanged", so it must never be the agent's identity.
	invalidID = math.MaxUint32
)

// Config is the supervisor's effective configuration: defaults, overridden
// by FORGE_SUPERVISOR_* environment variables, overridden by flags.
type Config struct {
	PolicyPath    string
	StrictPolicy  bool // unknown fields in egress_allowlist.json are errors, not warnings
	ProxyPort     uint16
	DNSPort       uint16
	HealthPort    uint16
	LogLevel      string
	DryRun        bool
	AgentUID      uint32
	AgentGID      uint32
	SeccompPath   string
	SeccompLog    bool
	DNSUpstreams  []string // "ip:port" (IPv6 as "[ip]:port"); empty: from /etc/resolv.conf
	Grace         time.Duration
	RequireKernel bool
	DenialsSize   int
	DNSMinTTL     time.Duration
	DNSCacheSize  int
	// DNSAnswerCacheBytes bounds the DNS answer cache; 0 turns it off.
	DNSAnswerCacheBytes int
	DNSDenyRcode        string // "refused" or "nxdomain"
	DNSRate             float64
	// DNSWildcardBudget is the bytes of new names per minute the agent may
	// have resolved under each wildcard rule (the DNS exfiltration guard,
	// policy.ExfilGuard); 0 turns the guard off.
	DNSWildcardBudget int
	// DNSWildcardMaxLabels / DNSWildcardMaxLabelLen are the deprecated
	// fixed caps on names allowed only through a wildcard rule; 0 (the
	// default) is off. Set, they still apply, with a warning at startup.
	DNSWildcardMaxLabels   int
	DNSWildcardMaxLabelLen int
	LogSample              bool
	ClassifyTimeout        time.Duration
	DialTimeout            time.Duration
	IdleTimeout            time.Duration
	// InboundPorts are TCP ports the agent listens on for connections from
	// outside the pod; AllowedLocalPorts are loopback ports of the pod's
	// own listeners the agent may connect to. Empty: none.
	InboundPorts      []uint16
	AllowedLocalPorts []uint16
	// AuditProcess puts the connecting process (pid, exe) in every egress
	// and DNS event even when the policy does not read input.process.
	AuditProcess bool
	// FastPath turns on the kernel verdict path (kverdict/) where the
	// kernel supports it.
	FastPath bool
	// AllowMulticast lets the agent join multicast groups and IGMP/MLD
	// reports leave the pod.
	AllowMulticast bool
	// AgentOutput is how the agent's stdout/stderr are relayed: "json"
	// (agent_output records) or "raw" (verbatim lines).
	AgentOutput string
	// ForwardSIGHUP: SIGHUP (which reloads the policy) is also sent to the
	// agent's process group.
	ForwardSIGHUP bool
	// WatchPolicy reloads the policy when its file changes (inotify).
	WatchPolicy bool
}

// rawValue records a flag's text as given; parsing happens once, after the
// command line and the environment are both known, so that every bad value
// is reported once with both its names.
type rawValue struct {
	set    bool
	text   string
	isBool bool
}

func (r *rawValue) String() string   { return r.text }
func (r *rawValue) IsBoolFlag() bool { return r.isBool }
func (r *rawValue) Set(v string) error {
	r.set, r.text = true, v
	return nil
}

// ParseConfig parses args (os.Args[1:]) and the environment (getenv, e.g.
// os.Getenv; an empty value counts as unset). Flags win over the
// environment, which wins over defaults.
//
// It returns the configuration, the subcommand ("config" or "version" when
// the first non-flag argument is one of them, else "") and the agent's
// command: everything after the flags, or after "--". After "--" a word
// like "config" is the agent's command, never a subcommand.
//
// Every bad value is reported (joined into one error), each naming its flag
// and environment variable. -h / -help return flag.ErrHelp; print
// configUsage then.
func ParseConfig(args []string, getenv func(string) string) (cfg Config, sub string, agentArgv []string, err error) {
	all := settings()
	fs := flag.NewFlagSet("forge-supervisor", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, usage is the caller's to print
	raws := make([]*rawValue, len(all))
	for i, s := range all {
		raws[i] = &rawValue{text: s.def, isBool: s.isBool}
		fs.Var(raws[i], s.flag, s.usage)
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, "", nil, flagError(err)
	}
	rest := fs.Args()
	if len(rest) > 0 && !followsTerminator(args, rest, fs) && takesOwnArgs(rest[0]) {
		sub, rest = rest[0], rest[1:]
	} else if len(rest) > 0 && !followsTerminator(args, rest, fs) && (takesNoArgs(rest[0])) {
		sub = rest[0]
		// Flags may follow the subcommand too: `forge-supervisor config -dns-port 53`.
		if err := fs.Parse(rest[1:]); err != nil {
			return Config{}, "", nil, flagError(err)
		}
		if len(fs.Args()) > 0 {
			return Config{}, "", nil, fmt.Errorf("subcommand %q takes no arguments, got %q", sub, fs.Args())
		}
		rest = nil
	}

	// A forge.yaml's supervisor: section sits between the defaults and the
	// environment: flag > environment > forge.yaml > default.
	var layer map[string]layerValue
	if path := forgeYAMLPath(sub, rest, effectivePolicyPath(all, raws, getenv)); path != "" {
		if layer, err = forgeLayer(path); err != nil {
			return Config{}, "", nil, fmt.Errorf("invalid configuration:\n%w", err)
		}
	}
	var errs []error
	for i, s := range all {
		text, source := s.def, fmt.Sprintf("default of -%s / %s", s.flag, s.env)
		if lv, ok := layer[s.flag]; ok {
			text, source = lv.text, fmt.Sprintf("%s (flag -%s, environment variable %s)", lv.source, s.flag, s.env)
		}
		if v := getenv(s.env); v != "" {
			text, source = v, fmt.Sprintf("environment variable %s (flag -%s)", s.env, s.flag)
		}
		if raws[i].set {
			text, source = raws[i].text, fmt.Sprintf("flag -%s (environment variable %s)", s.flag, s.env)
		}
		if err := s.parse(&cfg, text); err != nil {
			errs = append(errs, fmt.Errorf("%s = %q: %w", source, text, err))
		}
	}
	if len(errs) == 0 {
		errs = append(errs, cfg.crossCheck()...)
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, "", nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, sub, rest, nil
}

// effectivePolicyPath is the policy path as flag > environment > default
// give it, before any other setting is parsed.
func effectivePolicyPath(all []setting, raws []*rawValue, getenv func(string) string) string {
	for i, s := range all {
		if s.flag != "policy-path" {
			continue
		}
		if raws[i].set {
			return raws[i].text
		}
		if v := getenv(s.env); v != "" {
			return v
		}
		return s.def
	}
	return ""
}

// flagError rewords the flag package's errors; flag.ErrHelp passes through
// unchanged so the caller can tell a help request from a mistake.
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return flag.ErrHelp
	}
	return fmt.Errorf("command line: %w (usage: forge-supervisor [flags] [--] COMMAND [ARGS...]; -h lists the flags)", err)
}

// followsTerminator reports whether the flag parser stopped because of "--"
// (so rest is the agent's command verbatim) rather than at a non-flag word.
func followsTerminator(args, rest []string, fs *flag.FlagSet) bool {
	i := len(args) - len(rest) - 1 // index of the word before rest
	if i < 0 || args[i] != "--" {
		return false
	}
	// "--" may instead be the value of a preceding non-boolean flag given
	// as two words: `-policy-path --`.
	if i == 0 {
		return true
	}
	prev := args[i-1]
	name := strings.TrimLeft(prev, "-")
	if !strings.HasPrefix(prev, "-") || prev == "--" || strings.Contains(name, "=") {
		return true
	}
	f := fs.Lookup(name)
	if f == nil {
		return true
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return true
	}
	return false
}

// crossCheck validates relations between settings.
func (c Config) crossCheck() []error {
	var errs []error
	ports := []struct {
		name string
		port uint16
	}{
		{settingNames("proxy-port"), c.ProxyPort},
		{settingNames("dns-port"), c.DNSPort},
		{settingNames("health-port"), c.HealthPort},
	}
	for i := range ports {
		for j := i + 1; j < len(ports); j++ {
			if ports[i].port == ports[j].port {
				errs = append(errs, fmt.Errorf("%s and %s are both %d: the three ports must differ",
					ports[i].name, ports[j].name, ports[i].port))
			}
		}
	}
	for _, l := range []struct {
		name  string
		ports []uint16
	}{
		{settingNames("inbound-ports"), c.InboundPorts},
		{settingNames("allowed-local-ports"), c.AllowedLocalPorts},
	} {
		for _, p := range l.ports {
			for _, own := range ports {
				if p == own.port {
					errs = append(errs, fmt.Errorf("%s lists %d, which is %s: the agent cannot use the supervisor's ports", l.name, p, own.name))
				}
			}
		}
	}
	return errs
}

// maxPortList bounds a port list; a handful is typical.
const maxPortList = 64

// parsePortList parses "p1,p2,..." into distinct ports; "" is none.
func parsePortList(v string) ([]uint16, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	parts := strings.Split(v, ",")
	if len(parts) > maxPortList {
		return nil, fmt.Errorf("at most %d ports, got %d", maxPortList, len(parts))
	}
	out := make([]uint16, 0, len(parts))
	seen := map[uint16]bool{}
	for _, p := range parts {
		n, err := parsePort(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("%q: %w", p, err)
		}
		if seen[n] {
			return nil, fmt.Errorf("%d is listed twice", n)
		}
		seen[n] = true
		out = append(out, n)
	}
	return out, nil
}

func parsePath(v string) (string, error) {
	switch {
	case v == "":
		return "", errors.New("must not be empty")
	case strings.ContainsRune(v, 0):
		return "", errors.New("must not contain a NUL byte")
	}
	return v, nil
}

func parsePort(v string) (uint16, error) {
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil || n == 0 {
		return 0, errors.New("must be a port number 1..65535")
	}
	return uint16(n), nil
}

func parseID(v string) (uint32, error) {
	n, err := strconv.ParseUint(v, 10, 32)
	switch {
	case err != nil:
		return 0, errors.New("must be a numeric id 1..4294967294")
	case n == 0:
		return 0, errors.New("must not be 0: the agent never runs as root")
	case n == invalidID:
		return 0, errors.New("must not be 4294967295: that is (uid_t)-1, \"unchanged\" to the kernel")
	}
	return uint32(n), nil
}

func parseLogLevel(v string) (string, error) {
	switch l := strings.ToLower(v); l {
	case "debug", "info", "warn", "error":
		return l, nil
	}
	return "", errors.New("must be one of debug, info, warn, error")
}

// parseBool accepts strconv.ParseBool's words and on/off, yes/no.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "on", "yes":
		return true, nil
	case "off", "no":
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errors.New("must be true or false (also 1/0, on/off, yes/no)")
	}
	return b, nil
}

func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return 0, errors.New("must be a duration with a unit, e.g. 500ms, 10s, 5m")
	case d <= 0:
		return 0, errors.New("must be greater than 0")
	case d > maxDuration:
		return 0, fmt.Errorf("must be at most %v", maxDuration)
	}
	return d, nil
}

func parseInt(v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("must be an integer %d..%d", lo, hi)
	}
	return n, nil
}

func parseAgentOutput(v string) (string, error) {
	switch m := strings.ToLower(v); m {
	case "json", "raw":
		return m, nil
	}
	return "", errors.New("must be json or raw")
}

func parseRcode(v string) (string, error) {
	switch r := strings.ToLower(v); r {
	case "refused", "nxdomain":
		return r, nil
	}
	return "", errors.New("must be refused or nxdomain")
}

func parseRate(v string) (float64, error) {
	r, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(r) || r <= 0 || r > maxDNSRate {
		return 0, fmt.Errorf("must be a number of queries per second, > 0 and ≤ %g", maxDNSRate)
	}
	return r, nil
}

// JSON returns the effective configuration, indented, for
// `forge-supervisor config`: the version, then every setting under its
// flag name with "_" for "-" (settingKey), in the table's order. It holds
// no secrets: paths, not contents.
func (c Config) JSON() ([]byte, error) {
	var compact bytes.Buffer
	field := func(key string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("config: encode %s: %w", key, err)
		}
		k, _ := json.Marshal(key)
		compact.Write(k)
		compact.WriteByte(':')
		compact.Write(b)
		return nil
	}
	compact.WriteByte('{')
	if err := field("version", version); err != nil {
		return nil, err
	}
	for _, s := range settings() {
		compact.WriteByte(',')
		if err := field(settingKey(s.flag), s.json(c)); err != nil {
			return nil, err
		}
	}
	compact.WriteByte('}')
	var out bytes.Buffer
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("config: encode: %w", err)
	}
	return out.Bytes(), nil
}

// configUsage writes the command line and every setting with its flag,
// environment variable and default.
func configUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: forge-supervisor [flags] [--] COMMAND [ARGS...]\n")
	fmt.Fprintf(w, "       forge-supervisor [flags] config    print the effective configuration as JSON\n")
	fmt.Fprintf(w, "       forge-supervisor version           print the version\n")
	fmt.Fprintf(w, "       forge-supervisor [flags] generate allowlist|dockerfile|k8s|seccomp|rego|dashboard|alerts [options] [-- AGENT...]\n")
	fmt.Fprintf(w, "                                          print what a deployment needs (generate -h for options)\n")
	fmt.Fprintf(w, "       forge-supervisor [flags] check|lint|suggest [options]\n")
	fmt.Fprintf(w, "                                          the operator's tools (check -h for options)\n\n")
	fmt.Fprintf(w, "Every flag has an environment variable; a flag wins over its variable.\n\n")
	for _, s := range settings() {
		arg := " VALUE"
		if s.isBool {
			arg = ""
		}
		def := s.def
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  -%s%s  (%s, default %s)\n      %s\n", s.flag, arg, s.env, def, s.usage)
	}
}
