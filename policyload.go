package main

import (
	"go.uber.org/zap"

	"github.com/forge/forge-supervisor/forgeyaml"
	"github.com/forge/forge-supervisor/policy"
)

// loadPolicyLogged loads the policy (loadRuntimePolicy: egress_allowlist.json,
// Rego or forge.yaml) with the configured strictness for JSON files, and
// logs each of its warnings (entries skipped, unknown fields, private
// destinations denied by default) as one policy_warning line, at startup
// and on every reload, so what a Forge-written file did not mean is said
// where the operator looks.
func loadPolicyLogged(cfg Config, log *zap.Logger) (*policy.Policy, error) {
	var p *policy.Policy
	var err error
	if cfg.StrictPolicy && !forgeyaml.IsForgeYAML(cfg.PolicyPath) {
		p, err = policy.LoadWith(cfg.PolicyPath, policy.Options{Strict: true})
	} else {
		p, err = loadRuntimePolicy(cfg.PolicyPath)
	}
	if err != nil {
		return nil, err
	}
	for _, w := range p.Warnings() {
		log.Warn("policy_warning", zap.String("path", cfg.PolicyPath), zap.String("warning", w))
	}
	return p, nil
}

// wildcardBudget is the DNS proxy's WildcardBudget for the configured
// budget (0 in the configuration turns the guard off), and says once at
// startup when the deprecated fixed caps are still set.
func wildcardBudget(cfg Config, log *zap.Logger) int {
	if cfg.DNSWildcardMaxLabels != 0 || cfg.DNSWildcardMaxLabelLen != 0 {
		log.Warn("setting_deprecated",
			zap.String("setting", "FORGE_SUPERVISOR_DNS_WILDCARD_MAX_LABELS / _MAX_LABEL_LEN"),
			zap.String("warning", "fixed wildcard label caps deny real cloud names; they still apply as set, but FORGE_SUPERVISOR_DNS_WILDCARD_BUDGET (a per-rule budget of new name bytes per minute) replaces them: unset them"))
	}
	if cfg.DNSWildcardBudget == 0 {
		return -1
	}
	return cfg.DNSWildcardBudget
}
