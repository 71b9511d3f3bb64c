package obs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns every log line decoded as a JSON object.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %q", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

func newTestAuditor(t *testing.T, opts ...AuditorOption) (*Auditor, *syncBuffer, *Metrics, *Denials) {
	t.Helper()
	buf := &syncBuffer{}
	log, err := NewLogger(buf, "info")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	d := NewDenials(16)
	return NewAuditor(log, m, d, opts...), buf, m, d
}

func TestAuditorEgressMetricsAndDenials(t *testing.T) {
	a, buf, m, d := newTestAuditor(t)
	a.Egress(Flow{Allowed: true, Proto: "tls", SNI: "api.allowed.test", DstIP: "198.51.100.1", DstPort: 443,
		Reason: "domain_allowed", Rule: "api.allowed.test", BytesUp: 100, BytesDown: 2000})
	a.Egress(Flow{Proto: "tls", SNI: "evil.test", DstIP: "198.51.100.3", DstPort: 443, Reason: "domain_not_allowed"})
	a.Egress(Flow{Allowed: true, WouldDeny: true, Proto: "http", Host: "dry.test", Reason: "domain_not_allowed"})

	checks := []struct {
		name string
		got  float64
		want float64
	}{
		{"allowed tls", value(t, m.Connections.WithLabelValues(DecisionAllowed, "tls", "domain_allowed")), 1},
		{"denied tls", value(t, m.Connections.WithLabelValues(DecisionDenied, "tls", "domain_not_allowed")), 1},
		{"would deny http", value(t, m.Connections.WithLabelValues(DecisionWouldDeny, "http", "domain_not_allowed")), 1},
		{"bytes up", value(t, m.Bytes.WithLabelValues(DirectionUp)), 100},
		{"bytes down", value(t, m.Bytes.WithLabelValues(DirectionDown)), 2000},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	recent := d.Recent(0)
	if len(recent) != 2 {
		t.Fatalf("denials = %d, want 2 (the denial and the dry-run would-deny)", len(recent))
	}
	if recent[0].Host != "dry.test" || !recent[0].WouldDeny || recent[0].Msg != MsgEgressAllowed {
		t.Errorf("newest denial = %+v, want the would-deny of dry.test", recent[0])
	}
	if recent[1].SNI != "evil.test" || recent[1].Msg != MsgEgressDenied || recent[1].Reason != "domain_not_allowed" {
		t.Errorf("oldest denial = %+v, want the denial of evil.test", recent[1])
	}
	lines := buf.lines(t)
	if len(lines) != 3 {
		t.Fatalf("log lines = %d, want 3", len(lines))
	}
	for i, want := range []string{MsgEgressAllowed, MsgEgressDenied, MsgEgressAllowed} {
		if lines[i]["msg"] != want {
			t.Errorf("line %d msg = %v, want %s", i, lines[i]["msg"], want)
		}
	}
}

func TestAuditorDNSMetricsAndDenials(t *testing.T) {
	a, buf, m, d := newTestAuditor(t)
	a.DNS(DNSQuery{Allowed: true, QName: "ok.test.", QType: "A", Rcode: "NOERROR", Reason: "domain_allowed", Answers: 2})
	a.DNS(DNSQuery{QName: "bad.test.", QType: "AAAA", Rcode: "REFUSED", Reason: "domain_not_allowed"})
	a.DNSRateLimited(DNSQuery{QName: "flood.test.", QType: "TXT", Rcode: "REFUSED"})

	if got := value(t, m.DNSQueries.WithLabelValues(DecisionAllowed, "A")); got != 1 {
		t.Errorf("dns allowed A = %v, want 1", got)
	}
	if got := value(t, m.DNSQueries.WithLabelValues(DecisionDenied, "AAAA")); got != 1 {
		t.Errorf("dns denied AAAA = %v, want 1", got)
	}
	if got := value(t, m.DNSQueries.WithLabelValues(DecisionRateLimit, "TXT")); got != 1 {
		t.Errorf("dns rate_limited TXT = %v, want 1", got)
	}
	if got := value(t, m.DNSRateLimited); got != 1 {
		t.Errorf("dns rate limited counter = %v, want 1", got)
	}
	recent := d.Recent(0)
	if len(recent) != 2 || recent[0].Msg != MsgDNSRateLimited || recent[0].Reason != ReasonRateLimited ||
		recent[1].QName != "bad.test." {
		t.Fatalf("denials = %+v, want rate-limited flood.test. then denied bad.test.", recent)
	}
	lines := buf.lines(t)
	if len(lines) != 3 || lines[2]["msg"] != MsgDNSRateLimited || lines[2]["reason"] != ReasonRateLimited {
		t.Fatalf("log lines = %v", lines)
	}
}

// TestDenialMatchesLogLine: /denials must show exactly what the log line
// says, field for field, so operators can grep one for the other.
func TestDenialMatchesLogLine(t *testing.T) {
	a, buf, _, d := newTestAuditor(t)
	a.Egress(Flow{Proto: "tls", SNI: "evil.test", Host: "", ALPN: []string{"h2", "a,b"}, SrcPort: 40000,
		DstIP: "198.51.100.3", DstPort: 443, Reason: "sni_ip_mismatch", Rule: "evil.test",
		BytesUp: 517, Duration: 1234567 * time.Nanosecond, Source: "transparent"})
	a.DNS(DNSQuery{QName: "bad.test.", QType: "A", Rcode: "REFUSED", Reason: "domain_not_allowed",
		Duration: 42 * time.Microsecond})

	lines := buf.lines(t)
	recent := d.Recent(0)
	if len(lines) != 2 || len(recent) != 2 {
		t.Fatalf("lines = %d, denials = %d, want 2 and 2", len(lines), len(recent))
	}
	for i, line := range lines {
		ev := recent[len(recent)-1-i] // newest first
		raw, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		delete(line, "level")
		assertSameObject(t, line["msg"].(string), line, got)
	}
}

func assertSameObject(t *testing.T, what string, want, got map[string]any) {
	t.Helper()
	for k, wv := range want {
		gv, ok := got[k]
		if !ok {
			t.Errorf("%s: denial lacks log field %q", what, k)
			continue
		}
		if !reflect.DeepEqual(wv, gv) {
			t.Errorf("%s: field %q: denial %v (%T), log %v (%T)", what, k, gv, gv, wv, wv)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: denial has field %q the log line lacks", what, k)
		}
	}
}

// TestSamplingNeverDropsDenials floods the auditor well above 10k events/s
// of each kind: every denial must be logged, allowed events must be thinned
// and still counted exactly in the metrics.
func TestSamplingNeverDropsDenials(t *testing.T) {
	const n = 10000
	a, buf, m, d := newTestAuditor(t, WithSamplingPolicy(Sampling{Tick: time.Second, First: 100, Thereafter: 100}))
	start := time.Now()
	for i := range n {
		a.Egress(Flow{Allowed: true, Proto: "tls", SNI: "ok.test", Reason: "domain_allowed", SrcPort: uint16(i)})
		a.Egress(Flow{Proto: "tls", SNI: "evil.test", Reason: "domain_not_allowed", SrcPort: uint16(i)})
		a.DNS(DNSQuery{Allowed: true, QName: "ok.test.", QType: "A", Reason: "domain_allowed"})
		a.DNS(DNSQuery{QName: "evil.test.", QType: "A", Reason: "domain_not_allowed"})
	}
	elapsed := time.Since(start)
	if rate := float64(n) / elapsed.Seconds(); rate < 10000 {
		t.Logf("machine slow: only %.0f events/s of each kind", rate)
	}
	count := map[string]int{}
	for _, l := range buf.lines(t) {
		count[l["msg"].(string)]++
	}
	if count[MsgEgressDenied] != n || count[MsgDNSDenied] != n {
		t.Fatalf("denial lines: egress %d, dns %d; want %d each (denials are never sampled)",
			count[MsgEgressDenied], count[MsgDNSDenied], n)
	}
	// One tick holds at most 100 + 99 lines per msg; a slow machine may
	// cross a few ticks, but never log more than a tenth.
	for _, msg := range []string{MsgEgressAllowed, MsgDNSAllowed} {
		if count[msg] < 100 || count[msg] > n/10 {
			t.Errorf("%s lines = %d, want sampled (100..%d)", msg, count[msg], n/10)
		}
	}
	if got := value(t, m.Connections.WithLabelValues(DecisionAllowed, "tls", "domain_allowed")); got != n {
		t.Errorf("allowed connections counted = %v, want %d (sampling must not touch metrics)", got, n)
	}
	dropped := 2*n - count[MsgEgressAllowed] - count[MsgDNSAllowed]
	if got := value(t, m.AuditSampledOut); int(got) != dropped {
		t.Errorf("sampled-out counter = %v, want %d", got, dropped)
	}
	if got := len(d.Recent(0)); got != d.Size() {
		t.Errorf("denial ring holds %d, want full (%d)", got, d.Size())
	}
}

func TestSamplingOffLogsEverything(t *testing.T) {
	a, buf, _, _ := newTestAuditor(t, WithSampling(false))
	for range 500 {
		a.Egress(Flow{Allowed: true, Proto: "tls", Reason: "domain_allowed"})
	}
	if got := len(buf.lines(t)); got != 500 {
		t.Fatalf("lines = %d, want 500 with sampling off", got)
	}
	b, buf2, _, _ := newTestAuditor(t, WithSamplingPolicy(Sampling{Tick: time.Second}))
	for range 500 {
		b.Egress(Flow{Allowed: true, Proto: "tls", Reason: "domain_allowed"})
	}
	if got := len(buf2.lines(t)); got != 500 {
		t.Fatalf("lines = %d, want 500 with an invalid (First 0) sampling policy", got)
	}
}

func TestAuditTruncatesHostileNames(t *testing.T) {
	a, buf, _, d := newTestAuditor(t)
	long := strings.Repeat("a", 100000) + "\n{\"msg\":\"forged\"}"
	a.Egress(Flow{Proto: "http", Host: long, SNI: long, Reason: "domain_not_allowed"})
	a.DNS(DNSQuery{QName: long, QType: "A", Reason: "domain_not_allowed"})
	lines := buf.lines(t)
	if len(lines) != 2 {
		t.Fatalf("lines = %d, want 2 (a newline in a name must not split the line)", len(lines))
	}
	for _, l := range lines {
		for _, k := range []string{"host", "sni", "qname"} {
			s, ok := l[k].(string)
			if !ok {
				continue
			}
			if len(s) > maxAuditNameLen || (s != "" && !strings.HasSuffix(s, truncatedMark)) {
				t.Errorf("%s: %s has %d bytes, want ≤ %d ending in %q", l["msg"], k, len(s), maxAuditNameLen, truncatedMark)
			}
		}
	}
	for _, e := range d.Recent(0) {
		if len(e.Host) > maxAuditNameLen || len(e.QName) > maxAuditNameLen {
			t.Errorf("denial kept an untruncated name: host %d, qname %d bytes", len(e.Host), len(e.QName))
		}
	}
}

func TestLabelGuardCapsCardinality(t *testing.T) {
	a, _, m, _ := newTestAuditor(t)
	for i := range maxReasonLabels + 50 {
		a.Egress(Flow{Proto: "tls", Reason: "dial error " + strings.Repeat("x", i)})
	}
	n := seriesCount(m.Connections)
	if n != maxReasonLabels+1 {
		t.Fatalf("connection series = %d, want %d (cap + %q)", n, maxReasonLabels+1, labelOther)
	}
	if got := value(t, m.Connections.WithLabelValues(DecisionDenied, "tls", labelOther)); got != 50 {
		t.Errorf("%q series = %v, want 50", labelOther, got)
	}
}

func TestNilMetricsAndDenials(t *testing.T) {
	a := NewAuditor(nil, nil, nil, WithSampling(true))
	a.Egress(Flow{Proto: "tls"})
	a.DNS(DNSQuery{QName: "x."})
	a.DNSRateLimited(DNSQuery{QName: "x."})
	a.SupervisorStarted(SupervisorStarted{Interception: InterceptionKernel})
	a.InterceptionDegraded(nil, "")
	a.PolicyReloaded(PolicyReload{})
	a.PolicyReloadFailed("/p", nil)
	a.AgentStarted(AgentStarted{Restart: true})
	a.AgentExited(AgentExited{ExitCode: 1})
	a.SupervisorStopped("agent exited", 1, time.Second)
}

func TestLifecycleEvents(t *testing.T) {
	a, buf, m, _ := newTestAuditor(t)
	a.SupervisorStarted(SupervisorStarted{Version: "v1", Interception: InterceptionKernel, ProxyPort: 15001})
	a.InterceptionDegraded(errTest("nf_tables: operation not permitted"), "explicit HTTP CONNECT/SOCKS5 proxy on 127.0.0.1:15001")
	a.PolicyReloaded(PolicyReload{Path: "/etc/forge/p.json", Rules: 3, Mode: "allowlist"})
	a.PolicyReloadFailed("/etc/forge/p.json", errTest("bad json"))
	a.AgentStarted(AgentStarted{PID: 7, Argv0: "/agent", UID: 1000, GID: 1000})
	a.AgentStarted(AgentStarted{PID: 8, Argv0: "/agent", UID: 1000, GID: 1000, Restart: true})
	a.AgentExited(AgentExited{PID: 8, ExitCode: 137, Signal: "SIGKILL"})
	a.SupervisorStopped("agent exited", 137, time.Minute)

	want := []struct{ msg, level, key string }{
		{MsgSupervisorStarted, "info", "version"},
		{MsgInterceptionDegraded, "warn", "fallback"},
		{MsgPolicyReloaded, "info", "rules"},
		{MsgPolicyReloadFailed, "error", "error"},
		{MsgAgentStarted, "info", "pid"},
		{MsgAgentStarted, "info", "restart"},
		{MsgAgentExited, "info", "exit_code"},
		{MsgSupervisorStopped, "info", "exit_code"},
	}
	lines := buf.lines(t)
	if len(lines) != len(want) {
		t.Fatalf("lines = %d, want %d", len(lines), len(want))
	}
	for i, w := range want {
		if lines[i]["msg"] != w.msg || lines[i]["level"] != w.level {
			t.Errorf("line %d = %v/%v, want %s/%s", i, lines[i]["msg"], lines[i]["level"], w.msg, w.level)
		}
		if _, ok := lines[i][w.key]; !ok {
			t.Errorf("line %d (%s) lacks %q", i, w.msg, w.key)
		}
	}
	if got := value(t, m.Interception.WithLabelValues(InterceptionFallback)); got != 1 {
		t.Errorf("interception fallback = %v, want 1 after degradation", got)
	}
	if got := value(t, m.Interception.WithLabelValues(InterceptionKernel)); got != 0 {
		t.Errorf("interception kernel = %v, want 0 after degradation", got)
	}
	if got := value(t, m.PolicyReloads.WithLabelValues(ReloadOK)); got != 1 {
		t.Errorf("reloads ok = %v, want 1", got)
	}
	if got := value(t, m.PolicyReloads.WithLabelValues(ReloadError)); got != 1 {
		t.Errorf("reloads error = %v, want 1", got)
	}
	if got := value(t, m.AgentRestarts); got != 1 {
		t.Errorf("agent restarts = %v, want 1", got)
	}
	if got := value(t, m.AgentExitCode); got != 137 {
		t.Errorf("agent exit code = %v, want 137", got)
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

func TestWithSamplingTrueUsesDefaults(t *testing.T) {
	const n = 5000
	a, buf, _, _ := newTestAuditor(t, WithSampling(true))
	for range n {
		a.DNS(DNSQuery{Allowed: true, QName: "ok.test.", QType: "A", Reason: "domain_allowed"})
	}
	got := len(buf.lines(t))
	// Within one tick: First, then every Thereafter-th of the rest.
	oneTick := DefaultSampleFirst + (n-DefaultSampleFirst)/DefaultSampleThereafter
	if got < oneTick || got > 3*oneTick {
		t.Fatalf("lines = %d of %d allowed, want about %d with default sampling", got, n, oneTick)
	}
}

// TestALPNIsAnArray: the alpn field is a JSON array in the log line and
// in /denials — [] when none, each protocol as offered (a comma inside a
// name cannot be confused with a separator), cut to maxAuditALPN entries.
func TestALPNIsAnArray(t *testing.T) {
	a, buf, _, d := newTestAuditor(t)
	many := make([]string, maxAuditALPN+5)
	for i := range many {
		many[i] = fmt.Sprintf("p%d", i)
	}
	a.Egress(Flow{Proto: "tls", SNI: "a.test", ALPN: []string{"h2", "x,y"}, Reason: "r"})
	a.Egress(Flow{Proto: "opaque", Reason: "r"})
	a.Egress(Flow{Proto: "tls", ALPN: many, Reason: "r"})
	lines := buf.lines(t)
	if len(lines) != 3 {
		t.Fatalf("%d lines", len(lines))
	}
	want := []string{`["h2","x,y"]`, `[]`, ""}
	for i, l := range lines[:2] {
		got, _ := json.Marshal(l["alpn"])
		if string(got) != want[i] {
			t.Errorf("line %d alpn = %s, want %s", i, got, want[i])
		}
	}
	if cut, _ := lines[2]["alpn"].([]any); len(cut) != maxAuditALPN+1 || cut[maxAuditALPN] != truncatedMark {
		t.Errorf("long alpn = %v, want %d entries and the truncation mark", lines[2]["alpn"], maxAuditALPN)
	}
	for _, ev := range d.Recent(0) {
		raw, _ := json.Marshal(ev)
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		if _, ok := m["alpn"].([]any); !ok {
			t.Errorf("denial alpn = %#v, want an array", m["alpn"])
		}
	}
}
