package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/forge/forge-supervisor/deploy"
	"github.com/forge/forge-supervisor/forgeyaml"
	"github.com/forge/forge-supervisor/jail"
	"github.com/forge/forge-supervisor/policy"
)

// genSource is where generate takes the policy and the seccomp profile
// from: a forge.yaml, or the policy file (-policy-path) and the built-in
// profile as before.
type genSource struct {
	project    *forgeyaml.Project
	policyPath string
}

// generateSource reads -forge-yaml (when given) and lets it fill what the
// command line left open: the agent command (entrypoint or
// supervisor.command), the base image, the object name (agent_id).
func generateSource(forgeYAML string, set map[string]bool, o *deploy.Options) (genSource, error) {
	if forgeYAML == "" && forgeyaml.IsForgeYAML(o.PolicyPath) {
		forgeYAML = o.PolicyPath // a policy path naming a forge.yaml is one
		delete(set, "policy-path")
	}
	if forgeYAML == "" {
		return genSource{policyPath: o.PolicyPath}, nil
	}
	if set["policy-path"] {
		return genSource{}, errors.New("-policy-path and -forge-yaml both give the policy; keep one")
	}
	proj, err := loadForgeYAML(forgeYAML)
	if err != nil {
		return genSource{}, err
	}
	if len(o.AgentCommand) == 0 {
		if o.AgentCommand, err = proj.AgentCommand(); err != nil {
			return genSource{}, err
		}
	}
	if !set["base-image"] {
		o.BaseImage = proj.Supervisor.BaseImage
	}
	if !set["name"] && isLabel(proj.AgentID) {
		o.Name = proj.AgentID
	}
	// The allowlist is what goes into the image and the ConfigMap.
	o.PolicyPath = "egress_allowlist.json"
	if !set["policy-source"] {
		o.PolicySource = "egress_allowlist.json"
	}
	return genSource{project: proj}, nil
}

// isLabel: Kubernetes object names here are DNS-1123 labels.
func isLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return !(r == '-' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')) })
}

// policy is the policy file's bytes: the effective allowlist of the
// forge.yaml, or the -policy-path file checked by the supervisor's loader.
func (s genSource) policy() ([]byte, error) {
	if s.project != nil {
		return s.project.Allowlist.JSON()
	}
	data, _, err := loadPolicy(s.policyPath)
	return data, err
}

func (s genSource) parsedPolicy() (*policy.Policy, error) {
	if s.project != nil {
		return s.project.Allowlist.Policy()
	}
	_, p, err := loadPolicy(s.policyPath)
	return p, err
}

// seccomp is the agent's profile: the built-in one, widened by the
// forge.yaml's requirements and additions.
func (s genSource) seccomp() ([]byte, error) {
	if s.project == nil {
		return deploy.Seccomp()
	}
	base, err := s.project.SeccompBase()
	if err != nil {
		return nil, err
	}
	p, err := deploy.Widen(base, s.project.SeccompWidening())
	if err != nil {
		return nil, err
	}
	out, err := p.MarshalOCI()
	if err != nil {
		return nil, err
	}
	if _, err := jail.ParseProfile(out); err != nil {
		return nil, fmt.Errorf("generated seccomp profile does not load: %w", err)
	}
	return out, nil
}

// networkEgress reads what a NetworkPolicy can express from an allowlist.
func networkEgress(policyPath string, data []byte) (*deploy.Egress, error) {
	if strings.HasSuffix(policyPath, policy.RegoSuffix) {
		return nil, errors.New("-network-policy needs an allowlist (egress_allowlist.json or -forge-yaml), not a Rego policy")
	}
	var a struct {
		Mode           string   `json:"mode"`
		AllowedDomains []string `json:"allowed_domains"`
		ToolDomains    []string `json:"tool_domains"`
		AllDomains     []string `json:"all_domains"`
		AllowedTCP     []string `json:"allowed_tcp"`
		CIDRs          []string `json:"allowed_private_cidrs"`
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("network policy: %w", err) // cannot happen: policy.Parse accepted it
	}
	e := &deploy.Egress{Mode: a.Mode, CIDRs: a.CIDRs}
	names := append(append(append([]string(nil), a.AllowedDomains...), a.ToolDomains...), a.AllDomains...)
	slices.Sort(names)
	e.Domains = slices.Compact(names)
	for _, r := range a.AllowedTCP {
		port := r[strings.LastIndexByte(r, ':')+1:]
		if port == "*" {
			e.AnyTCPPort = true
			continue
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 80 || n == 443 || slices.Contains(e.TCPPorts, uint16(n)) {
			continue
		}
		e.TCPPorts = append(e.TCPPorts, uint16(n))
	}
	slices.Sort(e.TCPPorts)
	return e, nil
}
