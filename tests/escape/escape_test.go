// Package escape is the adversarial suite: the agent that forge-supervisor
// runs (jailed, as PID 1's child in its own PID and network namespaces) is
// an attacker (./attacker) that tries every known way out. A vector counts
// as escaped when the agent got through OR when the world saw its traffic
// (recorded TCP streams, datagrams, DNS query logs, nftables canary sets),
// whatever the agent believes. Every blocked network vector must leave
// exactly one audit event.
package escape

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

// suitePolicy is the policy of the brief: allowed.test and *.wild.test,
// and *.exfil.test, whose exfiltration budget only dns_exfil_wildcard spends.
const suitePolicy = `{"profile":"standard","mode":"allowlist","allowed_domains":["allowed.test"],` +
	`"tool_domains":["*.wild.test","*.exfil.test"],"all_domains":["allowed.test","*.wild.test","*.exfil.test"]}`

// runTimeout bounds the whole attacker run (about 40 s normally).
const runTimeout = 3 * time.Minute

// result is one line of the attacker.
type result struct {
	Vector   string   `json:"vector"`
	Observed string   `json:"observed"`
	Detail   string   `json:"detail"`
	Flows    []flow   `json:"flows"`
	Queries  []query  `json:"queries"`
	SNIs     []string `json:"snis"`
}

type flow struct {
	DstIP   string `json:"dst_ip"`
	DstPort int    `json:"dst_port"`
	SrcPort int    `json:"src_port"`
}

type query struct {
	Qname string `json:"qname"`
	Qtype string `json:"qtype"`
}

// row is one line of the report.
type row struct {
	vector, want, observed, audit, evidence string
	ok                                      bool
}

