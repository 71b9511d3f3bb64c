package forgeyaml

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/forge/forge-supervisor/policy"
)

// Allowlist is the effective egress_allowlist.json: Forge's five keys
// exactly as Forge's build writes them, then the rules Forge's file drops
// and the supervisor enforces.
type Allowlist struct {
	Profile        string   `json:"profile"`
	Mode           string   `json:"mode"`
	AllowedDomains []string `json:"allowed_domains"`
	ToolDomains    []string `json:"tool_domains"`
	AllDomains     []string `json:"all_domains"`
	// AllowedTCP holds egress.allowed_tcp, then one rule per endpoint on a
	// port other than 80/443 or at an IP literal.
	AllowedTCP          []string `json:"allowed_tcp"`
	AllowedPrivateCIDRs []string `json:"allowed_private_cidrs"`
	// AllowPrivateIPs is written only when forge.yaml sets it, so "unset"
	// keeps the meaning the policy gives a missing key.
	AllowPrivateIPs *bool `json:"allow_private_ips,omitempty"`
}

// JSON renders the allowlist, indented, with empty lists as [] (as Forge
// does), and checks that the supervisor's loader accepts it.
func (a Allowlist) JSON() ([]byte, error) {
	for _, l := range []*[]string{&a.AllowedDomains, &a.ToolDomains, &a.AllDomains, &a.AllowedTCP, &a.AllowedPrivateCIDRs} {
		if *l == nil {
			*l = []string{}
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(a); err != nil {
		return nil, fmt.Errorf("forge.yaml: encode allowlist: %w", err)
	}
	if _, err := policy.Parse(b.Bytes()); err != nil {
		return nil, fmt.Errorf("forge.yaml: the effective allowlist does not load: %w", err)
	}
	return b.Bytes(), nil
}

// Policy is the allowlist loaded by the supervisor's policy package.
func (a Allowlist) Policy() (*policy.Policy, error) {
	data, err := a.JSON()
	if err != nil {
		return nil, err
	}
	return policy.Parse(data)
}
