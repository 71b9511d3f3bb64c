package policy

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

// refNameMatches: exact name, or "*.suffix" matching strict subdomains.
func refNameMatches(entry, name string) bool {
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
		i := strings.LastIndexByte(e, ':')
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
	for _, dir := range []string{"testdata/good", "testdata/bad"} {
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
		var ref refPolicy
		if err := json.Unmarshal(data, &ref); err != nil {
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
