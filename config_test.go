package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"reflect"
	"strings"
	"testing"
	"time"
)

// env returns a getenv over a fixed map.
func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func defaultConfig() Config {
	return Config{
		PolicyPath: "/etc/forge/egress_allowlist.json",
		ProxyPort:  15001, DNSPort: 15002, HealthPort: 15000,
		LogLevel: "info", AgentUID: 1000, AgentGID: 1000,
		SeccompPath: "/etc/forge/seccomp.json",
		Grace:       10 * time.Second, DenialsSize: 256,
		DNSMinTTL: 60 * time.Second, DNSCacheSize: 65536, DNSDenyRcode: "refused", DNSRate: 200,
		DNSAnswerCacheBytes: 8 << 20,
		DNSWildcardBudget:   4096,
		ClassifyTimeout:     time.Second, DialTimeout: 5 * time.Second, IdleTimeout: 10 * time.Minute,
		FastPath:    true,
		AgentOutput: "json", ForwardSIGHUP: true, WatchPolicy: true,
	}
}

func TestParseConfigDefaults(t *testing.T) {
	cfg, sub, argv, err := ParseConfig([]string{"/agent", "-flag-of-agent"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := defaultConfig(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
	if sub != "" || !reflect.DeepEqual(argv, []string{"/agent", "-flag-of-agent"}) {
		t.Errorf("sub %q argv %q, want \"\" and the agent command verbatim", sub, argv)
	}
}

// everyEnv sets every variable to a non-default valid value.
var everyEnv = map[string]string{
	"FORGE_SUPERVISOR_POLICY_PATH":                "/p/policy.rego",
	"FORGE_SUPERVISOR_PROXY_PORT":                 "1001",
	"FORGE_SUPERVISOR_DNS_PORT":                   "1002",
	"FORGE_SUPERVISOR_HEALTH_PORT":                "1003",
	"FORGE_SUPERVISOR_LOG_LEVEL":                  "DEBUG",
	"FORGE_SUPERVISOR_DRY_RUN":                    "true",
	"FORGE_SUPERVISOR_AGENT_UID":                  "2000",
	"FORGE_SUPERVISOR_AGENT_GID":                  "3000",
	"FORGE_SUPERVISOR_SECCOMP_PATH":               "/p/seccomp.json",
	"FORGE_SUPERVISOR_SECCOMP_LOG":                "on",
	"FORGE_SUPERVISOR_DNS_UPSTREAM":               "192.0.2.53, 192.0.2.54:5353,2001:db8::53,[2001:db8::54]:5353",
	"FORGE_SUPERVISOR_GRACE":                      "3s",
	"FORGE_SUPERVISOR_REQUIRE_KERNEL":             "1",
	"FORGE_SUPERVISOR_DENIALS_SIZE":               "10",
	"FORGE_SUPERVISOR_DNS_MIN_TTL":                "5m",
	"FORGE_SUPERVISOR_DNS_CACHE_SIZE":             "100",
	"FORGE_SUPERVISOR_DNS_ANSWER_CACHE_BYTES":     "0",
	"FORGE_SUPERVISOR_DNS_DENY_RCODE":             "NXDOMAIN",
	"FORGE_SUPERVISOR_DNS_RATE":                   "50.5",
	"FORGE_SUPERVISOR_DNS_WILDCARD_BUDGET":        "1000",
	"FORGE_SUPERVISOR_STRICT_POLICY":              "1",
	"FORGE_SUPERVISOR_DNS_WILDCARD_MAX_LABELS":    "4",
	"FORGE_SUPERVISOR_DNS_WILDCARD_MAX_LABEL_LEN": "20",
	"FORGE_SUPERVISOR_LOG_SAMPLE":                 "yes",
	"FORGE_SUPERVISOR_CLASSIFY_TIMEOUT":           "250ms",
	"FORGE_SUPERVISOR_DIAL_TIMEOUT":               "2s",
	"FORGE_SUPERVISOR_IDLE_TIMEOUT":               "1h",
	"FORGE_SUPERVISOR_INBOUND_PORTS":              "8080, 9090",
	"FORGE_SUPERVISOR_ALLOWED_LOCAL_PORTS":        "5432",
	"FORGE_SUPERVISOR_AUDIT_PROCESS":              "1",
	"FORGE_SUPERVISOR_FAST_PATH":                  "0",
	"FORGE_SUPERVISOR_ALLOW_MULTICAST":            "true",
	"FORGE_SUPERVISOR_AGENT_OUTPUT":               "RAW",
	"FORGE_SUPERVISOR_FORWARD_SIGHUP":             "false",
	"FORGE_SUPERVISOR_WATCH_POLICY":               "off",
}

func everyEnvConfig() Config {
	return Config{
		PolicyPath: "/p/policy.rego", ProxyPort: 1001, DNSPort: 1002, HealthPort: 1003,
		LogLevel: "debug", DryRun: true, AgentUID: 2000, AgentGID: 3000,
		SeccompPath: "/p/seccomp.json", SeccompLog: true,
		DNSUpstreams: []string{"192.0.2.53:53", "192.0.2.54:5353", "[2001:db8::53]:53", "[2001:db8::54]:5353"},
		Grace:        3 * time.Second, RequireKernel: true, DenialsSize: 10,
		DNSMinTTL: 5 * time.Minute, DNSCacheSize: 100, DNSDenyRcode: "nxdomain", DNSRate: 50.5,
		DNSWildcardBudget: 1000, DNSWildcardMaxLabels: 4, DNSWildcardMaxLabelLen: 20, StrictPolicy: true,
		LogSample: true, ClassifyTimeout: 250 * time.Millisecond, DialTimeout: 2 * time.Second,
		IdleTimeout: time.Hour, InboundPorts: []uint16{8080, 9090}, AllowedLocalPorts: []uint16{5432}, AuditProcess: true, AllowMulticast: true,
		AgentOutput: "raw",
	}
}

func TestParseConfigEnv(t *testing.T) {
	cfg, _, _, err := ParseConfig([]string{"/agent"}, env(everyEnv))
	if err != nil {
		t.Fatal(err)
	}
	if want := everyEnvConfig(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("from env:\n got %+v\nwant %+v", cfg, want)
	}
}

// TestEverySettingHasFlagAndEnv keeps the settings table, this test's
// environment and the Config struct in step: every field is reachable.
func TestEverySettingHasFlagAndEnv(t *testing.T) {
	all := settings()
	if n := reflect.TypeOf(Config{}).NumField(); len(all) != n {
		t.Errorf("%d settings for %d Config fields", len(all), n)
	}
	for _, s := range all {
		if _, ok := everyEnv[s.env]; !ok {
			t.Errorf("setting -%s: %s missing from the test environment", s.flag, s.env)
		}
		if !strings.HasPrefix(s.env, "FORGE_SUPERVISOR_") {
			t.Errorf("setting -%s: env %s lacks the FORGE_SUPERVISOR_ prefix", s.flag, s.env)
		}
	}
	// Every field differs between defaults and everyEnv, so each setting
	// demonstrably lands in its own field.
	d, e := reflect.ValueOf(defaultConfig()), reflect.ValueOf(everyEnvConfig())
	for i := range d.NumField() {
		if reflect.DeepEqual(d.Field(i).Interface(), e.Field(i).Interface()) {
			t.Errorf("field %s: test env does not change it", d.Type().Field(i).Name)
		}
	}
}

func TestFlagsOverrideEnv(t *testing.T) {
	args := []string{
		"-policy-path", "/f/policy.json", "-proxy-port=2001", "--dns-port", "2002", "-health-port", "2003",
		"-log-level", "warn", "-dry-run=false", "-agent-uid", "4000", "-agent-gid", "5000",
		"-seccomp-path", "/f/seccomp.json", "-seccomp-log=false", "-dns-upstream", "198.51.100.53",
		"-grace", "1s", "-require-kernel=off", "-denials-size", "20", "-dns-min-ttl", "30s",
		"-dns-cache-size", "200", "-dns-deny-rcode", "refused", "-dns-rate", "10", "-log-sample=no",
		"-dns-wildcard-max-labels", "8", "-dns-wildcard-max-label-len", "40", "-dns-wildcard-budget", "0",
		"-strict-policy=false",
		"-classify-timeout", "2s", "-dial-timeout", "3s", "-idle-timeout", "30m",
		"-inbound-ports", "81", "-allowed-local-ports", "82,83",
		"-audit-process=false", "-allow-multicast=false",
		"-agent-output", "json", "-forward-sighup", "-watch-policy=on",
		"--", "/agent",
	}
	cfg, _, argv, err := ParseConfig(args, env(everyEnv))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		PolicyPath: "/f/policy.json", ProxyPort: 2001, DNSPort: 2002, HealthPort: 2003,
		LogLevel: "warn", AgentUID: 4000, AgentGID: 5000, SeccompPath: "/f/seccomp.json",
		DNSUpstreams: []string{"198.51.100.53:53"}, Grace: time.Second, DenialsSize: 20,
		DNSMinTTL: 30 * time.Second, DNSCacheSize: 200, DNSDenyRcode: "refused", DNSRate: 10,
		DNSWildcardMaxLabels: 8, DNSWildcardMaxLabelLen: 40,
		ClassifyTimeout: 2 * time.Second, DialTimeout: 3 * time.Second, IdleTimeout: 30 * time.Minute,
		InboundPorts: []uint16{81}, AllowedLocalPorts: []uint16{82, 83},
		AgentOutput: "json", ForwardSIGHUP: true, WatchPolicy: true,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("flags over env:\n got %+v\nwant %+v", cfg, want)
	}
	if !reflect.DeepEqual(argv, []string{"/agent"}) {
		t.Errorf("argv = %q", argv)
	}
	// A bare boolean flag means true, and beats an env "false".
	cfg, _, _, err = ParseConfig([]string{"-dry-run", "/agent"}, env(map[string]string{"FORGE_SUPERVISOR_DRY_RUN": "false"}))
	if err != nil || !cfg.DryRun {
		t.Errorf("-dry-run over env false: DryRun=%v err=%v", cfg.DryRun, err)
	}
}

func TestBadEnvOverriddenByGoodFlagIsAccepted(t *testing.T) {
	cfg, _, _, err := ParseConfig([]string{"-proxy-port", "16001", "/agent"},
		env(map[string]string{"FORGE_SUPERVISOR_PROXY_PORT": "not-a-port"}))
	if err != nil || cfg.ProxyPort != 16001 {
		t.Fatalf("ProxyPort=%d err=%v: the flag wins, the bad env value is irrelevant", cfg.ProxyPort, err)
	}
}

func TestBadValuesRejected(t *testing.T) {
	tests := []struct {
		flag, env, value, why string
	}{
		{"policy-path", "FORGE_SUPERVISOR_POLICY_PATH", "/a\x00b", "NUL"},
		{"proxy-port", "FORGE_SUPERVISOR_PROXY_PORT", "0", "1..65535"},
		{"proxy-port", "FORGE_SUPERVISOR_PROXY_PORT", "65536", "1..65535"},
		{"dns-port", "FORGE_SUPERVISOR_DNS_PORT", "-1", "1..65535"},
		{"health-port", "FORGE_SUPERVISOR_HEALTH_PORT", "http", "1..65535"},
		{"log-level", "FORGE_SUPERVISOR_LOG_LEVEL", "verbose", "debug, info, warn, error"},
		{"log-level", "FORGE_SUPERVISOR_LOG_LEVEL", "fatal", "debug, info, warn, error"},
		{"dry-run", "FORGE_SUPERVISOR_DRY_RUN", "maybe", "true or false"},
		{"agent-uid", "FORGE_SUPERVISOR_AGENT_UID", "0", "not be 0"},
		{"agent-uid", "FORGE_SUPERVISOR_AGENT_UID", "4294967295", "(uid_t)-1"},
		{"agent-uid", "FORGE_SUPERVISOR_AGENT_UID", "root", "numeric id"},
		{"agent-gid", "FORGE_SUPERVISOR_AGENT_GID", "0", "not be 0"},
		{"agent-gid", "FORGE_SUPERVISOR_AGENT_GID", "4294967296", "numeric id"},
		{"seccomp-path", "FORGE_SUPERVISOR_SECCOMP_PATH", "x\x00", "NUL"},
		{"seccomp-log", "FORGE_SUPERVISOR_SECCOMP_LOG", "2", "true or false"},
		{"dns-upstream", "FORGE_SUPERVISOR_DNS_UPSTREAM", "dns.google", "IP address"},
		{"dns-upstream", "FORGE_SUPERVISOR_DNS_UPSTREAM", "192.0.2.53:0", "port must be"},
		{"dns-upstream", "FORGE_SUPERVISOR_DNS_UPSTREAM", "0.0.0.0", "unicast"},
		{"dns-upstream", "FORGE_SUPERVISOR_DNS_UPSTREAM", "224.0.0.251", "unicast"},
		{"dns-upstream", "FORGE_SUPERVISOR_DNS_UPSTREAM", "fe80::1%eth0", "zones"},
		{"dns-upstream", "FORGE_SUPERVISOR_DNS_UPSTREAM", "192.0.2.53,,192.0.2.54", "IP address"},
		{"dns-upstream", "FORGE_SUPERVISOR_DNS_UPSTREAM", "192.0.2.53,192.0.2.53:53", "listed twice"},
		{"dns-upstream", "FORGE_SUPERVISOR_DNS_UPSTREAM", strings.Repeat("192.0.2.1,", 8) + "192.0.2.2", "at most 8"},
		{"grace", "FORGE_SUPERVISOR_GRACE", "10", "unit"},
		{"grace", "FORGE_SUPERVISOR_GRACE", "0s", "greater than 0"},
		{"grace", "FORGE_SUPERVISOR_GRACE", "-1s", "greater than 0"},
		{"grace", "FORGE_SUPERVISOR_GRACE", "25h", "at most 24h"},
		{"require-kernel", "FORGE_SUPERVISOR_REQUIRE_KERNEL", "sometimes", "true or false"},
		{"denials-size", "FORGE_SUPERVISOR_DENIALS_SIZE", "0", "1..65536"},
		{"denials-size", "FORGE_SUPERVISOR_DENIALS_SIZE", "65537", "1..65536"},
		{"dns-min-ttl", "FORGE_SUPERVISOR_DNS_MIN_TTL", "0s", "greater than 0"},
		{"dns-cache-size", "FORGE_SUPERVISOR_DNS_CACHE_SIZE", "-5", "1..4194304"},
		{"dns-cache-size", "FORGE_SUPERVISOR_DNS_CACHE_SIZE", "1e3", "1..4194304"},
		{"dns-answer-cache-bytes", "FORGE_SUPERVISOR_DNS_ANSWER_CACHE_BYTES", "-1", "0..1073741824"},
		{"dns-answer-cache-bytes", "FORGE_SUPERVISOR_DNS_ANSWER_CACHE_BYTES", "8MiB", "0..1073741824"},
		{"dns-deny-rcode", "FORGE_SUPERVISOR_DNS_DENY_RCODE", "servfail", "refused or nxdomain"},
		{"dns-rate", "FORGE_SUPERVISOR_DNS_RATE", "0", "> 0"},
		{"dns-wildcard-max-labels", "FORGE_SUPERVISOR_DNS_WILDCARD_MAX_LABELS", "-1", "0..127"},
		{"dns-wildcard-max-label-len", "FORGE_SUPERVISOR_DNS_WILDCARD_MAX_LABEL_LEN", "64", "63"},
		{"dns-wildcard-budget", "FORGE_SUPERVISOR_DNS_WILDCARD_BUDGET", "-1", "0..1048576"},
		{"strict-policy", "FORGE_SUPERVISOR_STRICT_POLICY", "maybe", "true or false"},
		{"dns-rate", "FORGE_SUPERVISOR_DNS_RATE", "NaN", "> 0"},
		{"dns-rate", "FORGE_SUPERVISOR_DNS_RATE", "Inf", "> 0"},
		{"dns-rate", "FORGE_SUPERVISOR_DNS_RATE", "2e6", "> 0"},
		{"log-sample", "FORGE_SUPERVISOR_LOG_SAMPLE", "sometimes", "true or false"},
		{"classify-timeout", "FORGE_SUPERVISOR_CLASSIFY_TIMEOUT", "0ms", "greater than 0"},
		{"dial-timeout", "FORGE_SUPERVISOR_DIAL_TIMEOUT", "fast", "unit"},
		{"idle-timeout", "FORGE_SUPERVISOR_IDLE_TIMEOUT", "-10m", "greater than 0"},
		{"allowed-local-ports", "FORGE_SUPERVISOR_ALLOWED_LOCAL_PORTS", "5432,0", "1..65535"},
		{"allowed-local-ports", "FORGE_SUPERVISOR_ALLOWED_LOCAL_PORTS", "5432,5432", "twice"},
		{"inbound-ports", "FORGE_SUPERVISOR_INBOUND_PORTS", "http", "1..65535"},
		{"inbound-ports", "FORGE_SUPERVISOR_INBOUND_PORTS", "70000", "1..65535"},
		{"allow-multicast", "FORGE_SUPERVISOR_ALLOW_MULTICAST", "maybe", "true or false"},
	}
	for _, tt := range tests {
		t.Run(tt.flag+"="+tt.value, func(t *testing.T) {
			for _, via := range []string{"env", "flag"} {
				var args []string
				vars := map[string]string{}
				if via == "env" {
					vars[tt.env] = tt.value
				} else {
					args = []string{"-" + tt.flag + "=" + tt.value}
				}
				_, _, _, err := ParseConfig(append(args, "/agent"), env(vars))
				if err == nil {
					t.Fatalf("via %s: %q accepted", via, tt.value)
				}
				msg := err.Error()
				source := "environment variable " + tt.env
				if via == "flag" {
					source = "flag -" + tt.flag
				}
				for _, want := range []string{source, "-" + tt.flag, tt.env, tt.why} {
					if !strings.Contains(msg, want) {
						t.Errorf("via %s: error %q lacks %q", via, msg, want)
					}
				}
				if n := strings.Count(msg, "\n"); n != 1 {
					t.Errorf("via %s: want exactly one error line, got %d:\n%s", via, n, msg)
				}
			}
		})
	}
}

func TestEveryBadValueReportedOnce(t *testing.T) {
	_, _, _, err := ParseConfig([]string{"-grace=0s", "/agent"}, env(map[string]string{
		"FORGE_SUPERVISOR_PROXY_PORT": "0",
		"FORGE_SUPERVISOR_AGENT_UID":  "0",
	}))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"FORGE_SUPERVISOR_PROXY_PORT", "FORGE_SUPERVISOR_AGENT_UID", "flag -grace"} {
		if strings.Count(err.Error(), want) != 1 {
			t.Errorf("error names %q %d times, want once:\n%v", want, strings.Count(err.Error(), want), err)
		}
	}
}

func TestPortsMustDiffer(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"-dns-port", "15001"}, []string{"-proxy-port", "-dns-port", "15001"}},
		{[]string{"-health-port", "15002"}, []string{"-dns-port", "-health-port", "15002"}},
		{[]string{"-proxy-port", "7", "-dns-port", "7", "-health-port", "7"}, []string{"-proxy-port", "-dns-port", "-health-port"}},
	}
	for _, tt := range tests {
		_, _, _, err := ParseConfig(append(tt.args, "/agent"), env(nil))
		if err == nil {
			t.Errorf("%q accepted", tt.args)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q lacks %q", tt.args, err, w)
			}
		}
	}
}

