package main

import (
	"fmt"
	"strings"

	"github.com/forge/forge-supervisor/deploy"
	"github.com/forge/forge-supervisor/forgeyaml"
	"github.com/forge/forge-supervisor/jail"
	"github.com/forge/forge-supervisor/policy"
)

// flagForgeYAML is generate's flag naming a Forge project; ParseConfig
// looks for it so the project's supervisor: section can sit between the
// defaults and the environment (see layer below).
const flagForgeYAML = "forge-yaml"

// settingKey is a setting's key in forge.yaml's supervisor: section: its
// flag with "_" for "-" (proxy_port, dns_wildcard_max_labels).
func settingKey(flag string) string { return strings.ReplaceAll(flag, "-", "_") }

// forgeYAMLOptions tell the forge.yaml reader which settings exist and how
// the supervisor parses each, so a bad value is reported at its line.
func forgeYAMLOptions() forgeyaml.Options {
	parsers := map[string]func(*Config, string) error{}
	var keys []string
	for _, s := range settings() {
		k := settingKey(s.flag)
		keys = append(keys, k)
		parsers[k] = s.parse
	}
	return forgeyaml.Options{
		SettingKeys: keys,
		CheckSetting: func(key, text string) error {
			var c Config
			return parsers[key](&c, text)
		},
	}
}

// loadForgeYAML reads a Forge project and refuses one that opted out of
// the supervisor: running its agent unsupervised is never the fallback.
func loadForgeYAML(path string) (*forgeyaml.Project, error) {
	proj, err := forgeyaml.Load(path, forgeYAMLOptions())
	if err != nil {
		return nil, err
	}
	if !proj.Supervisor.Enabled {
		return nil, fmt.Errorf("%s: supervisor.enabled is false: this project opts out of forge-supervisor (remove the key or set it to true)", path)
	}
	return proj, nil
}

// layerValue is one setting's text from forge.yaml and where it is.
type layerValue struct {
	text, source string
}

// forgeLayer is the settings of the forge.yaml at path, keyed by flag name.
// Precedence (ParseConfig): flag > environment > forge.yaml > default.
func forgeLayer(path string) (map[string]layerValue, error) {
	proj, err := loadForgeYAML(path)
	if err != nil {
		return nil, err
	}
	layer := map[string]layerValue{}
	for _, s := range proj.Supervisor.Settings {
		layer[strings.ReplaceAll(s.Key, "_", "-")] = layerValue{text: s.Value, source: s.Source + ": supervisor." + s.Key}
	}
	return layer, nil
}

// forgeYAMLPath is the forge.yaml whose settings apply: generate's
// -forge-yaml, or the policy path (generate's -policy-path, else the
// supervisor's) when it names a forge.yaml.
func forgeYAMLPath(sub string, generateArgs []string, policyPath string) string {
	if sub == subGenerate {
		if v := generateFlagValue(generateArgs, flagForgeYAML); v != "" {
			return v
		}
		if v := generateFlagValue(generateArgs, "policy-path"); v != "" {
			policyPath = v // generate's own -policy-path wins over the supervisor's
		}
	}
	if forgeyaml.IsForgeYAML(policyPath) {
		return policyPath
	}
	return ""
}

// generateFlagValue finds -name VALUE, -name=VALUE (one or two dashes)
// among generate's arguments, before any "--".
func generateFlagValue(args []string, name string) string {
	for i, a := range args {
		if a == "--" {
			return ""
		}
		trimmed := strings.TrimLeft(a, "-")
		if len(a)-len(trimmed) == 0 || len(a)-len(trimmed) > 2 {
			continue
		}
		if v, ok := strings.CutPrefix(trimmed, name+"="); ok {
			return v
		}
		if trimmed == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// loadRuntimePolicy loads the policy the supervisor enforces: the egress
// section of a forge.yaml, or what policy.Load reads (Rego by .rego,
// otherwise egress_allowlist.json).
func loadRuntimePolicy(path string) (*policy.Policy, error) {
	if !forgeyaml.IsForgeYAML(path) {
		return policy.Load(path)
	}
	proj, err := loadForgeYAML(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p, err := proj.Allowlist.Policy()
	if err != nil {
		return nil, fmt.Errorf("policy: %s: %w", path, err)
	}
	return p, nil
}

// checkForgeSeccomp refuses to start when the policy is a forge.yaml whose
// requirements (docs/seccomp.md) need syscalls the agent's seccomp profile
// does not allow: the profile was not generated from this project, and the
// agent would fail in ways far from the cause.
func checkForgeSeccomp(cfg Config) error {
	if !forgeyaml.IsForgeYAML(cfg.PolicyPath) {
		return nil
	}
	proj, err := loadForgeYAML(cfg.PolicyPath)
	if err != nil {
		return err
	}
	prof, err := jail.ResolveProfile(cfg.SeccompPath)
	if err != nil {
		return err
	}
	allowed := map[string]bool{}
	for _, s := range prof.Syscalls {
		if s.Action == "SCMP_ACT_ALLOW" && len(s.Args) == 0 {
			for _, n := range append([]string{s.Name}, s.Names...) {
				allowed[n] = true
			}
		}
	}
	w := proj.SeccompWidening()
	need := append([]string(nil), w.Syscalls...)
	for _, r := range w.Requires {
		req, _ := deploy.LookupRequirement(r.Name)
		need = append(need, req.Syscalls...)
	}
	for _, n := range need {
		if !allowed[n] {
			return fmt.Errorf("%s needs the syscall %s (supervisor.seccomp or a skill's requires.bins) but the seccomp profile %s does not allow it; write the profile with: forge-supervisor generate seccomp -forge-yaml %s",
				cfg.PolicyPath, n, cfg.SeccompPath, cfg.PolicyPath)
		}
	}
	return nil
}
