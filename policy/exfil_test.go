package policy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

// loadHostnames reads testdata/hostnames.txt: one real host name a line.
func loadHostnames(t testing.TB) []string {
	t.Helper()
	f, err := os.Open("testdata/hostnames.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			names = append(names, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// registrable is the name's last two labels: the suffix a Forge user
// writes a wildcard for ("*.amazonaws.com", "*.cluster.local").
func registrable(name string) string {
	labels := strings.Split(name, ".")
	return strings.Join(labels[max(0, len(labels)-2):], ".")
}

// corpusPolicy allows the corpus as a user would: a wildcard for each
// registrable suffix, and the two-label names exactly.
func corpusPolicy(t testing.TB, names []string) *Policy {
	t.Helper()
	rules := map[string]bool{}
	for _, n := range names {
		if s := registrable(n); s == n {
			rules[n] = true
		} else {
			rules["*."+s] = true
		}
	}
	var list []string
	for r := range rules {
		list = append(list, r)
	}
	doc, _ := json.Marshal(map[string]any{"mode": "allowlist", "allowed_domains": list, "allow_private_ips": true})
	return mustParse(t, string(doc))
}

// TestHostnameCorpusUnderGuard: every name of the corpus (>= 2,000 real
// names of clouds, CDNs, registries, SaaS APIs) is a valid name in normal
// form, allowed by its wildcard, and admitted by the exfiltration guard at
// its defaults when the corpus is resolved in a mixed order at two new
// names a second (7,200 an hour, far more than an agent resolves): zero
// false denials. The fixed caps it replaces (6 labels, 32-octet labels)
// denied some of these names outright; the test counts them.
func TestHostnameCorpusUnderGuard(t *testing.T) {
	names := loadHostnames(t)
	if len(names) < 2000 {
		t.Fatalf("corpus has %d names, want at least 2000", len(names))
	}
	p := corpusPolicy(t, names)
	clock := time.Unix(1_700_000_000, 0)
	g := NewExfilGuard(0, func() time.Time { return clock })
	order := rand.New(rand.NewPCG(1, 2)).Perm(len(names))
	oldCaps := 0
	for _, i := range order {
		name := names[i]
		clock = clock.Add(500 * time.Millisecond)
		n, err := NormalizeName(name)
		if err != nil || n != name {
			t.Errorf("NormalizeName(%q) = %q, %v; want it unchanged", name, n, err)
			continue
		}
		v := p.CheckName(name, 443)
		if !v.Allow {
			t.Errorf("CheckName(%q) = %+v", name, v)
			continue
		}
		if key, cost, ok := p.ExfilCharge(name, v); ok {
			if !g.Admit(name, key, cost) {
				t.Errorf("guard denied %q (%s, %d bytes): a false denial", name, key, cost)
			}
			if exceedsOldCaps(name) {
				oldCaps++
			}
		}
	}
	t.Logf("%d names, none denied; the old fixed caps would have denied %d of them", len(names), oldCaps)
	if oldCaps == 0 {
		t.Error("the corpus holds no name the old caps denied (7-label ELB and Redis names, long bucket names): it proves nothing about them")
	}
}

// exceedsOldCaps: the fixed wildcard caps this guard replaced.
func exceedsOldCaps(name string) bool {
	labels := strings.Split(name, ".")
	if len(labels) > 6 {
		return true
	}
	for _, l := range labels {
		if len(l) > 32 {
			return true
		}
	}
	return false
}

// TestExfilBoundMeasured measures what an agent encoding data in names
// gets through the guard at its defaults: as many fresh 200-byte names as
// it can send (one every 10 ms) for ten minutes, under one wildcard rule
// and under eight. The bound README states is what this measures: per
// rule at most DefaultWildcardBudget bytes a minute after a first burst of
// the same, all rules together totalBudgetFactor times that.
func TestExfilBoundMeasured(t *testing.T) {
	for _, rules := range []int{1, 8} {
		var wild []string
		for r := range rules {
			wild = append(wild, fmt.Sprintf("*.zone%d.example", r))
		}
		doc, _ := json.Marshal(map[string]any{"mode": "allowlist", "allowed_domains": wild})
		p := mustParse(t, string(doc))
		clock := time.Unix(1_700_000_000, 0)
		g := NewExfilGuard(0, func() time.Time { return clock })
		rng := rand.New(rand.NewPCG(3, 4))
		const minutes = 10
		admitted, attempts := 0, 0
		for end := clock.Add(minutes * time.Minute); clock.Before(end); clock = clock.Add(10 * time.Millisecond) {
			name := randomLabels(rng, 3, 63) + fmt.Sprintf(".zone%d.example", attempts%rules)
			attempts++
			v := p.CheckName(name, 0)
			key, cost, ok := p.ExfilCharge(name, v)
			if !ok {
				t.Fatalf("%s not charged: %+v", name, v)
			}
			if g.Admit(name, key, cost) {
				admitted += cost
			}
		}
		limit := DefaultWildcardBudget * min(rules, totalBudgetFactor) * (minutes + 1)
		t.Logf("%d wildcard rule(s): %d of %d names admitted, %d bytes in %d minutes = %d bytes/minute (bound %d/minute after a first burst)",
			rules, admitted/(3*64), attempts, admitted, minutes, admitted/minutes, DefaultWildcardBudget*min(rules, totalBudgetFactor))
		if admitted > limit {
			t.Errorf("%d bytes admitted in %d minutes, bound %d", admitted, minutes, limit)
		}
		if admitted < limit*8/10 {
			t.Errorf("%d bytes admitted in %d minutes: the guard is tighter than documented (%d)", admitted, minutes, limit)
		}
	}
}

func randomLabels(rng *rand.Rand, n, size int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	labels := make([]string, n)
	for i := range labels {
		b := make([]byte, size)
		for j := range b {
			b[j] = alphabet[rng.IntN(len(alphabet))]
		}
		labels[i] = string(b)
	}
	return strings.Join(labels, ".")
}

// TestExfilGuardUnits: repeats are free, exact rules and dev-open are not
// charged, allowed_tcp wildcards are, a nil guard admits.
func TestExfilGuardUnits(t *testing.T) {
	p := mustParse(t, `{"mode":"allowlist","allowed_domains":["*.w.example","exact.example"],"allowed_tcp":["*.t.example:5432"]}`)
	for _, tt := range []struct {
		name    string
		port    uint16
		key     string
		cost    int
		charged bool
	}{
		{"a.w.example", 0, "w.example", 2, true},
		{"abc.def.w.example", 443, "w.example", 8, true},
		{"x.t.example", 5432, "t.example", 2, true},
		{"exact.example", 443, "", 0, false},
	} {
		v := p.CheckName(tt.name, tt.port)
		key, cost, charged := p.ExfilCharge(tt.name, v)
		if key != tt.key || cost != tt.cost || charged != tt.charged {
			t.Errorf("ExfilCharge(%s) = %q %d %t, want %q %d %t", tt.name, key, cost, charged, tt.key, tt.cost, tt.charged)
		}
	}
	if _, _, charged := mustParse(t, `{"mode":"dev-open"}`).ExfilCharge("a.b.c", Verdict{Allow: true, Reason: ReasonDevOpen}); charged {
		t.Error("dev-open charged")
	}
	clock := time.Unix(0, 0)
	g := NewExfilGuard(100, func() time.Time { return clock })
	if !g.Admit("a.w.example", "w.example", 60) || !g.Admit("a.w.example", "w.example", 60) {
		t.Error("a repeated name must be free")
	}
	if g.Admit("b.w.example", "w.example", 60) {
		t.Error("over budget admitted")
	}
	clock = clock.Add(36 * time.Second) // 60 bytes back
	if !g.Admit("b.w.example", "w.example", 60) {
		t.Error("refilled budget refused")
	}
	if !g.LogRefusal("*.w.example") || g.LogRefusal("*.w.example") || !g.LogRefusal("*.other.example") {
		t.Error("LogRefusal: once per rule per window")
	}
	clock = clock.Add(refusalLogEvery)
	if !g.LogRefusal("*.w.example") {
		t.Error("LogRefusal: not again after the window")
	}
	var none *ExfilGuard
	if !none.Admit("x", "k", 1<<20) || none.LogRefusal("r") || NewExfilGuard(-1, nil) != nil {
		t.Error("a nil guard must admit")
	}
	for rule, want := range map[string]string{"*.a.b": "a.b", "allowed_tcp:*.a.b:443": "a.b", "allowed_tcp:*.a.b:*": "a.b", "a.b": "", "allowed_tcp:a.b:1": "", "*.": ""} {
		if got, _ := WildcardSuffix(rule); got != want {
			t.Errorf("WildcardSuffix(%q) = %q, want %q", rule, got, want)
		}
	}
}