func TestCommandAndSubcommands(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		sub     string
		argv    []string
		dryRun  bool
		policy  string
		wantErr string
	}{
		{name: "no command", args: nil},
		{name: "command", args: []string{"/agent", "run"}, argv: []string{"/agent", "run"}},
		{name: "flags then command", args: []string{"-dry-run", "/agent", "-dry-run"}, argv: []string{"/agent", "-dry-run"}, dryRun: true},
		{name: "terminator", args: []string{"--", "/agent", "--", "x"}, argv: []string{"/agent", "--", "x"}},
		{name: "terminator then dash arg", args: []string{"-dry-run", "--", "-agent"}, argv: []string{"-agent"}, dryRun: true},
		{name: "terminator only", args: []string{"--"}, argv: []string{}},
		{name: "config", args: []string{"config"}, sub: subConfig},
		{name: "version", args: []string{"version"}, sub: subVersion},
		{name: "flags before config", args: []string{"-dry-run", "config"}, sub: subConfig, dryRun: true},
		{name: "flags after config", args: []string{"config", "-dry-run"}, sub: subConfig, dryRun: true},
		{name: "config after terminator is a command", args: []string{"--", "config"}, argv: []string{"config"}},
		{name: "version after terminator is a command", args: []string{"-dry-run", "--", "version"}, argv: []string{"version"}, dryRun: true},
		{name: "-- as a flag value", args: []string{"-policy-path", "--", "config"}, sub: subConfig, policy: "--"},
		{name: "config is not a subcommand later", args: []string{"/bin/sh", "config"}, argv: []string{"/bin/sh", "config"}},
		{name: "config with arguments", args: []string{"config", "extra"}, wantErr: `subcommand "config" takes no arguments`},
		{name: "unknown flag", args: []string{"-no-such-flag", "/agent"}, wantErr: "flag provided but not defined: -no-such-flag"},
		{name: "flag without value", args: []string{"-proxy-port"}, wantErr: "flag needs an argument: -proxy-port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, sub, argv, err := ParseConfig(tt.args, env(nil))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sub != tt.sub {
				t.Errorf("sub = %q, want %q", sub, tt.sub)
			}
			if len(argv) != len(tt.argv) || (len(argv) > 0 && !reflect.DeepEqual(argv, tt.argv)) {
				t.Errorf("argv = %q, want %q", argv, tt.argv)
			}
			if cfg.DryRun != tt.dryRun {
				t.Errorf("DryRun = %v, want %v", cfg.DryRun, tt.dryRun)
			}
			if tt.policy != "" && cfg.PolicyPath != tt.policy {
				t.Errorf("PolicyPath = %q, want %q", cfg.PolicyPath, tt.policy)
			}
		})
	}
}

