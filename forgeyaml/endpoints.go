package forgeyaml

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// endpoint is a URL elsewhere in forge.yaml that Forge merges into the
// allowlist (model.base_url, mcp.servers[].url, auth issuers, the OTLP
// collector), with the port Forge strips and the supervisor keeps.
type endpoint struct {
	group string // "auth", "mcp", "otel", "llm": Forge's merge order
	key   string
	node  *yaml.Node
	host  string     // a name, or "" when addr is set
	addr  netip.Addr // an IP literal
	port  uint16
}

// endpoints collects them in Forge's merge order (egress_stage.go: auth,
// MCP, OTel, LLM). A URL that cannot be reached as written is an error
// here; Forge skips it silently and the agent would fail at runtime.
func (p *problems) endpoints(top map[string]field) []endpoint {
	var eps []endpoint
	add := func(group, key string, n *yaml.Node) {
		raw, ok := p.str(n, key)
		if !ok || raw == "" {
			return
		}
		ep, err := parseEndpoint(raw)
		if err != nil {
			p.at(n, key, "%q: %v", raw, err)
			return
		}
		ep.group, ep.key, ep.node = group, key, n
		eps = append(eps, ep)
	}

	// auth.providers[]: oidc issuer and jwks_url, http_verifier url.
	auth := p.fields(top["auth"].val, "auth", nil)
	for i, prov := range p.seq(auth["providers"].val, "auth.providers") {
		key := fmt.Sprintf("auth.providers[%d]", i)
		f := p.fields(prov, key, nil)
		typ, _ := p.str(f["type"].val, key+".type")
		settings := p.fields(f["settings"].val, key+".settings", nil)
		switch typ {
		case "oidc":
			add("auth", key+".settings.issuer", settings["issuer"].val)
			add("auth", key+".settings.jwks_url", settings["jwks_url"].val)
		case "http_verifier":
			add("auth", key+".settings.url", settings["url"].val)
		}
	}
	// mcp.servers[]: url, and the OAuth endpoints of oauth servers.
	mcp := p.fields(top["mcp"].val, "mcp", nil)
	for i, s := range p.seq(mcp["servers"].val, "mcp.servers") {
		key := fmt.Sprintf("mcp.servers[%d]", i)
		f := p.fields(s, key, nil)
		add("mcp", key+".url", f["url"].val)
		a := p.fields(f["auth"].val, key+".auth", nil)
		if typ, _ := p.str(a["type"].val, key+".auth.type"); typ == "oauth" {
			add("mcp", key+".auth.authorize_url", a["authorize_url"].val)
			add("mcp", key+".auth.token_url", a["token_url"].val)
		}
	}
	// observability.tracing.endpoint, when tracing is enabled.
	obs := p.fields(top["observability"].val, "observability", nil)
	tr := p.fields(obs["tracing"].val, "observability.tracing", nil)
	if on := p.boolean(tr["enabled"].val, "observability.tracing.enabled"); on != nil && *on {
		add("otel", "observability.tracing.endpoint", tr["endpoint"].val)
	}
	// model.base_url and model.fallbacks[].base_url.
	model := p.fields(top["model"].val, "model", nil)
	add("llm", "model.base_url", model["base_url"].val)
	for i, fb := range p.seq(model["fallbacks"].val, "model.fallbacks") {
		key := fmt.Sprintf("model.fallbacks[%d]", i)
		f := p.fields(fb, key, nil)
		add("llm", key+".base_url", f["base_url"].val)
	}
	return eps
}

// parseEndpoint reads "scheme://host[:port]/..." (http and https imply 80
// and 443) or a bare "host:port" (how OTLP/gRPC endpoints are written).
func parseEndpoint(raw string) (endpoint, error) {
	var host, portText string
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			return endpoint{}, fmt.Errorf("not a URL: %v", err)
		}
		if u.Host == "" || u.Hostname() == "" {
			return endpoint{}, fmt.Errorf("no host; write a URL like https://api.example.com/v1")
		}
		host, portText = u.Hostname(), u.Port()
		if portText == "" {
			switch strings.ToLower(u.Scheme) {
			case "http":
				portText = "80"
			case "https":
				portText = "443"
			default:
				return endpoint{}, fmt.Errorf("scheme %q has no default port; write the port, like %s://%s:4317", u.Scheme, u.Scheme, u.Host)
			}
		}
	} else {
		h, pt, err := net.SplitHostPort(raw)
		if err != nil {
			return endpoint{}, fmt.Errorf("write a URL like https://api.example.com/v1 or host:port like collector.example.com:4317")
		}
		host, portText = h, pt
	}
	n, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || n == 0 {
		return endpoint{}, fmt.Errorf("port %q is not a port number 1..65535", portText)
	}
	ep := endpoint{port: uint16(n)}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return endpoint{}, fmt.Errorf("a zoned address (with %%) cannot be allowed")
		}
		ep.addr = a.Unmap()
	} else {
		ep.host = strings.ToLower(strings.TrimSuffix(host, "."))
	}
	return ep, nil
}

// isLocal: the endpoint is a listener in the agent's own pod (Forge
// always allows localhost). It is not egress: the supervisor's equivalent
// is allowed_local_ports, never an allowlist rule (loopback is always
// blocked there).
func (ep endpoint) isLocal() bool {
	if ep.addr.IsValid() {
		return ep.addr.IsLoopback()
	}
	return ep.host == "localhost" || strings.HasSuffix(ep.host, ".localhost")
}

// isWebPort: a domain rule opens 80 and 443 (Forge's NetworkPolicy ports),
// so an endpoint on either needs no allowed_tcp rule.
func isWebPort(port uint16) bool { return port == 80 || port == 443 }

// tcpRule is the allowed_tcp entry an endpoint needs, or "" when its
// domain rule covers it.
func (ep endpoint) tcpRule() string {
	port := strconv.Itoa(int(ep.port))
	switch {
	case ep.addr.IsValid() && ep.addr.Is6():
		return "[" + ep.addr.String() + "]:" + port
	case ep.addr.IsValid():
		return ep.addr.String() + ":" + port
	case !isWebPort(ep.port):
		return ep.host + ":" + port
	}
	return ""
}

// forgeDomains are the host names Forge merges into allowed_domains for a
// group of endpoints: sorted and deduplicated for auth and MCP, in order
// for the rest (auth_domains.go, mcp_domains.go, otel_domains.go,
// llm_provider_domains.go). IP literals are left out: the supervisor's
// domain lists hold names, and the address becomes an allowed_tcp rule.
func forgeDomains(eps []endpoint) []string {
	var out []string
	for _, group := range []string{"auth", "mcp", "otel", "llm"} {
		seen := map[string]bool{}
		var hosts []string
		for _, ep := range eps {
			if ep.group == group && ep.host != "" && !ep.isLocal() && !seen[ep.host] {
				seen[ep.host] = true
				hosts = append(hosts, ep.host)
			}
		}
		if group == "auth" || group == "mcp" {
			sort.Strings(hosts)
		}
		out = append(out, hosts...)
	}
	return out
}
