package policy

import (
	"net/netip"
	"slices"
)

// PortsFor lists the ports some rule opens for the normalized name: 80 and
// 443 for a domain rule, each allowed_tcp host:port; anyPort is set when a
// host:* rule covers it. It is a superset to be confirmed with CheckName
// per port (the kernel verdict path fills its fast sets from it); a Rego
// policy's rules cannot be enumerated, so for one it lists 80 and 443 and
// leaves the check to CheckName.
func (p *Policy) PortsFor(name string) (ports []uint16, anyPort bool) {
	if p == nil || p.mode != ModeAllowlist {
		return nil, false
	}
	if p.rego != nil {
		return []uint16{80, 443}, false
	}
	add := func(r *portRules) {
		if r == nil {
			return
		}
		if r.web != "" {
			ports = append(ports, 80, 443)
		}
		for port := range r.ports {
			ports = append(ports, port)
		}
		anyPort = anyPort || r.any != ""
	}
	add(p.names.exact[name])
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			add(p.names.wild[name[i+1:]])
		}
	}
	slices.Sort(ports)
	return slices.Compact(ports), anyPort
}

// AddrRules lists the allowed_tcp IP-literal rules with an explicit port,
// as address:port pairs (host:* rules and allowed_private_cidrs are not
// listed: they cover ranges, not destinations).
func (p *Policy) AddrRules() []netip.AddrPort {
	if p == nil || p.rego != nil {
		return nil
	}
	var out []netip.AddrPort
	for ip, r := range p.ips {
		for port := range r.ports {
			out = append(out, netip.AddrPortFrom(ip, port))
		}
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}