func TestHelpRequest(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		_, _, _, err := ParseConfig([]string{arg}, env(nil))
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s: err = %v, want flag.ErrHelp", arg, err)
		}
	}
	var buf bytes.Buffer
	configUsage(&buf)
	for _, s := range settings() {
		if !strings.Contains(buf.String(), "-"+s.flag) || !strings.Contains(buf.String(), s.env) {
			t.Errorf("usage lacks -%s / %s", s.flag, s.env)
		}
	}
}

func TestConfigJSON(t *testing.T) {
	b, err := defaultConfig().JSON()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	want := map[string]any{
		"version": version, "policy_path": "/etc/forge/egress_allowlist.json",
		"proxy_port": 15001.0, "dns_port": 15002.0, "health_port": 15000.0,
		"log_level": "info", "dry_run": false, "agent_uid": 1000.0, "agent_gid": 1000.0,
		"seccomp_path": "/etc/forge/seccomp.json", "seccomp_log": false, "dns_upstream": []any{},
		"grace": "10s", "require_kernel": false, "denials_size": 256.0, "dns_min_ttl": "1m0s",
		"dns_cache_size": 65536.0, "dns_answer_cache_bytes": 8388608.0, "dns_deny_rcode": "refused", "dns_rate": 200.0, "log_sample": false,
		"dns_wildcard_max_labels": 0.0, "dns_wildcard_max_label_len": 0.0, "dns_wildcard_budget": 4096.0,
		"strict_policy":    false,
		"classify_timeout": "1s", "dial_timeout": "5s", "idle_timeout": "10m0s",
		"inbound_ports": []any{}, "allowed_local_ports": []any{},
		"audit_process":   false,
		"fast_path":       true,
		"allow_multicast": false,
		"agent_output":    "json", "forward_sighup": true, "watch_policy": true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("config JSON:\n got %v\nwant %v", got, want)
	}
	// Every setting appears under its flag name (dashes as underscores).
	for _, s := range settings() {
		if _, ok := got[strings.ReplaceAll(s.flag, "-", "_")]; !ok {
			t.Errorf("config JSON lacks %s", s.flag)
		}
	}
}

