package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestGenerateDashboardAndAlerts: both targets are reachable from the
// command line; the alerts take -name and -namespace.
func TestGenerateDashboardAndAlerts(t *testing.T) {
	code, out, stderr := runGen(t, "generate", "dashboard")
	var dash map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &dash) != nil || dash["uid"] != "forge-supervisor" {
		t.Errorf("generate dashboard: exit %d, stderr %q, output not the dashboard JSON", code, stderr)
	}
	code, out, stderr = runGen(t, "generate", "alerts", "-name", "coder", "-namespace", "agents")
	if code != 0 || !strings.Contains(out, "kind: PrometheusRule") || !strings.Contains(out, "name: coder-alerts") ||
		!strings.Contains(out, "namespace: agents") {
		t.Errorf("generate alerts: exit %d, stderr %q, output:\n%s", code, stderr, out)
	}
	if code, out, _ := runGen(t, "generate", "-h"); code != 0 || !strings.Contains(out, "dashboard") || !strings.Contains(out, "alerts") {
		t.Errorf("generate -h does not list dashboard and alerts:\n%s", out)
	}
}
