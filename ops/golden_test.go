package ops

import (
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge/forge-supervisor/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden compares got with testdata/<name>.golden (or writes it with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestCheckGolden(t *testing.T) {
	gh := netip.MustParseAddr("140.82.112.5")
	for _, tc := range []struct {
		name   string
		policy string
		q      CheckQuery
		json   bool
		exit   int
	}{
		{"allow_name", "allowlist.json", CheckQuery{Name: "api.github.com", Port: 443}, false, ExitOK},
		{"allow_name_ip_json", "allowlist.json", CheckQuery{Name: "api.github.com", Port: 443, IP: gh}, true, ExitOK},
		{"deny_port", "allowlist.json", CheckQuery{Name: "api.github.com", Port: 22, IP: gh}, false, ExitFail},
		{"allow_tcp_rule", "allowlist.json", CheckQuery{Name: "db.example.com", Port: 5432}, false, ExitOK},
		{"deny_metadata", "allowlist.json", CheckQuery{Name: "api.example.com", Port: 80, IP: netip.MustParseAddr("169.254.169.254")}, false, ExitFail},
		{"deny_private", "allowlist.json", CheckQuery{Name: "api.example.com", Port: 443, IP: netip.MustParseAddr("10.1.2.3")}, true, ExitFail},
		{"dns_deny", "allowlist.json", CheckQuery{Name: "evil.test", DNS: true}, false, ExitFail},
		{"dns_allow_json", "allowlist.json", CheckQuery{Name: "x.github.com", DNS: true}, true, ExitOK},
		{"rego_git", "git.rego", CheckQuery{Name: "github.com", Port: 443, IP: netip.MustParseAddr("198.51.100.10"), Exe: "/usr/bin/git"}, false, ExitOK},
		{"rego_curl_json", "git.rego", CheckQuery{Name: "github.com", Port: 443, IP: netip.MustParseAddr("198.51.100.10"), Exe: "/usr/bin/curl"}, true, ExitFail},
		{"rego_no_exe", "git.rego", CheckQuery{Name: "github.com", Port: 443}, false, ExitFail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := policy.Load(filepath.Join("testdata", "check", tc.policy))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			code := Check(&out, p, tc.q, tc.json)
			if code != tc.exit {
				t.Errorf("exit %d, want %d", code, tc.exit)
			}
			fmt.Fprintf(&out, "exit %d\n", code)
			golden(t, "check/"+tc.name, out.Bytes())
		})
	}
}

func TestLintGolden(t *testing.T) {
	for _, tc := range []struct {
		file string
		json bool
		exit int
	}{
		{"messy.json", false, ExitOK},
		{"messy.json", true, ExitOK},
		{"clean.json", false, ExitOK},
		{"denyall.json", false, ExitOK},
		{"broken.json", false, ExitFail},
		{"git.rego", false, ExitOK},
	} {
		name := strings.TrimSuffix(tc.file, filepath.Ext(tc.file)) + map[bool]string{true: "_json"}[tc.json]
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			code := Lint(&out, filepath.Join("testdata", "lint", tc.file), LoadFile, tc.json)
			if code != tc.exit {
				t.Errorf("exit %d, want %d", code, tc.exit)
			}
			fmt.Fprintf(&out, "exit %d\n", code)
			golden(t, "lint/"+name, out.Bytes())
		})
	}
}

// TestSuggestGolden: the patch is golden, applies with patch(1), and the
// patched policy allows every suggested entry.
func TestSuggestGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy string // "" for a policy file that does not exist yet
	}{
		{"dryrun", "egress_allowlist.json"},
		{"bootstrap", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join("testdata", "suggest", tc.name)
			in, err := os.Open(filepath.Join(dir, "audit.ndjson"))
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			work := t.TempDir()
			target := filepath.Join(work, "egress_allowlist.json")
			if tc.policy != "" {
				b, err := os.ReadFile(filepath.Join(dir, tc.policy))
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(target, b, 0o644)
			}
			var out bytes.Buffer
			if code := Suggest(&out, in, target, LoadFile); code != ExitOK {
				t.Fatalf("exit %d\n%s", code, out.String())
			}
			got := strings.ReplaceAll(out.String(), work+"/", "")
			golden(t, "suggest/"+tc.name, []byte(got))
			applyPatch(t, work, out.Bytes())
			p, err := policy.Load(target)
			if err != nil {
				t.Fatalf("patched policy: %v", err)
			}
			for _, want := range []struct {
				name string
				port uint16
			}{{"pypi.org", 443}, {"files.pythonhosted.org", 443}, {"db.example.com", 8080}, {"telemetry.example.net", 0}} {
				if v := p.CheckName(want.name, want.port); !v.Allow {
					t.Errorf("patched policy denies %s:%d: %+v", want.name, want.port, v)
				}
			}
		})
	}
}

func applyPatch(t *testing.T, dir string, diff []byte) {
	t.Helper()
	if _, err := exec.LookPath("patch"); err != nil {
		t.Log("no patch(1): the patch is not applied")
		return
	}
	cmd := exec.Command("patch", "-p1", "--batch", "--forward")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(diff)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("patch -p1: %v\n%s\n%s", err, out, diff)
	}
}

// FuzzSuggest: any input, as NDJSON or a /denials array, gives a report
// and never a crash.
func FuzzSuggest(f *testing.F) {
	seed, _ := os.ReadFile(filepath.Join("testdata", "suggest", "dryrun", "audit.ndjson"))
	f.Add(seed)
	f.Add([]byte(`[{"msg":"egress_denied","dst_ip":"198.51.100.7","dst_port":5432,"reason":"no_name_for_ip"}]`))
	f.Add([]byte(`{"msg":"dns_denied","qname":"a..b","reason":"not_in_allowlist"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		Suggest(&out, bytes.NewReader(in), filepath.Join(t.TempDir(), "new.json"), LoadFile)
	})
}

// The patch applies to a policy file without a final newline (as many
// editors and generators write it).
func TestSuggestNoFinalNewline(t *testing.T) {
	work := t.TempDir()
	target := filepath.Join(work, "egress_allowlist.json")
	os.WriteFile(target, []byte(`{"mode":"allowlist",
 "allowed_domains":["allowed.test"]}`), 0o644)
	var out bytes.Buffer
	in := strings.NewReader(`{"msg":"egress_denied","sni":"pypi.org","dst_port":443,"reason":"not_in_allowlist"}`)
	if code := Suggest(&out, in, target, LoadFile); code != ExitOK {
		t.Fatalf("exit %d\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "\\ No newline at end of file") {
		t.Errorf("no marker for the missing newline:\n%s", out.String())
	}
	applyPatch(t, work, out.Bytes())
	p, err := policy.Load(target)
	if err != nil || !p.CheckName("pypi.org", 443).Allow {
		t.Errorf("patched policy: %v", err)
	}
}
