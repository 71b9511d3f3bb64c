package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/forge/forge-supervisor/deploy"
	fdns "github.com/forge/forge-supervisor/dns"
	"github.com/forge/forge-supervisor/obs"
)

// setting is one configuration knob, defined once by its row in settings:
// its flag, its environment variable, its default (in the text form a user
// types), its usage line, and how its value is parsed into a Config,
// written back as text and shown. Everything else is derived from the row:
// the flag set and the environment (ParseConfig), forge.yaml's supervisor:
// key (settingKey), `-h` (configUsage), `forge-supervisor config` (JSON,
// under settingKey) and the environment generate writes into manifests
// (deploySettings).
type setting struct {
	flag   string
	env    string
	def    string
	isBool bool
	usage  string
	// parse validates v and stores it; its error says what a valid value
	// looks like, the caller adds which flag or variable carried it.
	parse func(c *Config, v string) error
	// text is the value in the form parse reads back.
	text func(c Config) string
	// json is the value as `forge-supervisor config` shows it.
	json func(c Config) any
}

// settings lists every knob in the order `-h` and `forge-supervisor config`
// show them.
func settings() []setting {
	return []setting{
		define("policy-path", "FORGE_SUPERVISOR_POLICY_PATH", "/etc/forge/egress_allowlist.json", pathKind,
			func(c *Config) *string { return &c.PolicyPath },
			"policy file: Forge egress_allowlist.json, or a .rego policy"),
		define("strict-policy", "FORGE_SUPERVISOR_STRICT_POLICY", "false", boolKind,
			func(c *Config) *bool { return &c.StrictPolicy },
			"refuse a policy file with anything it would warn about: unknown fields, entries skipped or allowing nothing (by default warnings, so a field a newer Forge adds, or an entry Forge writes verbatim, does not stop the agent)"),
		define("proxy-port", "FORGE_SUPERVISOR_PROXY_PORT", strconv.Itoa(deploy.DefaultProxyPort), portKind,
			func(c *Config) *uint16 { return &c.ProxyPort },
			"port of the transparent proxy the agent's TCP is redirected to"),
		define("dns-port", "FORGE_SUPERVISOR_DNS_PORT", strconv.Itoa(deploy.DefaultDNSPort), portKind,
			func(c *Config) *uint16 { return &c.DNSPort },
			fmt.Sprintf("port of the DNS proxy the agent's port-%d traffic is redirected to", fdns.StandardPort)),
		define("health-port", "FORGE_SUPERVISOR_HEALTH_PORT", strconv.Itoa(deploy.DefaultHealthPort), portKind,
			func(c *Config) *uint16 { return &c.HealthPort },
			"port of /healthz, /readyz, /denials and /metrics"),
		define("log-level", "FORGE_SUPERVISOR_LOG_LEVEL", "info", wordKind(parseLogLevel),
			func(c *Config) *string { return &c.LogLevel },
			"debug, info, warn or error"),
		define("dry-run", "FORGE_SUPERVISOR_DRY_RUN", "false", boolKind,
			func(c *Config) *bool { return &c.DryRun },
			"log what the policy would deny but let it through"),
		define("agent-uid", "FORGE_SUPERVISOR_AGENT_UID", strconv.Itoa(deploy.DefaultAgentUID), idKind,
			func(c *Config) *uint32 { return &c.AgentUID },
			"UID the agent runs as (not 0)"),
		define("agent-gid", "FORGE_SUPERVISOR_AGENT_GID", strconv.Itoa(deploy.DefaultAgentGID), idKind,
			func(c *Config) *uint32 { return &c.AgentGID },
			"GID the agent runs as (not 0)"),
		define("seccomp-path", "FORGE_SUPERVISOR_SECCOMP_PATH", "/etc/forge/seccomp.json", pathKind,
			func(c *Config) *string { return &c.SeccompPath },
			"seccomp profile (OCI JSON) loaded into the agent"),
		define("seccomp-log", "FORGE_SUPERVISOR_SECCOMP_LOG", "false", boolKind,
			func(c *Config) *bool { return &c.SeccompLog },
			"also log (SECCOMP_FILTER_FLAG_LOG) the syscalls the profile denies"),
		define("dns-upstream", "FORGE_SUPERVISOR_DNS_UPSTREAM", "", upstreamsKind,
			func(c *Config) *[]string { return &c.DNSUpstreams },
			"comma-separated upstream resolvers ip[:port] ([ipv6]:port); empty: the nameservers of /etc/resolv.conf"),
		define("grace", "FORGE_SUPERVISOR_GRACE", deploy.DefaultGrace.String(), durationKind,
			func(c *Config) *time.Duration { return &c.Grace },
			"time the agent gets between SIGTERM and SIGKILL"),
		define("require-kernel", "FORGE_SUPERVISOR_REQUIRE_KERNEL", "false", boolKind,
			func(c *Config) *bool { return &c.RequireKernel },
			"refuse to start when kernel interception (nftables) is unavailable instead of falling back to an explicit proxy"),
		define("denials-size", "FORGE_SUPERVISOR_DENIALS_SIZE", "256", intKind(1, obs.MaxDenialsSize),
			func(c *Config) *int { return &c.DenialsSize },
			fmt.Sprintf("number of recent denials kept for /denials (1..%d)", obs.MaxDenialsSize)),
		define("dns-min-ttl", "FORGE_SUPERVISOR_DNS_MIN_TTL", "60s", durationKind,
			func(c *Config) *time.Duration { return &c.DNSMinTTL },
			"shortest time a learned name→IP answer stays valid for the proxy"),
		define("dns-cache-size", "FORGE_SUPERVISOR_DNS_CACHE_SIZE", "65536", intKind(1, maxDNSCacheSize),
			func(c *Config) *int { return &c.DNSCacheSize },
			fmt.Sprintf("entries of the learned name→IP cache (1..%d)", maxDNSCacheSize)),
		define("dns-answer-cache-bytes", "FORGE_SUPERVISOR_DNS_ANSWER_CACHE_BYTES", "8388608", intKind(0, maxDNSAnswerCacheBytes),
			func(c *Config) *int { return &c.DNSAnswerCacheBytes },
			fmt.Sprintf("memory of the DNS answer cache in bytes (0 turns it off; at most %d)", maxDNSAnswerCacheBytes)),
		define("dns-deny-rcode", "FORGE_SUPERVISOR_DNS_DENY_RCODE", "refused", wordKind(parseRcode),
			func(c *Config) *string { return &c.DNSDenyRcode },
			"answer to a denied DNS query: refused or nxdomain"),
		define("dns-rate", "FORGE_SUPERVISOR_DNS_RATE", "200", rateKind,
			func(c *Config) *float64 { return &c.DNSRate },
			"DNS queries per second the agent may send; above it queries are refused"),
		define("dns-wildcard-budget", "FORGE_SUPERVISOR_DNS_WILDCARD_BUDGET", "4096", intKind(0, maxWildcardBudget),
			func(c *Config) *int { return &c.DNSWildcardBudget },
			fmt.Sprintf("bytes of new names per minute the agent may resolve under each *.suffix rule, DNS queries and the supervisor's own lookups together (DNS exfiltration guard; 0 turns it off; at most %d)", maxWildcardBudget)),
		define("dns-wildcard-max-labels", "FORGE_SUPERVISOR_DNS_WILDCARD_MAX_LABELS", "0", intKind(0, 127),
			func(c *Config) *int { return &c.DNSWildcardMaxLabels },
			"deprecated (dns-wildcard-budget replaces it): most labels in a name allowed only by a *.suffix rule; 0 is off"),
		define("dns-wildcard-max-label-len", "FORGE_SUPERVISOR_DNS_WILDCARD_MAX_LABEL_LEN", "0", intKind(0, 63),
			func(c *Config) *int { return &c.DNSWildcardMaxLabelLen },
			"deprecated (dns-wildcard-budget replaces it): longest label in a name allowed only by a *.suffix rule; 0 is off"),
		define("log-sample", "FORGE_SUPERVISOR_LOG_SAMPLE", "false", boolKind,
			func(c *Config) *bool { return &c.LogSample },
			"sample allowed-decision log lines under load (denials are never sampled)"),
		define("classify-timeout", "FORGE_SUPERVISOR_CLASSIFY_TIMEOUT", "1s", durationKind,
			func(c *Config) *time.Duration { return &c.ClassifyTimeout },
			"how long to wait for a client's first bytes (TLS ClientHello / HTTP request)"),
		define("dial-timeout", "FORGE_SUPERVISOR_DIAL_TIMEOUT", "5s", durationKind,
			func(c *Config) *time.Duration { return &c.DialTimeout },
			"timeout of connecting to an allowed destination"),
		define("idle-timeout", "FORGE_SUPERVISOR_IDLE_TIMEOUT", "10m", durationKind,
			func(c *Config) *time.Duration { return &c.IdleTimeout },
			"a relayed connection with no traffic either way for this long is closed"),
		define("inbound-ports", "FORGE_SUPERVISOR_INBOUND_PORTS", "", portListKind,
			func(c *Config) *[]uint16 { return &c.InboundPorts },
			"comma-separated TCP ports the agent listens on for connections from outside; connections to any other port are dropped and counted"),
		define("allowed-local-ports", "FORGE_SUPERVISOR_ALLOWED_LOCAL_PORTS", "", portListKind,
			func(c *Config) *[]uint16 { return &c.AllowedLocalPorts },
			"comma-separated ports on loopback and the pod's addresses the agent may reach whoever listens (TCP and UDP); without them only its own listeners, the DNS proxy and the health port"),
		define("audit-process", "FORGE_SUPERVISOR_AUDIT_PROCESS", "false", boolKind,
			func(c *Config) *bool { return &c.AuditProcess },
			"look up the agent process behind every connection and DNS query and audit its pid and exe (always on when a Rego policy reads input.process)"),
		define("fast-path", "FORGE_SUPERVISOR_FAST_PATH", "true", boolKind,
			func(c *Config) *bool { return &c.FastPath },
			"kernel verdict path: connections to learned or listed destinations skip the proxy, their first bytes judged in place (where the kernel supports it)"),
		define("allow-multicast", "FORGE_SUPERVISOR_ALLOW_MULTICAST", "false", boolKind,
			func(c *Config) *bool { return &c.AllowMulticast },
			"let the agent join multicast groups and IGMP/MLD reports leave the pod (a covert channel, off by default)"),
		define("agent-output", "FORGE_SUPERVISOR_AGENT_OUTPUT", "json", wordKind(parseAgentOutput),
			func(c *Config) *string { return &c.AgentOutput },
			"json: each line the agent prints becomes an agent_output log record (it can never pass for an audit line); raw: lines copied verbatim (the agent can print lines that look like audit events)"),
		define("forward-sighup", "FORGE_SUPERVISOR_FORWARD_SIGHUP", "true", boolKind,
			func(c *Config) *bool { return &c.ForwardSIGHUP },
			"also send SIGHUP (which reloads the policy) to the agent; false keeps an agent that does not handle HUP alive across reloads"),
		define("watch-policy", "FORGE_SUPERVISOR_WATCH_POLICY", "true", boolKind,
			func(c *Config) *bool { return &c.WatchPolicy },
			"reload the policy when its file changes (inotify on its directory, so a Kubernetes ConfigMap update is seen)"),
	}
}

// define makes a setting of a value of kind k kept in the Config field
// that field points to.
func define[T any](flag, env, def string, k kind[T], field func(*Config) *T, usage string) setting {
	show := k.json
	if show == nil {
		show = func(v T) any { return v }
	}
	return setting{
		flag: flag, env: env, def: def, isBool: k.isBool, usage: usage,
		parse: func(c *Config, v string) error {
			x, err := k.parse(v)
			if err != nil {
				return err
			}
			*field(c) = x
			return nil
		},
		text: func(c Config) string { return k.text(*field(&c)) },
		json: func(c Config) any { return show(*field(&c)) },
	}
}

// settingByFlag is the row of the setting with this flag.
func settingByFlag(flag string) (setting, bool) {
	for _, s := range settings() {
		if s.flag == flag {
			return s, true
		}
	}
	return setting{}, false
}

// settingNames is how an error names the setting with this flag:
// "-proxy-port / FORGE_SUPERVISOR_PROXY_PORT".
func settingNames(flag string) string {
	s, _ := settingByFlag(flag)
	return "-" + s.flag + " / " + s.env
}
