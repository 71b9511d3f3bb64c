package deploy

import (
	"fmt"
	"strings"

	fdns "github.com/forge/forge-supervisor/dns"
)

// Egress is what a NetworkPolicy can express of an allowlist: ports and
// address ranges, never names. The supervisor decides on names; the
// NetworkPolicy is a second, coarser layer that agrees with it.
type Egress struct {
	// Mode is the policy's mode: deny-all, allowlist or dev-open.
	Mode string
	// Domains are the allowlist's names, written as Forge's annotation so
	// DNS-aware policy controllers can use them.
	Domains []string
	// TCPPorts are the ports of allowed_tcp rules (and endpoints), besides
	// 80 and 443, which every domain rule opens.
	TCPPorts []uint16
	// AnyTCPPort: some allowed_tcp rule opens every port (host:*).
	AnyTCPPort bool
	// CIDRs are allowed_private_cidrs: every TCP port inside.
	CIDRs []string
}

// forgeDomainsAnnotation is the annotation Forge's own NetworkPolicy
// carries its allowlist in.
const forgeDomainsAnnotation = "ai.initializ.forge/allowed-domains"

// dnsPort is where the pod's resolver (kube-dns) listens; the supervisor's
// DNS proxy forwards allowed questions there.
const dnsPort = fdns.StandardPort

// networkPolicy renders the NetworkPolicy equivalent to Forge's (egress on
// 80/443 in allowlist and dev-open, nothing in deny-all) plus what the
// supervisor allows beyond it: DNS to the upstream resolver, the
// allowed_tcp ports, the allowed_private_cidrs. Ingress is not restricted.
func networkPolicy(o Options) []byte {
	e := o.NetworkPolicy
	var d yamlDoc
	d.comment(0, `Defence in depth: the same egress as the supervisor's policy, in the terms a
NetworkPolicy has (ports and CIDRs, not names). The supervisor still decides
every connection by name; this layer only stops what no policy could allow.`)
	d.line(0, "apiVersion: networking.k8s.io/v1")
	d.line(0, "kind: NetworkPolicy")
	d.line(0, "metadata:")
	d.line(1, "name: %s", yamlString(o.Name+"-egress"))
	d.line(1, "namespace: %s", yamlString(o.Namespace))
	d.line(1, "labels:")
	o.labels(&d, 2)
	if e.Mode == "allowlist" && len(e.Domains) > 0 {
		d.line(1, "annotations:")
		d.line(2, "%s: %s", forgeDomainsAnnotation, yamlString(strings.Join(e.Domains, ",")))
	}
	d.line(0, "spec:")
	d.line(1, "podSelector:")
	d.line(2, "matchLabels:")
	d.line(3, "app.kubernetes.io/name: %s", yamlString(o.Name))
	d.line(1, "policyTypes: [\"Egress\"]")
	if e.Mode == "deny-all" {
		d.comment(1, "deny-all: no egress at all, not even DNS (the supervisor answers no name).")
		d.line(1, "egress: []")
		return d.b.Bytes()
	}
	d.line(1, "egress:")
	d.comment(1, "DNS: the supervisor's DNS proxy forwards allowed questions to the pod's resolver.")
	d.line(1, "- ports:")
	d.line(2, "- protocol: UDP")
	d.line(2, "  port: %d", dnsPort)
	d.line(2, "- protocol: TCP")
	d.line(2, "  port: %d", dnsPort)
	if e.Mode == "dev-open" || e.AnyTCPPort {
		why := "dev-open: every TCP port (the supervisor still blocks private and metadata addresses)."
		if e.Mode != "dev-open" {
			why = "an allowed_tcp rule opens every port of a host (host:*)."
		}
		d.comment(1, why)
		d.line(1, "- ports:")
		d.line(2, "- protocol: TCP")
	} else {
		d.comment(1, "The web ports every domain rule opens, and the allowed_tcp ports.")
		d.line(1, "- ports:")
		for _, p := range append([]uint16{80, 443}, e.TCPPorts...) {
			d.line(2, "- protocol: TCP")
			d.line(2, "  port: %d", p)
		}
	}
	if len(e.CIDRs) > 0 {
		d.comment(1, "allowed_private_cidrs: every TCP port inside.")
		d.line(1, "- to:")
		for _, c := range e.CIDRs {
			d.line(2, "- ipBlock:")
			d.line(4, "cidr: %s", yamlString(c))
		}
		d.line(2, "ports:")
		d.line(2, "- protocol: TCP")
	}
	return d.b.Bytes()
}

func (e *Egress) validate() error {
	switch e.Mode {
	case "deny-all", "allowlist", "dev-open":
	default:
		return fmt.Errorf("deploy: network policy: mode %q is not deny-all, allowlist or dev-open", e.Mode)
	}
	for _, n := range append(append([]string(nil), e.Domains...), e.CIDRs...) {
		if !blockSafe(n) || strings.ContainsAny(n, "\n\t ,") {
			return fmt.Errorf("deploy: network policy: %q is not a name or CIDR", n)
		}
	}
	return nil
}
