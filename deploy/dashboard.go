package deploy

import (
	"encoding/json"
	"fmt"
)

// The Grafana dashboard of `forge-supervisor generate dashboard`: one
// Prometheus data source chosen at import (${DS_PROMETHEUS}) and a pod
// filter. Every query uses only series the supervisor exports (a test
// checks each metric name against a real /metrics scrape).

// sel is the series selector every query carries: the pods chosen in the
// dashboard's variable.
const sel = `pod=~"$pod"`

// dashPanel is one panel: a title, a kind and its queries.
type dashPanel struct {
	title, kind, unit, desc string
	queries                 []dashQuery
	w, h                    int
}

type dashQuery struct{ expr, legend string }

// dashboardRows are the panels in reading order: decisions first, then
// where they were made and how fast, then the supervisor's own health.
func dashboardRows() []dashPanel {
	q := func(expr, legend string) dashQuery { return dashQuery{fmt.Sprintf(expr, sel), legend} }
	return []dashPanel{
		{title: "Connections by decision", kind: "timeseries", unit: "ops", w: 12, h: 8,
			desc:    "Finished TCP connections of the agents per second: allowed, denied, would_deny (dry run).",
			queries: []dashQuery{q(`sum by (decision) (rate(forge_supervisor_connections_total{%s}[5m]))`, "{{decision}}")}},
		{title: "Denied connections by reason", kind: "timeseries", unit: "ops", w: 12, h: 8,
			desc:    "Why connections were denied (reason field of the egress_denied audit events).",
			queries: []dashQuery{q(`sum by (reason) (rate(forge_supervisor_connections_total{decision="denied",%s}[5m]))`, "{{reason}}")}},
		{title: "DNS queries by decision", kind: "timeseries", unit: "ops", w: 12, h: 8,
			desc:    "DNS questions of the agents per second: allowed, denied, rate_limited, would_deny.",
			queries: []dashQuery{q(`sum by (decision) (rate(forge_supervisor_dns_queries_total{%s}[5m]))`, "{{decision}}")}},
		{title: "Denied DNS queries by reason", kind: "timeseries", unit: "ops", w: 12, h: 8,
			desc:    "Why DNS queries were denied (reason field of the dns_denied audit events).",
			queries: []dashQuery{q(`sum by (reason) (rate(forge_supervisor_dns_denials_total{%s}[5m]))`, "{{reason}}")}},
		{title: "Top denied names (last hour)", kind: "bargauge", unit: "short", w: 12, h: 10,
			desc: "Sites (last two labels of the name) the agents were denied most, connections and DNS together. " +
				"\"other\" counts every site past the first 256 of a supervisor's life: a large \"other\" means an agent sprays names.",
			queries: []dashQuery{q(`topk(10, sum by (name) (increase(forge_supervisor_denied_names_total{%s}[1h])))`, "{{name}}")}},
		{title: "Share of connections by path", kind: "timeseries", unit: "percentunit", w: 12, h: 10,
			desc:    "Which path decided the connections: the transparent proxy, the explicit fallback proxy, or the kernel verdict path.",
			queries: []dashQuery{q(`sum by (source) (rate(forge_supervisor_connections_by_source_total{%[1]s}[5m])) / ignoring (source) group_left sum(rate(forge_supervisor_connections_by_source_total{%[1]s}[5m]))`, "{{source}}")}},
		{title: "Stage latency p99", kind: "timeseries", unit: "s", w: 12, h: 8,
			desc:    "99th percentile of the time a connection spends in each engine stage.",
			queries: []dashQuery{q(`histogram_quantile(0.99, sum by (le, stage) (rate(forge_supervisor_stage_duration_seconds_bucket{%s}[5m])))`, "{{stage}}")}},
		{title: "Stage latency p50", kind: "timeseries", unit: "s", w: 12, h: 8,
			desc:    "Median time a connection spends in each engine stage.",
			queries: []dashQuery{q(`histogram_quantile(0.5, sum by (le, stage) (rate(forge_supervisor_stage_duration_seconds_bucket{%s}[5m])))`, "{{stage}}")}},
		{title: "Active connections and stage queues", kind: "timeseries", unit: "short", w: 12, h: 8,
			desc: "Connections inside the engine, and those waiting in each stage's queue (a growing queue is back-pressure).",
			queries: []dashQuery{
				q(`sum(forge_supervisor_active_connections{%s})`, "active"),
				q(`sum by (stage) (forge_supervisor_stage_queue_depth{%s})`, "queue {{stage}}"),
			}},
		{title: "Relayed bytes", kind: "timeseries", unit: "Bps", w: 12, h: 8,
			desc:    "Payload bytes relayed per second, up (agent to world) and down.",
			queries: []dashQuery{q(`sum by (direction) (rate(forge_supervisor_bytes_total{%s}[5m]))`, "{{direction}}")}},
		{title: "Policy reloads", kind: "timeseries", unit: "short", w: 8, h: 8,
			desc: "Reloads (SIGHUP or the policy file changing) by result; the last-reload gauge is 0 while a broken file is on disk and the previous policy serves.",
			queries: []dashQuery{
				q(`sum by (result) (increase(forge_supervisor_policy_reloads_total{%s}[5m]))`, "{{result}}"),
				q(`min(forge_supervisor_policy_last_reload_successful{%s})`, "last reload ok"),
			}},
		{title: "Interception mode", kind: "stat", unit: "short", w: 8, h: 8,
			desc:    "Pods per interception mode: kernel (nftables), or fallback (explicit proxy, degraded).",
			queries: []dashQuery{q(`sum by (mode) (forge_supervisor_interception_mode{%s})`, "{{mode}}")}},
		{title: "Audit log: dropped lines and back-pressure", kind: "timeseries", unit: "short", w: 8, h: 8,
			desc: "Log lines lost (the log output failed or stalled at exit: should be 0), writes that waited for a slow log reader, and allowed-event lines sampled out.",
			queries: []dashQuery{
				q(`sum(increase(forge_supervisor_audit_lines_dropped_total{%s}[5m]))`, "dropped"),
				q(`sum(increase(forge_supervisor_audit_write_waits_total{%s}[5m]))`, "waited"),
				q(`sum(increase(forge_supervisor_audit_events_sampled_out_total{%s}[5m]))`, "sampled out"),
			}},
		{title: "DNS: learned names, malformed and rate-limited", kind: "timeseries", unit: "short", w: 12, h: 8,
			desc: "Entries of the learned name-to-address cache; malformed packets and rate-limited queries per second.",
			queries: []dashQuery{
				q(`sum(forge_supervisor_dns_learned_names{%s})`, "learned names"),
				q(`sum(rate(forge_supervisor_dns_malformed_total{%s}[5m]))`, "malformed/s"),
				q(`sum(rate(forge_supervisor_dns_rate_limited_total{%s}[5m]))`, "rate limited/s"),
			}},
		{title: "Agent exits and restarts", kind: "timeseries", unit: "short", w: 12, h: 8,
			desc: "The agent's last exit status (128+N: killed by signal N) and restarts.",
			queries: []dashQuery{
				q(`max by (pod) (forge_supervisor_agent_exit_code{%s})`, "exit code {{pod}}"),
				q(`sum(increase(forge_supervisor_agent_restarts_total{%s}[1h]))`, "restarts"),
			}},
	}
}

