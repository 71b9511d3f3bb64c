package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/forge/forge-supervisor/deploy"
	"github.com/forge/forge-supervisor/obs"
)

// scrapedNames runs the real obs server with metrics that have seen one
// of everything (so every labelled family has a series) and returns the
// series names of a /metrics scrape (histograms as name_bucket, _sum,
// _count).
func scrapedNames(t *testing.T) map[string]bool {
	t.Helper()
	m := obs.NewMetrics()
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	sink := obs.NewSink(out, 0, io.Discard)
	t.Cleanup(func() { sink.Close(time.Second); out.Close() })
	m.WatchSink(sink)
	log, _ := obs.NewLogger(sink, "info")
	a := obs.NewAuditor(log, m, obs.NewDenials(8), obs.WithSampling(true))
	a.SupervisorStarted(obs.SupervisorStarted{Interception: obs.InterceptionKernel})
	a.Egress(obs.Flow{Allowed: true, Proto: "tls", SNI: "allowed.test", Reason: "allowed_domain", BytesUp: 1, BytesDown: 1, Source: "transparent"})
	a.Egress(obs.Flow{Proto: "tls", SNI: "x.evil.test", Reason: "not_in_allowlist", Source: "transparent"})
	a.DNS(obs.DNSQuery{Allowed: true, QName: "allowed.test", QType: "A", Reason: "allowed_domain"})
	a.DNS(obs.DNSQuery{QName: "evil.test", QType: "A", Reason: "not_in_allowlist"})
	a.DNSRateLimited(obs.DNSQuery{QName: "evil.test", QType: "A"})
	a.PolicyReloaded(obs.PolicyReload{Mode: "allowlist"})
	a.PolicyReloadFailed("/p", errors.New("broken"))
	a.AgentStarted(obs.AgentStarted{Restart: true})
	a.AgentExited(obs.AgentExited{ExitCode: 0})
	m.StageLatency.WithLabelValues("classify").Observe(1e-4)
	m.QueueDepth.WithLabelValues("classify").Set(0)
	m.Active.Set(0)
	m.DNSMalformed.Inc()
	m.LearnedNames.Set(1)
	m.AuditSampledOut.Add(0)

	srv := obs.NewServer("127.0.0.1:0", obs.NewHealth(obs.PartPolicy), m, nil, nil)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	resp, err := http.Get("http://" + srv.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if i := strings.IndexAny(l, "{ "); i > 0 {
			names[l[:i]] = true
		}
	}
	if len(names) < 20 {
		t.Fatalf("scrape has only %d series names", len(names))
	}
	return names
}

// metricRef finds the metric names in a PromQL expression: identifiers of
// the supervisor's namespace (and of the Go/process collectors).
var metricRef = regexp.MustCompile(`\b(forge_supervisor_[a-z0-9_]+|go_[a-z0-9_]+|process_[a-z0-9_]+)\b`)

func checkExpr(t *testing.T, where, expr string, scraped map[string]bool) {
	t.Helper()
	refs := metricRef.FindAllString(expr, -1)
	if len(refs) == 0 {
		t.Errorf("%s: query names no metric: %s", where, expr)
	}
	for _, name := range refs {
		if !scraped[name] {
			t.Errorf("%s: %s is not a series of /metrics (query %s)", where, name, expr)
		}
	}
}

// TestDashboardQueriesUseRealMetrics: the dashboard is valid JSON that
// Grafana imports, and every metric its queries name exists in a scrape of
// the real /metrics.
func TestDashboardQueriesUseRealMetrics(t *testing.T) {
	b, err := deploy.Dashboard()
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Inputs []struct {
			Name string `json:"name"`
		} `json:"__inputs"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			GridPos struct {
				X, Y, W, H int
			} `json:"gridPos"`
			Targets []struct {
				Expr  string `json:"expr"`
				RefID string `json:"refId"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	if dash.UID == "" || len(dash.Inputs) != 1 || dash.Inputs[0].Name != "DS_PROMETHEUS" {
		t.Errorf("uid %q, inputs %+v: want a uid and the one Prometheus input", dash.UID, dash.Inputs)
	}
	scraped := scrapedNames(t)
	want := map[string]bool{ // what the issue asks the dashboard to show
		"forge_supervisor_connections_total": false, "forge_supervisor_dns_queries_total": false,
		"forge_supervisor_denied_names_total": false, "forge_supervisor_connections_by_source_total": false,
		"forge_supervisor_stage_duration_seconds_bucket": false, "forge_supervisor_policy_reloads_total": false,
		"forge_supervisor_audit_lines_dropped_total": false, "forge_supervisor_dns_denials_total": false,
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 || p.GridPos.W == 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: %d targets, gridPos %+v", p.Title, len(p.Targets), p.GridPos)
		}
		for _, tg := range p.Targets {
			checkExpr(t, "panel "+p.Title, tg.Expr, scraped)
			for _, name := range metricRef.FindAllString(tg.Expr, -1) {
				if _, ok := want[name]; ok {
					want[name] = true
				}
			}
		}
	}
	for name, used := range want {
		if !used {
			t.Errorf("no panel shows %s", name)
		}
	}
}

// TestAlertsPassPromtool: the PrometheusRule's spec is a rules file that
// `promtool check rules` accepts, and its alerts name real metrics.
func TestAlertsPassPromtool(t *testing.T) {
	b, err := deploy.Alerts("forge-agent", "agents")
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name, Namespace string
		} `yaml:"metadata"`
		Spec struct {
			Groups []struct {
				Name  string `yaml:"name"`
				Rules []struct {
					Alert string `yaml:"alert"`
					Expr  string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &pr); err != nil {
		t.Fatalf("alerts are not YAML: %v\n%s", err, b)
	}
	if pr.Kind != "PrometheusRule" || pr.APIVersion != "monitoring.coreos.com/v1" || pr.Metadata.Namespace != "agents" {
		t.Errorf("header %s %s %+v", pr.APIVersion, pr.Kind, pr.Metadata)
	}
	scraped := scrapedNames(t)
	var alerts []string
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			checkExpr(t, "alert "+r.Alert, r.Expr, scraped)
		}
	}
	for _, want := range []string{"ForgeSupervisorDenialSpike", "ForgeSupervisorInterceptionDegraded",
		"ForgeSupervisorPolicyReloadFailing", "ForgeSupervisorAuditLinesDropped"} {
		if !strings.Contains(strings.Join(alerts, " "), want) {
			t.Errorf("no alert %s (have %v)", want, alerts)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus, in .ci/packages): rules not checked")
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	spec, err := yaml.Marshal(doc["spec"])
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(file, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s\n%s", err, out, spec)
	}
	t.Logf("promtool: %s", strings.TrimSpace(string(out)))
}