// FuzzParseConfig feeds arbitrary text to every setting, through the
// environment and the command line: parsing must never panic, and whatever
// it accepts must satisfy the invariants the rest of the supervisor relies
// on.
func FuzzParseConfig(f *testing.F) {
	for _, v := range everyEnv {
		f.Add(v, "--")
	}
	f.Add("", "config")
	f.Add("[::1]:53,127.0.0.1", "-dns-upstream")
	f.Add("1e309", "-dns-rate=")
	f.Fuzz(func(t *testing.T, value, arg string) {
		vars := map[string]string{}
		for _, s := range settings() {
			vars[s.env] = value
		}
		cfg, _, _, err := ParseConfig([]string{arg, value, "/agent"}, env(vars))
		if err != nil {
			return
		}
		if cfg.ProxyPort == 0 || cfg.ProxyPort == cfg.DNSPort || cfg.DNSPort == cfg.HealthPort || cfg.ProxyPort == cfg.HealthPort {
			t.Fatalf("accepted bad ports: %+v", cfg)
		}
		if cfg.AgentUID == 0 || cfg.AgentGID == 0 || cfg.PolicyPath == "" || cfg.SeccompPath == "" {
			t.Fatalf("accepted bad identity or path: %+v", cfg)
		}
		for _, d := range []time.Duration{cfg.Grace, cfg.DNSMinTTL, cfg.ClassifyTimeout, cfg.DialTimeout, cfg.IdleTimeout} {
			if d <= 0 || d > maxDuration {
				t.Fatalf("accepted duration %v: %+v", d, cfg)
			}
		}
		if cfg.DenialsSize < 1 || cfg.DNSCacheSize < 1 || !(cfg.DNSRate > 0) {
			t.Fatalf("accepted bad sizes: %+v", cfg)
		}
		if _, err := cfg.JSON(); err != nil {
			t.Fatal(err)
		}
	})
}
