package forgeyaml

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/forge/forge-supervisor/policy"
)

// egressKeys are Forge's EgressRef fields, including the two its newer
// releases read (allowed_private_cidrs, allowed_tcp) but drop from
// egress_allowlist.json.
var egressKeys = []string{
	"profile", "mode", "allowed_domains", "capabilities",
	"allow_private_ips", "allowed_private_cidrs", "allowed_tcp",
}

// egress resolves the egress: section as Forge's resolver does
// (forge-core/security/resolver.go): empty profile → strict, empty mode →
// deny-all; in allowlist mode allowed_domains is the explicit list plus the
// endpoint hosts, tool_domains what the tools imply, all_domains the sorted
// union with the capability bundles. Deny-all and dev-open carry no
// domains. The endpoints' ports and IP literals become allowed_tcp rules.
func (p *problems) egress(n *yaml.Node, eps []endpoint, tools []string) Allowlist {
	f := p.fields(n, "egress", egressKeys)
	a := Allowlist{Profile: defaultProfile, Mode: defaultMode}
	if v, ok := p.str(f["profile"].val, "egress.profile"); ok && v != "" {
		if !contains(forgeProfiles, v) {
			p.at(f["profile"].val, "egress.profile", "%q is not a profile; use strict, standard or permissive", v)
		}
		a.Profile = v
	}
	if v, ok := p.str(f["mode"].val, "egress.mode"); ok && v != "" {
		if !contains(forgeModes, v) {
			p.at(f["mode"].val, "egress.mode", "%q is not a mode; use deny-all, allowlist or dev-open", v)
		}
		a.Mode = v
	}
	a.AllowPrivateIPs = p.boolean(f["allow_private_ips"].val, "egress.allow_private_ips")
	ctx := ruleContext{allowPrivate: a.AllowPrivateIPs != nil && *a.AllowPrivateIPs}

	for _, it := range p.strs(f["allowed_private_cidrs"].val, "egress.allowed_private_cidrs") {
		if p.checkRule(it.node, it.key, "allowed_private_cidrs", it.val, ctx) {
			a.AllowedPrivateCIDRs = append(a.AllowedPrivateCIDRs, it.val)
			ctx.cidrs = append(ctx.cidrs, it.val)
		}
	}
	explicit := p.strs(f["allowed_domains"].val, "egress.allowed_domains")
	for _, it := range explicit {
		p.checkRule(it.node, it.key, "allowed_domains", it.val, ctx)
	}
	tcp := map[string]bool{}
	for _, it := range p.strs(f["allowed_tcp"].val, "egress.allowed_tcp") {
		if p.checkRule(it.node, it.key, "allowed_tcp", it.val, ctx) && !tcp[it.val] {
			tcp[it.val] = true
			a.AllowedTCP = append(a.AllowedTCP, it.val)
		}
	}
	var caps []string
	for _, it := range p.strs(f["capabilities"].val, "egress.capabilities") {
		if _, ok := forgeCapabilityBundles[it.val]; !ok {
			p.at(it.node, it.key, "unknown capability bundle %q%s", it.val, suggest(it.val, bundleNames()))
			continue
		}
		caps = append(caps, it.val)
	}

	a.AllowedDomains, a.ToolDomains, a.AllDomains = []string{}, []string{}, []string{}
	if a.Mode != modeAllowlist {
		return a // Forge: deny-all has no domains, dev-open needs none
	}
	for _, it := range explicit {
		a.AllowedDomains = append(a.AllowedDomains, it.val)
	}
	a.AllowedDomains = append(a.AllowedDomains, forgeDomains(eps)...)
	for _, ep := range eps {
		if ep.isLocal() {
			continue // allowed_local_ports (localEndpoints), not egress
		}
		if ep.host != "" && !p.checkRule(ep.node, ep.key, "allowed_domains", ep.host, ctx) {
			continue
		}
		rule := ep.tcpRule()
		if rule == "" || tcp[rule] {
			continue
		}
		if p.checkRule(ep.node, ep.key, "allowed_tcp", rule, ctx) {
			tcp[rule] = true
			a.AllowedTCP = append(a.AllowedTCP, rule)
		}
	}
	a.ToolDomains = dedupInOrder(expand(forgeToolDomains, tools))
	all := append(append(append([]string{}, a.AllowedDomains...), a.ToolDomains...), expand(forgeCapabilityBundles, caps)...)
	a.AllDomains = dedupSorted(all)
	return a
}

// ruleContext is what an entry's validity depends on: an IP-literal rule
// for a private address needs allow_private_ips or a covering CIDR.
type ruleContext struct {
	allowPrivate bool
	cidrs        []string
}

// checkRule validates one entry with the supervisor's own policy loader,
// so forge.yaml accepts exactly what the runtime accepts, and reports the
// loader's reason at the entry's line.
func (p *problems) checkRule(n *yaml.Node, key, field, entry string, ctx ruleContext) bool {
	doc := map[string]any{"mode": modeAllowlist, field: []string{entry}, "allow_private_ips": ctx.allowPrivate}
	if field != "allowed_private_cidrs" && len(ctx.cidrs) > 0 {
		doc["allowed_private_cidrs"] = ctx.cidrs
	}
	data, err := json.Marshal(doc)
	if err == nil {
		_, err = policy.ParseWith(data, policy.Options{Strict: true})
	}
	if err == nil {
		return true
	}
	msg := strings.TrimPrefix(err.Error(), "policy: ")
	msg = strings.TrimPrefix(msg, fmt.Sprintf("%s[0] %q: ", field, entry))
	p.at(n, key, "%q: %s", entry, msg)
	return false
}

func bundleNames() []string {
	names := make([]string, 0, len(forgeCapabilityBundles))
	for n := range forgeCapabilityBundles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// expand is Forge's InferToolDomains / ResolveCapabilities: the table's
// domains for each name, first occurrence kept.
func expand(table map[string][]string, names []string) []string {
	var out []string
	for _, n := range names {
		out = append(out, table[n]...)
	}
	return out
}

func dedupInOrder(items []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, it := range items {
		if it != "" && !seen[it] {
			seen[it] = true
			out = append(out, it)
		}
	}
	return out
}

func dedupSorted(items []string) []string {
	out := dedupInOrder(items)
	sort.Strings(out)
	return out
}
