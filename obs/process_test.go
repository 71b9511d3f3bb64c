package obs

import (
	"encoding/json"
	"testing"
)

// With identity on, every egress and DNS line carries pid, exe and
// process_unknown, and /denials shows them exactly as the line does.
func TestProcessFields(t *testing.T) {
	a, buf, _, d := newTestAuditor(t)
	git := &Process{PID: 42, Exe: "/usr/bin/git"}
	gone := &Process{Unknown: "owner_exited"}
	a.Egress(Flow{Proto: "tls", SNI: "github.com", DstIP: "198.51.100.3", DstPort: 443, Reason: "not_git", Process: git})
	a.Egress(Flow{Allowed: true, Proto: "tls", SNI: "github.com", DstIP: "198.51.100.3", DstPort: 443, Reason: "git_https", Process: git})
	a.DNS(DNSQuery{QName: "github.com", QType: "A", Reason: "process_unknown", Process: gone})
	a.Egress(Flow{Proto: "tls", SNI: "x.test", DstIP: "198.51.100.3", DstPort: 443, Reason: "not_in_allowlist"})

	lines := buf.lines(t)
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4", len(lines))
	}
	for i, want := range []struct {
		pid     float64
		exe     string
		unknown string
	}{{42, "/usr/bin/git", ""}, {42, "/usr/bin/git", ""}, {0, "", "owner_exited"}} {
		l := lines[i]
		if l["pid"] != want.pid || l["exe"] != want.exe || l["process_unknown"] != want.unknown {
			t.Errorf("line %d: pid %v exe %v process_unknown %v, want %v", i, l["pid"], l["exe"], l["process_unknown"], want)
		}
	}
	for _, k := range []string{"pid", "exe", "process_unknown"} {
		if _, ok := lines[3][k]; ok {
			t.Errorf("identity off, yet the line has %q", k)
		}
	}
	// /denials: the three denials, newest first, field for field.
	recent := d.Recent(0)
	if len(recent) != 3 {
		t.Fatalf("%d denials, want 3", len(recent))
	}
	for i, li := range []int{3, 2, 0} {
		raw, err := json.Marshal(recent[i])
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		line := lines[li]
		delete(line, "level")
		assertSameObject(t, line["msg"].(string), line, got)
	}
}
