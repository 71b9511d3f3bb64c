package deploy_test

import (
	"strings"
	"testing"

	"github.com/forge/forge-supervisor/deploy"
	"github.com/forge/forge-supervisor/policy"
)

// TestRego: the generated module is golden, compiles with the supervisor's
// Rego loader and decides names exactly as the JSON policy does.
func TestRego(t *testing.T) {
	js, err := policy.Parse(readPolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	out, err := deploy.Rego(js)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "egress_allowlist.rego", out)
	rg, err := policy.ParseRego("egress_allowlist.rego", out)
	if err != nil {
		t.Fatalf("generated Rego does not load: %v", err)
	}
	for _, c := range []struct {
		name string
		port uint16
	}{
		{"api.example.com", 443}, {"api.example.com", 22}, {"x.github.com", 443}, {"github.com", 443},
		{"api.tavily.com", 80}, {"evil.example", 443}, {"API.EXAMPLE.COM.", 443},
	} {
		want, got := js.CheckName(c.name, c.port), rg.CheckName(c.name, c.port)
		if got != want {
			t.Errorf("%s:%d: Rego %+v, JSON %+v", c.name, c.port, got, want)
		}
	}
	// A Rego policy is not converted again.
	if _, err := deploy.Rego(rg); err == nil || !strings.Contains(err.Error(), "already a Rego policy") {
		t.Errorf("Rego of a Rego policy: err = %v", err)
	}
}
