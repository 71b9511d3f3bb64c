package main

import (
	"reflect"
	"testing"
)

// TestSettingTextRoundTrip: every setting has a text form (settingText)
// that its parser reads back to the same value, so generate never writes
// an empty or wrong value into a manifest.
func TestSettingTextRoundTrip(t *testing.T) {
	for _, cfg := range []Config{defaultConfig(), everyEnvConfig()} {
		var back Config
		for _, s := range settings() {
			if err := s.parse(&back, cfg.settingText(s.flag)); err != nil {
				t.Errorf("-%s: settingText %q does not parse: %v", s.flag, cfg.settingText(s.flag), err)
			}
		}
		if !reflect.DeepEqual(normalizeEmpty(back), normalizeEmpty(cfg)) {
			t.Errorf("round trip:\n got %+v\nwant %+v", back, cfg)
		}
	}
}

// normalizeEmpty treats nil and empty lists alike.
func normalizeEmpty(c Config) Config {
	if len(c.DNSUpstreams) == 0 {
		c.DNSUpstreams = nil
	}
	if len(c.InboundPorts) == 0 {
		c.InboundPorts = nil
	}
	if len(c.AllowedLocalPorts) == 0 {
		c.AllowedLocalPorts = nil
	}
	return c
}
