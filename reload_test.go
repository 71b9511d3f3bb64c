package main

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
)

// TestPolicyReloadBrokenFileKeepsOld: a broken file on disk keeps the
// policy in force, and the log, the metrics and /readyz's detail say so;
// the next good file clears it.
func TestPolicyReloadBrokenFileKeepsOld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "egress_allowlist.json")
	write := func(body string) {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"profile":"standard","mode":"allowlist","allowed_domains":["allowed.test"],"tool_domains":[],"all_domains":["allowed.test"]}`)
	pol, err := policy.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var current atomic.Pointer[policy.Policy]
	current.Store(pol)
	var logBuf strings.Builder
	log, _ := obs.NewLogger(&logBuf, "info")
	m := obs.NewMetrics()
	health := obs.NewHealth(obs.PartPolicy)
	swaps := 0
	reload := policyReload(path, policy.Load, &current, obs.NewAuditor(log, m, nil), health, func() { swaps++ })

	write(`{"profile":"standard","mode":`)
	if err := reload(); err == nil {
		t.Fatal("reload of a broken file: nil error")
	}
	if current.Load() != pol {
		t.Fatal("a broken file replaced the policy")
	}
	st := health.Readiness().Parts[obs.PartPolicy]
	if !st.OK || !strings.Contains(st.Detail, "last reload failed") || !strings.Contains(st.Detail, path) {
		t.Errorf("readyz policy part %+v: want ready, saying the reload failed and naming the file", st)
	}
	if !strings.Contains(logBuf.String(), `"msg":"policy_reload_failed"`) || !strings.Contains(logBuf.String(), `"previous_policy_kept":true`) {
		t.Errorf("log: %s", logBuf.String())
	}
	if v := gauge(t, m, "forge_supervisor_policy_last_reload_successful"); v != 0 {
		t.Errorf("policy_last_reload_successful = %v after a failure, want 0", v)
	}

	write(`{"profile":"strict","mode":"deny-all","allowed_domains":[],"tool_domains":[],"all_domains":[]}`)
	if err := reload(); err != nil {
		t.Fatal(err)
	}
	if current.Load() == pol || current.Load().Mode() != "deny-all" {
		t.Error("a good file did not replace the policy")
	}
	if swaps != 1 {
		t.Errorf("onSwap called %d times, want once (the good reload only)", swaps)
	}
	if st := health.Readiness().Parts[obs.PartPolicy]; st.Detail != "deny-all" {
		t.Errorf("readyz policy part %+v after a good reload", st)
	}
	if v := gauge(t, m, "forge_supervisor_policy_last_reload_successful"); v != 1 {
		t.Errorf("policy_last_reload_successful = %v after a success, want 1", v)
	}
}

func gauge(t *testing.T, m *obs.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
