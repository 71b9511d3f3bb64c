package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
)

// refPolicy is an independent, naive model of the allowlist: it decodes
// the document with plain encoding/json and matches by looping over the
// entries. FuzzParse holds the real matcher to it.
type refPolicy struct {
	Mode           string   `json:"mode"`
	AllowedDomains []string `json:"allowed_domains"`
	ToolDomains    []string `json:"tool_domains"`
	AllDomains     []string `json:"all_domains"`
	AllowedTCP     []string `json:"allowed_tcp"`
}

// decodeRef decodes the document as the naive model reads it: exact
// field names (encoding/json alone would fold case), after a byte-order mark.
func decodeRef(data []byte) (refPolicy, error) {
	var ref refPolicy
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimPrefix(data, []byte(utf8BOM)), &fields); err != nil {
		return ref, err
	}
	for key, dst := range map[string]any{"mode": &ref.Mode, "allowed_domains": &ref.AllowedDomains,
		"tool_domains": &ref.ToolDomains, "all_domains": &ref.AllDomains, "allowed_tcp": &ref.AllowedTCP} {
		if raw, ok := fields[key]; ok {
			if err := json.Unmarshal(raw, dst); err != nil {
				return ref, err
			}
		}
	}
	return ref, nil
}

// refNameMatches: exact name, or "*.suffix" matching strict subdomains,
// of the entry trimmed as Forge trims it.
func refNameMatches(entry, name string) bool {
	entry = strings.TrimFunc(entry, func(r rune) bool { return unicode.IsSpace(r) || r == '\ufeff' })
	wildcard := strings.HasPrefix(entry, "*.")
	key, err := NormalizeName(strings.TrimPrefix(entry, "*."))
	if err != nil {
		return false
	}
	if wildcard {
		return strings.HasSuffix(name, "."+key)
	}
	return name == key
}

func (r *refPolicy) allows(name string, port uint16) bool {
	for _, list := range [][]string{r.AllowedDomains, r.ToolDomains, r.AllDomains} {
		for _, e := range list {
			if refNameMatches(e, name) && (port == 0 || port == 80 || port == 443) {
				return true
			}
		}
	}
	for _, e := range r.AllowedTCP {
		e = strings.TrimFunc(e, func(r rune) bool { return unicode.IsSpace(r) || r == '\ufeff' })
		i := strings.LastIndexByte(e, ':')
		if i < 0 {
			continue // skipped entries ("", "$VAR")
		}
		host, ports := e[:i], e[i+1:]
		if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
			continue
		}
		if refNameMatches(host, name) && (port == 0 || ports == "*" || ports == portLabel(port, false)) {
			return true
		}
	}
	return false
}

func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/good", "testdata/bad", "testdata/warn"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, path := range files {
			if data, err := os.ReadFile(path); err == nil {
				f.Add(data)
			}
		}
	}
	f.Add([]byte(testPolicy))
	f.Add([]byte(`{"mode":"allowlist","allowed_domains":["*.a.b","a.b","xn--bcher-kva.example"],"allowed_tcp":["*.b:1","a.b:*"]}`))

	metadata := netip.MustParseAddr("169.254.169.254")
	loopback := netip.MustParseAddr("::ffff:127.0.0.1")
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a policy with an error")
			}
			return
		}
		ref, err := decodeRef(data)
		if err != nil {
			t.Fatalf("Parse accepted what encoding/json rejects: %v", err)
		}
		if string(p.Mode()) != ref.Mode {
			t.Fatalf("mode %q, document says %q", p.Mode(), ref.Mode)
		}

		probes := []string{"zz-fuzz-probe.invalid", "a.zz-fuzz-probe.invalid"}
		for _, rule := range p.Names() {
			key := strings.TrimPrefix(rule, "*.")
			probes = append(probes, key, "x."+key, "x.y."+key)
			if i := strings.IndexByte(key, '.'); i >= 0 {
				probes = append(probes, key[i+1:])
			}
		}
		ctx := context.Background()
		for _, name := range probes {
			for _, port := range []uint16{0, 80, 443, 22, 1, 5432} {
				v := p.CheckName(name, port)
				if v.Allow && v.Rule == "" && p.Mode() == ModeAllowlist {
					t.Fatalf("CheckName(%q, %d) allows without a rule", name, port)
				}
				switch p.Mode() {
				case ModeAllowlist:
					if want := ref.allows(name, port); v.Allow != want {
						t.Fatalf("CheckName(%q, %d) = %+v; naive model says allow=%t", name, port, v, want)
					}
				case ModeDenyAll:
					if v.Allow {
						t.Fatalf("deny-all allowed %q", name)
					}
				}
				if port == 0 {
					continue
				}
				for _, ip := range []netip.Addr{metadata, loopback} {
					if v := p.Decide(ctx, Request{Name: name, IP: ip, Port: port}, nil); v.Allow {
						t.Fatalf("Decide allowed %s to always-blocked %s: %+v", name, ip, v)
					}
				}
			}
		}
	})
}
