package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestWildcardBudgetSetting: 0 turns the guard off; the deprecated fixed
// caps still reach the DNS proxy when set, with one warning.
func TestWildcardBudgetSetting(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	log := zap.New(core)
	if got := wildcardBudget(Config{DNSWildcardBudget: 4096}, log); got != 4096 || logs.Len() != 0 {
		t.Errorf("default: %d, %d warnings", got, logs.Len())
	}
	if got := wildcardBudget(Config{}, log); got >= 0 {
		t.Errorf("0 must turn the guard off, got %d", got)
	}
	wildcardBudget(Config{DNSWildcardBudget: 4096, DNSWildcardMaxLabels: 6}, log)
	if w := logs.FilterMessage("setting_deprecated").All(); len(w) != 1 {
		t.Errorf("deprecated caps: %d warnings, want 1", len(w))
	}
}

// TestPolicyWarningsLogged: each warning of the loaded policy is one
// policy_warning line; strict makes an unknown field a load error.
func TestPolicyWarningsLogged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "egress_allowlist.json")
	if err := os.WriteFile(path, []byte(`{"mode":"allowlist","version":2,"allowed_domains":["$X"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.WarnLevel)
	if _, err := loadPolicyLogged(Config{PolicyPath: path}, zap.New(core)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range logs.FilterMessage("policy_warning").All() {
		got = append(got, e.ContextMap()["warning"].(string))
	}
	if len(got) != 3 || !strings.Contains(strings.Join(got, "\n"), "version: unknown field") {
		t.Errorf("warnings: %q", got)
	}
	if _, err := loadPolicyLogged(Config{PolicyPath: path, StrictPolicy: true}, zap.New(core)); err == nil || !strings.Contains(err.Error(), "version: unknown field") {
		t.Errorf("strict: %v", err)
	}
}