func TestEscape(t *testing.T) {
	w := newEscapeWorld(t)
	bin, suid := buildAttacker(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", suitePolicy)
	secret := randomHex(16)
	// ESCAPE_VECTORS=a,b runs only those vectors (while working on them).
	args, only := []string{"all"}, map[string]bool{}
	if v := os.Getenv("ESCAPE_VECTORS"); v != "" {
		args = strings.Split(v, ",")
		for _, n := range args {
			only[n] = true
		}
	}
	s := w.StartSupervisor(t, pol, []string{
		"ESCAPE_CA=" + w.CAFile, "ESCAPE_SUID=" + suid, "ESCAPE_SECRET=" + secret,
	}, append([]string{bin}, args...)...)
	start := time.Now()
	code, done := s.Wait(runTimeout)
	if !done {
		t.Fatalf("the attacker run did not finish in %v\nstdout:\n%s\nstderr:\n%s", runTimeout, s.Out.String(), s.Err.String())
	}
	t.Logf("attacker run: %v, supervisor exit %d", time.Since(start).Round(time.Millisecond), code)
	// dnsmasq writes its log asynchronously.
	time.Sleep(300 * time.Millisecond)

	results, events, logLines := splitOutput(t, s)
	gt := collect(t, w)
	var rows []row
	seen := map[string]bool{}
	for _, r := range results {
		seen[r.Vector] = true
		rows = append(rows, judgeVector(r, events, gt))
	}
	for name := range expectations {
		if !seen[name] && (len(only) == 0 || only[name]) {
			rows = append(rows, row{vector: name, want: expectations[name].want, observed: "missing", audit: "-", evidence: "the attacker printed no result"})
		}
	}
	rows = append(rows, globalRows(gt, logLines, secret)...)
	report(t, rows)
}

// buildAttacker builds ./attacker statically into a world-readable
// directory, with a setuid-root copy beside it.
func buildAttacker(t *testing.T) (bin, suid string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "forge-escape-bin")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin = filepath.Join(dir, "attacker")
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", bin, "./attacker")
	cmd.Dir = filepath.Dir(file)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build attacker: %v\n%s", err, out)
	}
	suid = filepath.Join(dir, "attacker-suid")
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(suid, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(suid, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(suid, os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	return bin, suid
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// splitOutput separates the supervisor's log events from the attacker's
// result lines, which arrive wrapped in agent_output records (the agent
// never writes to the log itself). Events are the log's own lines only:
// an agent_output record is never taken for an audit event.
func splitOutput(t *testing.T, s *world.Supervisor) ([]result, []world.Event, []string) {
	t.Helper()
	var (
		results []result
		events  []world.Event
		logs    []string
	)
	for _, line := range s.AgentStdout() {
		var r result
		if json.Unmarshal([]byte(line), &r) != nil || r.Vector == "" {
			continue // the agent's other output (e.g. the flood of stdout_nonblock_full)
		}
		results = append(results, r)
	}
	sc := bufio.NewScanner(strings.NewReader(s.Out.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var probe map[string]any
		if json.Unmarshal(line, &probe) != nil {
			logs = append(logs, string(line))
			continue
		}
		if _, ok := probe["vector"]; ok {
			// A result line printed straight into the log: the agent
			// shares the supervisor's stdout (raw output, or old code).
			var r result
			if err := json.Unmarshal(line, &r); err == nil {
				results = append(results, r)
			}
			continue
		}
		e := world.Event(probe)
		events = append(events, e)
		if e.Msg() != "agent_output" { // the agent may print its own secret
			logs = append(logs, string(line))
		}
	}
	return results, events, logs
}

// truth is what the world received.
type truth struct {
	streams   []*stream
	datagrams []string
	keys      []string
	upstream  []string // upstream resolver's query lines
	canary    []string // outside resolvers' query lines
}

func collect(t *testing.T, w *escapeWorld) truth {
	t.Helper()
	streams, datagrams := w.snapshot()
	return truth{streams: streams, datagrams: datagrams, keys: w.seenKeys(t),
		upstream: dnsQueries(w.upstreamLog), canary: dnsQueries(w.canaryLog)}
}

func marker(vector string) string { return strings.ReplaceAll(vector, "_", "-") }

// evidence lists what the world received that carries the vector's marker
// or its packets.
func (gt truth) evidence(vector string, e expect) []string {
	m := marker(vector)
	var ev []string
	// Local vectors send nothing to the world; their short names would
	// also match random bytes of TLS streams.
	scan := e.audit != auditNone
	for _, s := range gt.streams {
		if !scan {
			break
		}
		if strings.Contains(strings.ToLower(string(s.bytes())), m) {
			ev = append(ev, fmt.Sprintf("world TCP %s got its bytes", s.Local))
		}
	}
	for _, d := range gt.datagrams {
		if strings.Contains(d, "esc-"+m) {
			ev = append(ev, d)
		}
	}
	for _, l := range gt.upstream {
		if scan && strings.Contains(strings.ToLower(l), m) {
			ev = append(ev, "upstream resolver: "+trimLog(l))
		}
	}
	for _, l := range gt.canary {
		if scan && strings.Contains(strings.ToLower(l), m) {
			ev = append(ev, "outside resolver: "+trimLog(l))
		}
	}
	for _, k := range e.keys {
		if slices.Contains(gt.keys, k) {
			ev = append(ev, "canary packet "+k)
		}
	}
	return ev
}

func trimLog(l string) string {
	if i := strings.Index(l, "query["); i >= 0 {
		return l[i:]
	}
	return l
}

func judgeVector(r result, events []world.Event, gt truth) row {
	e, known := expectations[r.Vector]
	rw := row{vector: r.Vector, want: e.want}
	if !known {
		rw.observed, rw.audit, rw.evidence = r.Observed, "-", "no expectation for this vector: "+r.Detail
		return rw
	}
	ev, upstreamNote := e.tolerateUpstream(gt.evidence(r.Vector, e))
	switch {
	case e.want == a:
		// Controls: the agent got through; for TLS the world saw it.
		rw.observed = r.Observed
		rw.ok = r.Observed == a
		if r.Vector == "control_tls_v4" || r.Vector == "control_tls_v6" {
			rw.ok = rw.ok && len(ev) > 0
		}
		if r.Vector == "dns_outside_allowed_name" {
			// Allowed, but only through the proxy: the outside resolver
			// and its canary packets must be silent.
			// The agent's answer came through the proxy, so only the
			// world's evidence counts.
			rw.ok = true
			for _, x := range ev {
				if !strings.HasPrefix(x, "upstream resolver") {
					rw.ok = false
				}
			}
			if rw.ok {
				rw.observed = "via proxy only"
			} else {
				rw.observed = escapedWord
			}
			ev = filterOut(ev, "upstream resolver")
		}
	default:
		rw.observed = b
		if r.Observed == escapedWord || len(ev) > 0 {
			rw.observed = escapedWord
		}
		if r.Observed == "error" || r.Observed == "missing" {
			rw.observed = r.Observed
		}
		rw.ok = rw.observed == b
	}
	auditText, auditOK := checkAudit(r, e, events)
	rw.audit = auditText
	rw.ok = rw.ok && auditOK
	rw.evidence = r.Detail
	if upstreamNote != "" {
		rw.evidence += "; " + upstreamNote
	}
	if len(ev) > 0 {
		rw.evidence = "WORLD SAW: " + strings.Join(ev, " | ") + " || agent: " + r.Detail
	}
	return rw
}

const escapedWord = "escaped"

func filterOut(ev []string, prefix string) []string {
	var out []string
	for _, x := range ev {
		if !strings.HasPrefix(x, prefix) {
			out = append(out, x)
		}
	}
	return out
}

// checkAudit counts the vector's audit events: exactly one per flow, SNI
// or question, with a denying msg for blocked vectors and an expected
// reason.
func checkAudit(r result, e expect, events []world.Event) (string, bool) {
	var parts []string
	ok := true
	judge := func(what string, matched []world.Event, wantMsg string) {
		if len(matched) != 1 {
			ok = false
			parts = append(parts, fmt.Sprintf("%s: %d events", what, len(matched)))
			return
		}
		ev := matched[0]
		msg, reason := ev.Msg(), ev.Str("reason")
		good := wantMsg == "" || msg == wantMsg
		if len(e.reasons) > 0 && !slices.Contains(e.reasons, reason) {
			good = false
		}
		if !good {
			ok = false
			parts = append(parts, fmt.Sprintf("%s/%s UNEXPECTED", msg, reason))
			return
		}
		parts = append(parts, msg+"/"+reason)
	}
	for _, k := range e.kernel {
		var m []world.Event
		for _, ev := range events {
			if ev.Msg() == "egress_denied" && ev.Str("source") == "nflog" &&
				kernelLine(ev.Str("reason"), ev.Str("proto"), ev.Str("dst_ip"), num(ev["dst_port"])) == k {
				m = append(m, ev)
			}
		}
		if len(m) != 1 {
			ok = false
			parts = append(parts, fmt.Sprintf("kernel %q: %d events", k, len(m)))
		} else {
			parts = append(parts, "kernel "+m[0].Str("reason"))
		}
	}
	egressMsg, dnsMsg := "egress_denied", "dns_denied"
	if e.want == a {
		egressMsg, dnsMsg = "egress_allowed", "dns_allowed"
	}
	if e.anyDNSMsg {
		dnsMsg = ""
	}
	switch e.audit {
	case auditNone:
		if len(parts) > 0 {
			return summarize(parts), ok
		}
		return "n/a (kernel/local)", true
	case auditRateLimited:
		return checkRateLimited(events)
	case auditForged:
		return checkForged(r, events)
	case auditEgress:
		if len(r.Flows) == 0 && len(r.SNIs) == 0 {
			return "no flow reported", false
		}
		for _, f := range r.Flows {
			var m []world.Event
			for _, ev := range events {
				// An event without a destination (origdst_failed), or an
				// explicit-proxy request (its destination is the one the
				// request named), is matched by the agent's source port
				// alone.
				dstOK := ev.Str("dst_ip") == f.DstIP && num(ev["dst_port"]) == f.DstPort ||
					ev.Str("dst_ip") == "" && num(ev["dst_port"]) == 0 || ev.Str("source") == "explicit"
				if strings.HasPrefix(ev.Msg(), "egress_") && dstOK && num(ev["src_port"]) == f.SrcPort {
					m = append(m, ev)
				}
			}
			judge(fmt.Sprintf("%s:%d<-%d", f.DstIP, f.DstPort, f.SrcPort), m, egressMsg)
		}
		for _, sni := range r.SNIs {
			var m []world.Event
			for _, ev := range events {
				if strings.HasPrefix(ev.Msg(), "egress_") && strings.EqualFold(ev.Str("sni"), sni) {
					m = append(m, ev)
				}
			}
			judge("sni "+sni, m, egressMsg)
		}
	case auditDNS:
		if len(r.Queries) == 0 {
			return "no query reported", false
		}
		for _, q := range r.Queries {
			var m []world.Event
			for _, ev := range events {
				if strings.HasPrefix(ev.Msg(), "dns_") && strings.EqualFold(strings.TrimSuffix(ev.Str("qname"), "."), strings.TrimSuffix(q.Qname, ".")) && ev.Str("qtype") == q.Qtype {
					m = append(m, ev)
				}
			}
			judge(q.Qtype+" "+short(q.Qname), m, dnsMsg)
		}
	}
	return summarize(parts), ok
}

// checkForged: the forged lines arrive only inside agent_output records;
// no event of the log's own carries the vector's marker.
func checkForged(r result, events []world.Event) (string, bool) {
	m := marker(r.Vector)
	forged, wrapped := 0, 0
	for _, ev := range events {
		b, _ := json.Marshal(ev)
		if !strings.Contains(string(b), m) {
			continue
		}
		if ev.Msg() == "agent_output" {
			wrapped++
		} else {
			forged++
		}
	}
	text := fmt.Sprintf("%d forged events, %d agent_output records", forged, wrapped)
	return text, forged == 0 && wrapped > 0
}

// summarize folds the per-flow audit texts of a vector with many flows.
func summarize(parts []string) string {
	if len(parts) <= 2 {
		return strings.Join(parts, ", ")
	}
	counts := map[string]int{}
	var order []string
	for _, p := range parts {
		if counts[p] == 0 {
			order = append(order, p)
		}
		counts[p]++
	}
	var out []string
	for _, p := range order {
		out = append(out, fmt.Sprintf("%d× %s", counts[p], p))
	}
	return strings.Join(out, ", ")
}

func short(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

func num(v any) int {
	switch x := v.(type) {
	case float64:
		return int(x)
	case string:
		n, _ := strconv.Atoi(x)
		return n
	}
	return -1
}

// globalRows are checks that belong to no single vector: traffic the
// world saw that no vector claims, and secrets in the supervisor's log.
func globalRows(gt truth, logLines []string, secret string) []row {
	claimed := map[string]bool{}
	for _, e := range expectations {
		for _, k := range e.keys {
			claimed[k] = true
		}
	}
	var stray []string
	for _, k := range gt.keys {
		if !legitKeys[k] && !claimed[k] {
			stray = append(stray, "packet "+k)
		}
	}
	for _, s := range gt.streams {
		host, _, _ := net.SplitHostPort(s.Local)
		if host == world2V4 || host == world2V6 {
			if !anyMarker(s.bytes()) {
				stray = append(stray, fmt.Sprintf("TCP stream at %s from %s: %q", s.Local, s.Remote, clipBytes(s.bytes())))
			}
		}
	}
	for _, l := range gt.canary {
		if !anyMarker([]byte(l)) {
			stray = append(stray, "outside resolver: "+trimLog(l))
		}
	}
	rows := []row{{vector: "unattributed_world_traffic", want: b, observed: b, audit: "-", ok: len(stray) == 0,
		evidence: "every packet the world saw is a control, the supervisor's own, or attributed above"}}
	if len(stray) > 0 {
		rows[0].observed, rows[0].evidence = escapedWord, strings.Join(stray, " | ")
	}
	leak := row{vector: "secret_not_logged", want: b, observed: b, audit: "-", ok: true,
		evidence: "the Authorization/query token of the denied HTTP requests is in no log line"}
	for _, l := range logLines {
		if strings.Contains(l, secret) {
			leak.ok, leak.observed, leak.evidence = false, escapedWord, "log line: "+l
			break
		}
	}
	return append(rows, leak)
}

func anyMarker(b []byte) bool {
	s := strings.ToLower(string(b))
	for name, e := range expectations {
		if e.audit != auditNone && strings.Contains(s, marker(name)) {
			return true
		}
	}
	return false
}

func clipBytes(b []byte) []byte {
	if len(b) > 60 {
		return b[:60]
	}
	return b
}

// report prints the table (t.Log and stdout) and fails on any escape,
// error, or missing/duplicate/unexpected audit event.
func report(t *testing.T, rows []row) {
	t.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-30s %-8s %-15s %-5s %s\n", "VECTOR", "EXPECTED", "OBSERVED", "OK", "AUDIT EVENT")
	failed := 0
	for _, r := range rows {
		okText := "ok"
		if !r.ok {
			okText = "FAIL"
			failed++
		}
		fmt.Fprintf(&sb, "%-30s %-8s %-15s %-5s %s\n", r.vector, r.want, r.observed, okText, r.audit)
	}
	fmt.Fprintf(&sb, "%d vectors, %d failed\n", len(rows), failed)
	t.Log(sb.String())
	fmt.Print(sb.String())
	for _, r := range rows {
		if !r.ok {
			t.Errorf("%s: want %s, observed %s; audit: %s; %s", r.vector, r.want, r.observed, r.audit, r.evidence)
		} else if testing.Verbose() {
			t.Logf("%s: %s", r.vector, r.evidence)
		}
	}
}
