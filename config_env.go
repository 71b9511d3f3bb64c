package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/forge/forge-supervisor/deploy"
)

// settingText is the effective value of the setting with this flag, in the
// text form its parser reads back: what generate writes into manifests so
// that every setting given before "generate" reaches the deployment.
func (c Config) settingText(flag string) string {
	b := strconv.FormatBool
	d := func(v time.Duration) string { return v.String() }
	n := func(v int) string { return strconv.Itoa(v) }
	switch flag {
	case "policy-path":
		return c.PolicyPath
	case "strict-policy":
		return b(c.StrictPolicy)
	case "proxy-port":
		return n(int(c.ProxyPort))
	case "dns-port":
		return n(int(c.DNSPort))
	case "health-port":
		return n(int(c.HealthPort))
	case "log-level":
		return c.LogLevel
	case "dry-run":
		return b(c.DryRun)
	case "agent-uid":
		return strconv.FormatUint(uint64(c.AgentUID), 10)
	case "agent-gid":
		return strconv.FormatUint(uint64(c.AgentGID), 10)
	case "seccomp-path":
		return c.SeccompPath
	case "seccomp-log":
		return b(c.SeccompLog)
	case "dns-upstream":
		return strings.Join(c.DNSUpstreams, ",")
	case "grace":
		return d(c.Grace)
	case "require-kernel":
		return b(c.RequireKernel)
	case "denials-size":
		return n(c.DenialsSize)
	case "dns-min-ttl":
		return d(c.DNSMinTTL)
	case "dns-cache-size":
		return n(c.DNSCacheSize)
	case "dns-answer-cache-bytes":
		return n(c.DNSAnswerCacheBytes)
	case "dns-deny-rcode":
		return c.DNSDenyRcode
	case "dns-rate":
		return strconv.FormatFloat(c.DNSRate, 'g', -1, 64)
	case "dns-wildcard-budget":
		return n(c.DNSWildcardBudget)
	case "dns-wildcard-max-labels":
		return n(c.DNSWildcardMaxLabels)
	case "dns-wildcard-max-label-len":
		return n(c.DNSWildcardMaxLabelLen)
	case "log-sample":
		return b(c.LogSample)
	case "classify-timeout":
		return d(c.ClassifyTimeout)
	case "dial-timeout":
		return d(c.DialTimeout)
	case "idle-timeout":
		return d(c.IdleTimeout)
	case "inbound-ports":
		return portsText(c.InboundPorts)
	case "allowed-local-ports":
		return portsText(c.AllowedLocalPorts)
	case "audit-process":
		return b(c.AuditProcess)
	case "fast-path":
		return b(c.FastPath)
	case "allow-multicast":
		return b(c.AllowMulticast)
	case "agent-output":
		return c.AgentOutput
	case "forward-sighup":
		return b(c.ForwardSIGHUP)
	case "watch-policy":
		return b(c.WatchPolicy)
	}
	return "" // a setting without a case: TestSettingTextRoundTrip fails
}

func portsText(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// deploySettings are every setting as environment variables for the
// manifests, each marked when it holds the supervisor's default.
func (c Config) deploySettings() []deploy.Setting {
	var def Config
	for _, s := range settings() {
		_ = s.parse(&def, s.def) // defaults always parse (TestParseConfigDefaults)
	}
	var out []deploy.Setting
	for _, s := range settings() {
		v := c.settingText(s.flag)
		out = append(out, deploy.Setting{Env: s.env, Value: v, IsDefault: v == def.settingText(s.flag)})
	}
	return out
}
