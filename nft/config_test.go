package nft

import (
	"strings"
	"testing"

	"github.com/google/nftables/expr"
)

func validConfig() Config {
	return Config{AgentUID: 1000, AgentGID: 1000, ProxyPort: 15001, DNSPort: 15002, Mark: DefaultMark}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // substring of the error; "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"custom table", func(c *Config) { c.Table = "other" }, ""},
		{"uid 0", func(c *Config) { c.AgentUID = 0 }, "agent uid is 0 (root)"},
		{"gid 0", func(c *Config) { c.AgentGID = 0 }, "agent gid is 0 (root)"},
		{"no proxy port", func(c *Config) { c.ProxyPort = 0 }, "proxy port is 0"},
		{"no dns port", func(c *Config) { c.DNSPort = 0 }, "dns port is 0"},
		{"same ports", func(c *Config) { c.DNSPort = c.ProxyPort }, "proxy port and dns port are both 15001"},
		{"mark 0", func(c *Config) { c.Mark = 0 }, "mark is 0: every unmarked packet would be exempt"},
		{"negative netns", func(c *Config) { c.NetNS = -1 }, "netns fd -1 is negative"},
		{"long table", func(c *Config) { c.Table = strings.Repeat("t", 256) }, "table name is 256 bytes, the kernel allows 255"},
		{"NUL in table", func(c *Config) { c.Table = "a\x00b" }, "table name contains a NUL byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.modify(&cfg)
			got, err := cfg.validated()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("validated: %v", err)
				}
				if got.Table == "" {
					t.Fatal("table name not defaulted")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
			// Every entry point refuses the config before touching the kernel.
			for name, f := range map[string]func(Config) error{"Install": Install, "Remove": Remove} {
				if err := f(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s error = %v, want it to contain %q", name, err, tt.want)
				}
			}
			if _, err := Rules(cfg); err == nil {
				t.Error("Rules accepted an invalid config")
			}
		})
	}
}

func TestConfigValidationReportsEveryProblem(t *testing.T) {
	_, err := Config{}.validated()
	if err == nil {
		t.Fatal("zero Config accepted")
	}
	for _, want := range []string{"agent uid is 0", "agent gid is 0", "proxy port is 0", "dns port is 0", "mark is 0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestRulesShape checks the properties the security argument rests on,
// independent of the exact expressions: the mark exemption comes first in
// each base chain, base chains only jump to the agent chains, and the
// agent filter chain ends in an unconditional reject.
func TestRulesShape(t *testing.T) {
	rules, err := Rules(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	wantCounts := map[string]int{ChainNATOutput: 3, ChainAgentNAT: 4, ChainFilterOutput: 11, ChainAgentFilter: 16,
		ChainFilterPost: 3, ChainAgentPost: 3, ChainFilterEarly: 3, ChainAgentEarly: 1}
	if len(rules) != len(wantCounts) {
		t.Fatalf("got %d chains, want %d", len(rules), len(wantCounts))
	}
	for chain, n := range wantCounts {
		if len(rules[chain]) != n {
			t.Errorf("chain %s has %d rules, want %d", chain, len(rules[chain]), n)
		}
	}
	base := map[string]struct {
		markVerdict expr.VerdictKind
		target      string
	}{
		ChainNATOutput:    {expr.VerdictReturn, ChainAgentNAT},
		ChainFilterOutput: {expr.VerdictAccept, ChainAgentFilter},
		ChainFilterPost:   {expr.VerdictAccept, ChainAgentPost},
		ChainFilterEarly:  {expr.VerdictAccept, ChainAgentEarly},
	}
	for chain, want := range base {
		rs := rules[chain]
		first := rs[0]
		meta, ok := first[0].(*expr.Meta)
		if !ok || meta.Key != expr.MetaKeyMARK {
			t.Errorf("%s: first rule does not match the mark: %#v", chain, first[0])
		}
		if v := first[len(first)-1].(*expr.Verdict); v.Kind != want.markVerdict {
			t.Errorf("%s: mark verdict %d, want %d", chain, v.Kind, want.markVerdict)
		}
		for i, r := range rs[1:3] {
			v, ok := r[len(r)-1].(*expr.Verdict)
			if !ok || v.Kind != expr.VerdictJump || v.Chain != want.target {
				t.Errorf("%s rule %d: ends in %#v, want jump %s", chain, i+1, r[len(r)-1], want.target)
			}
		}
	}
	last := rules[ChainAgentFilter][len(rules[ChainAgentFilter])-1]
	if len(last) != 1 {
		t.Fatalf("last agent filter rule is conditional: %#v", last)
	}
	if r, ok := last[0].(*expr.Reject); !ok || *r != *adminProhibited() {
		t.Fatalf("last agent filter rule is %#v, want reject with icmpx admin-prohibited", last[0])
	}
}

// TestRulesAreFreshCopies makes sure callers cannot alter what a later
// Install sends.
func TestRulesAreFreshCopies(t *testing.T) {
	a, err := Rules(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	a[ChainAgentFilter][0] = nil
	b, err := Rules(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	if b[ChainAgentFilter][0] == nil {
		t.Fatal("Rules shares state between calls")
	}
}