// Dashboard returns the Grafana dashboard JSON (schema 39, Grafana 11+;
// importable into earlier versions that read schema 36+).
func Dashboard() ([]byte, error) {
	var panels []map[string]any
	x, y, rowH := 0, 0, 0
	for i, p := range dashboardRows() {
		if x+p.w > 24 {
			x, y, rowH = 0, y+rowH, 0
		}
		var targets []map[string]any
		for j, qu := range p.queries {
			targets = append(targets, map[string]any{
				"datasource":   map[string]any{"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
				"expr":         qu.expr,
				"legendFormat": qu.legend,
				"refId":        string(rune('A' + j)),
			})
		}
		panels = append(panels, map[string]any{
			"id":          i + 1,
			"type":        p.kind,
			"title":       p.title,
			"description": p.desc,
			"datasource":  map[string]any{"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
			"gridPos":     map[string]any{"x": x, "y": y, "w": p.w, "h": p.h},
			"fieldConfig": map[string]any{"defaults": map[string]any{"unit": p.unit}, "overrides": []any{}},
			"options":     map[string]any{"legend": map[string]any{"displayMode": "list", "placement": "bottom"}},
			"targets":     targets,
		})
		x += p.w
		rowH = max(rowH, p.h)
	}
	dash := map[string]any{
		"__inputs": []any{map[string]any{
			"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
			"pluginId": "prometheus", "pluginName": "Prometheus",
			"description": "The Prometheus that scrapes the supervisors' /metrics (port 15000)",
		}},
		"uid":           "forge-supervisor",
		"title":         "forge-supervisor: agent egress",
		"description":   "Egress decisions, paths, latency and health of forge-supervisor (generated by forge-supervisor generate dashboard).",
		"tags":          []string{"forge-supervisor", "egress"},
		"schemaVersion": 39,
		"version":       1,
		"editable":      true,
		"time":          map[string]any{"from": "now-6h", "to": "now"},
		"refresh":       "30s",
		"templating": map[string]any{"list": []any{map[string]any{
			"name": "pod", "label": "Pod", "type": "query",
			"datasource": map[string]any{"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
			"query":      map[string]any{"query": "label_values(forge_supervisor_interception_mode, pod)", "refId": "pods"},
			"definition": "label_values(forge_supervisor_interception_mode, pod)",
			"includeAll": true, "multi": true, "allValue": ".*", "refresh": 2,
			"current": map[string]any{"text": "All", "value": "$__all"},
		}}},
		"panels": panels,
	}
	b, err := json.MarshalIndent(dash, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("dashboard: encode: %w", err)
	}
	return append(b, '\n'), nil
}
