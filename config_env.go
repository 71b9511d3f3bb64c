package main

import (
	"github.com/forge/forge-supervisor/deploy"
)

// settingText is the effective value of the setting with this flag, in the
// text form its parser reads back: what generate writes into manifests so
// that every setting given before "generate" reaches the deployment.
func (c Config) settingText(flag string) string {
	s, ok := settingByFlag(flag)
	if !ok {
		return "" // not a setting: TestSettingTextRoundTrip fails
	}
	return s.text(c)
}

// deploySettings are every setting as environment variables for the
// manifests, each marked when it holds the supervisor's default.
func (c Config) deploySettings() []deploy.Setting {
	var def Config
	for _, s := range settings() {
		_ = s.parse(&def, s.def) // defaults always parse (TestParseConfigDefaults)
	}
	var out []deploy.Setting
	for _, s := range settings() {
		v := s.text(c)
		out = append(out, deploy.Setting{Env: s.env, Value: v, IsDefault: v == s.text(def)})
	}
	return out
}
