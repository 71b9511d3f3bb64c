package deploy

import (
	"fmt"

	"github.com/forge/forge-supervisor/policy"
)

// Rego renders p (an allowlist loaded from egress_allowlist.json) as a Rego
// module, then compiles the result with the supervisor's own Rego loader:
// what is written is a policy the supervisor accepts, never text that would
// only fail at startup.
func Rego(p *policy.Policy) ([]byte, error) {
	out, err := policy.GenerateRego(p)
	if err != nil {
		return nil, err
	}
	if _, err := policy.ParseRego("generated.rego", out); err != nil {
		return nil, fmt.Errorf("deploy: generated Rego does not compile: %w", err)
	}
	return out, nil
}
