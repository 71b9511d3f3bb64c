package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
)

// TestConfigJSONFollowsTheTable: `forge-supervisor config` is the version,
// then one key per setting row, in the table's order, so a new row is a
// new line without any other edit.
func TestConfigJSONFollowsTheTable(t *testing.T) {
	b, err := everyEnvConfig().JSON()
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var keys []string
	if _, err := dec.Token(); err != nil { // {
		t.Fatal(err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"version"}
	for _, s := range settings() {
		want = append(want, settingKey(s.flag))
	}
	if !slices.Equal(keys, want) {
		t.Errorf("config JSON keys:\n got %v\nwant %v", keys, want)
	}
}

// TestSettingRowsAreDistinct: no two rows share a flag or a variable.
func TestSettingRowsAreDistinct(t *testing.T) {
	flags, envs := map[string]bool{}, map[string]bool{}
	for _, s := range settings() {
		if flags[s.flag] || envs[s.env] {
			t.Errorf("setting -%s / %s is defined twice", s.flag, s.env)
		}
		flags[s.flag], envs[s.env] = true, true
		if _, ok := settingByFlag(s.flag); !ok {
			t.Errorf("settingByFlag(%q) finds nothing", s.flag)
		}
	}
}
