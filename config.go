package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	fdns "github.com/forge/forge-supervisor/dns"
	"github.com/forge/forge-supervisor/obs"
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

// setting is one configuration knob: its flag, its environment variable,
// its default (in the same text form a user types) and how to parse it into
// a Config. parse returns an error that says what a valid value looks like;
// the caller adds which flag or variable carried it.
type setting struct {
	flag   string
	env    string
	def    string
	isBool bool
	usage  string
	parse  func(c *Config, v string) error
}

// settings lists every knob in the order `-h` shows them.
func settings() []setting {
	return []setting{
		{flag: "policy-path", env: "FORGE_SUPERVISOR_POLICY_PATH", def: "/etc/forge/egress_allowlist.json",
			usage: "policy file: Forge egress_allowlist.json, or a .rego policy",
			parse: func(c *Config, v string) (err error) { c.PolicyPath, err = parsePath(v); return }},
		{flag: "strict-policy", env: "FORGE_SUPERVISOR_STRICT_POLICY", def: "false", isBool: true,
			usage: "refuse a policy file with anything it would warn about: unknown fields, entries skipped or allowing nothing (by default warnings, so a field a newer Forge adds, or an entry Forge writes verbatim, does not stop the agent)",
			parse: func(c *Config, v string) (err error) { c.StrictPolicy, err = parseBool(v); return }},
		{flag: "proxy-port", env: "FORGE_SUPERVISOR_PROXY_PORT", def: "15001",
			usage: "port of the transparent proxy the agent's TCP is redirected to",
			parse: func(c *Config, v string) (err error) { c.ProxyPort, err = parsePort(v); return }},
		{flag: "dns-port", env: "FORGE_SUPERVISOR_DNS_PORT", def: "15002",
			usage: "port of the DNS proxy the agent's port-53 traffic is redirected to",
			parse: func(c *Config, v string) (err error) { c.DNSPort, err = parsePort(v); return }},
		{flag: "health-port", env: "FORGE_SUPERVISOR_HEALTH_PORT", def: "15000",
			usage: "port of /healthz, /readyz, /denials and /metrics",
			parse: func(c *Config, v string) (err error) { c.HealthPort, err = parsePort(v); return }},
		{flag: "log-level", env: "FORGE_SUPERVISOR_LOG_LEVEL", def: "info",
			usage: "debug, info, warn or error",
			parse: func(c *Config, v string) (err error) { c.LogLevel, err = parseLogLevel(v); return }},
		{flag: "dry-run", env: "FORGE_SUPERVISOR_DRY_RUN", def: "false", isBool: true,
			usage: "log what the policy would deny but let it through",
			parse: func(c *Config, v string) (err error) { c.DryRun, err = parseBool(v); return }},
		{flag: "agent-uid", env: "FORGE_SUPERVISOR_AGENT_UID", def: "1000",
			usage: "UID the agent runs as (not 0)",
			parse: func(c *Config, v string) (err error) { c.AgentUID, err = parseID(v); return }},
		{flag: "agent-gid", env: "FORGE_SUPERVISOR_AGENT_GID", def: "1000",
			usage: "GID the agent runs as (not 0)",
			parse: func(c *Config, v string) (err error) { c.AgentGID, err = parseID(v); return }},
		{flag: "seccomp-path", env: "FORGE_SUPERVISOR_SECCOMP_PATH", def: "/etc/forge/seccomp.json",
			usage: "seccomp profile (OCI JSON) loaded into the agent",
			parse: func(c *Config, v string) (err error) { c.SeccompPath, err = parsePath(v); return }},
		{flag: "seccomp-log", env: "FORGE_SUPERVISOR_SECCOMP_LOG", def: "false", isBool: true,
			usage: "also log (SECCOMP_FILTER_FLAG_LOG) the syscalls the profile denies",
			parse: func(c *Config, v string) (err error) { c.SeccompLog, err = parseBool(v); return }},
		{flag: "dns-upstream", env: "FORGE_SUPERVISOR_DNS_UPSTREAM", def: "",
			usage: "comma-separated upstream resolvers ip[:port] ([ipv6]:port); empty: the nameservers of /etc/resolv.conf",
			parse: func(c *Config, v string) (err error) { c.DNSUpstreams, err = fdns.ParseUpstreams(v); return }},
		{flag: "grace", env: "FORGE_SUPERVISOR_GRACE", def: "10s",
			usage: "time the agent gets between SIGTERM and SIGKILL",
			parse: func(c *Config, v string) (err error) { c.Grace, err = parseDuration(v); return }},
		{flag: "require-kernel", env: "FORGE_SUPERVISOR_REQUIRE_KERNEL", def: "false", isBool: true,
			usage: "refuse to start when kernel interception (nftables) is unavailable instead of falling back to an explicit proxy",
			parse: func(c *Config, v string) (err error) { c.RequireKernel, err = parseBool(v); return }},
		{flag: "denials-size", env: "FORGE_SUPERVISOR_DENIALS_SIZE", def: "256",
			usage: fmt.Sprintf("number of recent denials kept for /denials (1..%d)", obs.MaxDenialsSize),
			parse: func(c *Config, v string) (err error) { c.DenialsSize, err = parseInt(v, 1, obs.MaxDenialsSize); return }},
		{flag: "dns-min-ttl", env: "FORGE_SUPERVISOR_DNS_MIN_TTL", def: "60s",
			usage: "shortest time a learned name→IP answer stays valid for the proxy",
			parse: func(c *Config, v string) (err error) { c.DNSMinTTL, err = parseDuration(v); return }},
		{flag: "dns-cache-size", env: "FORGE_SUPERVISOR_DNS_CACHE_SIZE", def: "65536",
			usage: fmt.Sprintf("entries of the learned name→IP cache (1..%d)", maxDNSCacheSize),
			parse: func(c *Config, v string) (err error) { c.DNSCacheSize, err = parseInt(v, 1, maxDNSCacheSize); return }},
		{flag: "dns-answer-cache-bytes", env: "FORGE_SUPERVISOR_DNS_ANSWER_CACHE_BYTES", def: "8388608",
			usage: fmt.Sprintf("memory of the DNS answer cache in bytes (0 turns it off; at most %d)", maxDNSAnswerCacheBytes),
			parse: func(c *Config, v string) (err error) {
				c.DNSAnswerCacheBytes, err = parseInt(v, 0, maxDNSAnswerCacheBytes)
				return
			}},
		{flag: "dns-deny-rcode", env: "FORGE_SUPERVISOR_DNS_DENY_RCODE", def: "refused",
			usage: "answer to a denied DNS query: refused or nxdomain",
			parse: func(c *Config, v string) (err error) { c.DNSDenyRcode, err = parseRcode(v); return }},
		{flag: "dns-rate", env: "FORGE_SUPERVISOR_DNS_RATE", def: "200",
			usage: "DNS queries per second the agent may send; above it queries are refused",
			parse: func(c *Config, v string) (err error) { c.DNSRate, err = parseRate(v); return }},
		{flag: "dns-wildcard-budget", env: "FORGE_SUPERVISOR_DNS_WILDCARD_BUDGET", def: "4096",
			usage: fmt.Sprintf("bytes of new names per minute the agent may resolve under each *.suffix rule, DNS queries and the supervisor's own lookups together (DNS exfiltration guard; 0 turns it off; at most %d)", maxWildcardBudget),
			parse: func(c *Config, v string) (err error) {
				c.DNSWildcardBudget, err = parseInt(v, 0, maxWildcardBudget)
				return
			}},
		{flag: "dns-wildcard-max-labels", env: "FORGE_SUPERVISOR_DNS_WILDCARD_MAX_LABELS", def: "0",
			usage: "deprecated (dns-wildcard-budget replaces it): most labels in a name allowed only by a *.suffix rule; 0 is off",
			parse: func(c *Config, v string) (err error) { c.DNSWildcardMaxLabels, err = parseInt(v, 0, 127); return }},
		{flag: "dns-wildcard-max-label-len", env: "FORGE_SUPERVISOR_DNS_WILDCARD_MAX_LABEL_LEN", def: "0",
			usage: "deprecated (dns-wildcard-budget replaces it): longest label in a name allowed only by a *.suffix rule; 0 is off",
			parse: func(c *Config, v string) (err error) { c.DNSWildcardMaxLabelLen, err = parseInt(v, 0, 63); return }},
		{flag: "log-sample", env: "FORGE_SUPERVISOR_LOG_SAMPLE", def: "false", isBool: true,
			usage: "sample allowed-decision log lines under load (denials are never sampled)",
			parse: func(c *Config, v string) (err error) { c.LogSample, err = parseBool(v); return }},
		{flag: "classify-timeout", env: "FORGE_SUPERVISOR_CLASSIFY_TIMEOUT", def: "1s",
			usage: "how long to wait for a client's first bytes (TLS ClientHello / HTTP request)",
			parse: func(c *Config, v string) (err error) { c.ClassifyTimeout, err = parseDuration(v); return }},
		{flag: "dial-timeout", env: "FORGE_SUPERVISOR_DIAL_TIMEOUT", def: "5s",
			usage: "timeout of connecting to an allowed destination",
			parse: func(c *Config, v string) (err error) { c.DialTimeout, err = parseDuration(v); return }},
		{flag: "idle-timeout", env: "FORGE_SUPERVISOR_IDLE_TIMEOUT", def: "10m",
			usage: "a relayed connection with no traffic either way for this long is closed",
			parse: func(c *Config, v string) (err error) { c.IdleTimeout, err = parseDuration(v); return }},
		{flag: "inbound-ports", env: "FORGE_SUPERVISOR_INBOUND_PORTS", def: "",
			usage: "comma-separated TCP ports the agent listens on for connections from outside; connections to any other port are dropped and counted",
			parse: func(c *Config, v string) (err error) { c.InboundPorts, err = parsePortList(v); return }},
		{flag: "allowed-local-ports", env: "FORGE_SUPERVISOR_ALLOWED_LOCAL_PORTS", def: "",
			usage: "comma-separated ports on loopback and the pod's addresses the agent may reach whoever listens (TCP and UDP); without them only its own listeners, the DNS proxy and the health port",
			parse: func(c *Config, v string) (err error) { c.AllowedLocalPorts, err = parsePortList(v); return }},
		{flag: "audit-process", env: "FORGE_SUPERVISOR_AUDIT_PROCESS", def: "false", isBool: true,
			usage: "look up the agent process behind every connection and DNS query and audit its pid and exe (always on when a Rego policy reads input.process)",
			parse: func(c *Config, v string) (err error) { c.AuditProcess, err = parseBool(v); return }},
		{flag: "fast-path", env: "FORGE_SUPERVISOR_FAST_PATH", def: "true", isBool: true,
			usage: "kernel verdict path: connections to learned or listed destinations skip the proxy, their first bytes judged in place (where the kernel supports it)",
			parse: func(c *Config, v string) (err error) { c.FastPath, err = parseBool(v); return }},
		{flag: "allow-multicast", env: "FORGE_SUPERVISOR_ALLOW_MULTICAST", def: "false", isBool: true,
			usage: "let the agent join multicast groups and IGMP/MLD reports leave the pod (a covert channel, off by default)",
			parse: func(c *Config, v string) (err error) { c.AllowMulticast, err = parseBool(v); return }},
		{flag: "agent-output", env: "FORGE_SUPERVISOR_AGENT_OUTPUT", def: "json",
			usage: "json: each line the agent prints becomes an agent_output log record (it can never pass for an audit line); raw: lines copied verbatim (the agent can print lines that look like audit events)",
			parse: func(c *Config, v string) (err error) { c.AgentOutput, err = parseAgentOutput(v); return }},
		{flag: "forward-sighup", env: "FORGE_SUPERVISOR_FORWARD_SIGHUP", def: "true", isBool: true,
			usage: "also send SIGHUP (which reloads the policy) to the agent; false keeps an agent that does not handle HUP alive across reloads",
			parse: func(c *Config, v string) (err error) { c.ForwardSIGHUP, err = parseBool(v); return }},
		{flag: "watch-policy", env: "FORGE_SUPERVISOR_WATCH_POLICY", def: "true", isBool: true,
			usage: "reload the policy when its file changes (inotify on its directory, so a Kubernetes ConfigMap update is seen)",
			parse: func(c *Config, v string) (err error) { c.WatchPolicy, err = parseBool(v); return }},
	}
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
		{"-proxy-port / FORGE_SUPERVISOR_PROXY_PORT", c.ProxyPort},
		{"-dns-port / FORGE_SUPERVISOR_DNS_PORT", c.DNSPort},
		{"-health-port / FORGE_SUPERVISOR_HEALTH_PORT", c.HealthPort},
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
		{"-inbound-ports / FORGE_SUPERVISOR_INBOUND_PORTS", c.InboundPorts},
		{"-allowed-local-ports / FORGE_SUPERVISOR_ALLOWED_LOCAL_PORTS", c.AllowedLocalPorts},
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

// configJSON is the shape of `forge-supervisor config`: every setting under
// its flag name, durations in Go syntax.
type configJSON struct {
	Version         string   `json:"version"`
	PolicyPath      string   `json:"policy_path"`
	StrictPolicy    bool     `json:"strict_policy"`
	ProxyPort       uint16   `json:"proxy_port"`
	DNSPort         uint16   `json:"dns_port"`
	HealthPort      uint16   `json:"health_port"`
	LogLevel        string   `json:"log_level"`
	DryRun          bool     `json:"dry_run"`
	AgentUID        uint32   `json:"agent_uid"`
	AgentGID        uint32   `json:"agent_gid"`
	SeccompPath     string   `json:"seccomp_path"`
	SeccompLog      bool     `json:"seccomp_log"`
	DNSUpstreams    []string `json:"dns_upstream"` // [] means: from /etc/resolv.conf
	Grace           string   `json:"grace"`
	RequireKernel   bool     `json:"require_kernel"`
	DenialsSize     int      `json:"denials_size"`
	DNSMinTTL       string   `json:"dns_min_ttl"`
	DNSCacheSize    int      `json:"dns_cache_size"`
	AnswerCache     int      `json:"dns_answer_cache_bytes"`
	DNSDenyRcode    string   `json:"dns_deny_rcode"`
	DNSRate         float64  `json:"dns_rate"`
	WildcardBudget  int      `json:"dns_wildcard_budget"`
	WildcardLabels  int      `json:"dns_wildcard_max_labels"`
	WildcardLabLen  int      `json:"dns_wildcard_max_label_len"`
	LogSample       bool     `json:"log_sample"`
	ClassifyTimeout string   `json:"classify_timeout"`
	DialTimeout     string   `json:"dial_timeout"`
	IdleTimeout     string   `json:"idle_timeout"`
	InboundPorts    []uint16 `json:"inbound_ports"`
	LocalPorts      []uint16 `json:"allowed_local_ports"`
	AuditProcess    bool     `json:"audit_process"`
	FastPath        bool     `json:"fast_path"`
	AllowMulticast  bool     `json:"allow_multicast"`
	AgentOutput     string   `json:"agent_output"`
	ForwardSIGHUP   bool     `json:"forward_sighup"`
	WatchPolicy     bool     `json:"watch_policy"`
}

// JSON returns the effective configuration, indented, for
// `forge-supervisor config`. It holds no secrets: paths, not contents.
func (c Config) JSON() ([]byte, error) {
	ups := c.DNSUpstreams
	if ups == nil {
		ups = []string{}
	}
	b, err := json.MarshalIndent(configJSON{
		Version: version, PolicyPath: c.PolicyPath, StrictPolicy: c.StrictPolicy,
		ProxyPort: c.ProxyPort, DNSPort: c.DNSPort, HealthPort: c.HealthPort,
		LogLevel: c.LogLevel, DryRun: c.DryRun, AgentUID: c.AgentUID, AgentGID: c.AgentGID,
		SeccompPath: c.SeccompPath, SeccompLog: c.SeccompLog, DNSUpstreams: ups,
		Grace: c.Grace.String(), RequireKernel: c.RequireKernel, DenialsSize: c.DenialsSize,
		DNSMinTTL: c.DNSMinTTL.String(), DNSCacheSize: c.DNSCacheSize, DNSDenyRcode: c.DNSDenyRcode,
		DNSRate: c.DNSRate, LogSample: c.LogSample, AnswerCache: c.DNSAnswerCacheBytes,
		WildcardBudget: c.DNSWildcardBudget,
		WildcardLabels: c.DNSWildcardMaxLabels, WildcardLabLen: c.DNSWildcardMaxLabelLen,
		ClassifyTimeout: c.ClassifyTimeout.String(), DialTimeout: c.DialTimeout.String(),
		IdleTimeout:  c.IdleTimeout.String(),
		InboundPorts: nonNil(c.InboundPorts), LocalPorts: nonNil(c.AllowedLocalPorts),
		AuditProcess:   c.AuditProcess,
		FastPath:       c.FastPath,
		AllowMulticast: c.AllowMulticast,
		AgentOutput:    c.AgentOutput, ForwardSIGHUP: c.ForwardSIGHUP, WatchPolicy: c.WatchPolicy,
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("config: encode: %w", err)
	}
	return b, nil
}

// nonNil makes an empty list encode as [].
func nonNil(p []uint16) []uint16 {
	if p == nil {
		return []uint16{}
	}
	return p
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
