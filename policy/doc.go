// Package policy is forge-supervisor's egress policy: the model of Forge's
// egress_allowlist.json, its strict loader, and the matcher that decides
// every TCP connection (Policy.Decide) and every DNS question
// (Policy.CheckName).
//
// # File format
//
//	{ "profile": "standard", "mode": "allowlist",
//	  "allowed_domains": ["api.example.com"], "tool_domains": ["api.tavily.com"],
//	  "all_domains": ["api.example.com", "api.tavily.com"],
//	  "allowed_tcp": ["db.example.com:5432", "*.svc.example:8443", "ssh.example.com:*",
//	                  "198.51.100.7:5432", "[2001:db8::7]:22"],
//	  "allowed_private_cidrs": ["10.0.0.0/8"],
//	  "allow_private_ips": false, "verify_sni_ip": true }
//
// mode is required: "deny-all" (no egress), "allowlist" (only what rules
// allow) or "dev-open" (everything except always-blocked and, unless
// allow_private_ips, private destinations). Rules are validated in every
// mode but only allowlist consults them (allowed_private_cidrs also apply
// in dev-open). profile is free-form but must not be empty when present.
//
// Domain rules are the union of allowed_domains, tool_domains and
// all_domains and open ports 80 and 443, as Forge's NetworkPolicy does. A
// rule is an exact name or "*." plus a name; the wildcard matches strict
// subdomains ("*.github.com" matches "api.github.com" and "a.b.github.com",
// never "github.com"). A single-label suffix such as "*.internal" or
// "*.com" is accepted as written (it is explicit, and cluster suffixes like
// "*.internal" are real use); a bare "*", "*foo.com", "foo.*.com", ports,
// schemes and IP literals are refused with a hint. Names are compared in
// normal form (see NormalizeName).
//
// allowed_tcp entries open one port ("host:5432") or every port
// ("host:*") for a name, a wildcard, or an IP literal (IPv6 in brackets);
// an IP literal matches the destination address itself. An IP-literal rule
// for a private address needs allow_private_ips or a covering
// allowed_private_cidrs entry, and one for an always-blocked address is
// refused, since either could never allow anything.
//
// allowed_private_cidrs allow every port to destinations inside, with no
// name needed; prefixes wider than /8 (IPv4) or /7 (IPv6) are refused
// (that is dev-open's job).
//
// Unknown fields (including case variants: "Mode"), duplicate fields, wrong
// types and trailing data are errors that name the field, the entry index
// and value, and how to fix it.
//
// # Addresses
//
// Cloud metadata endpoints are always denied, as are loopback, unspecified,
// multicast, broadcast and reserved ranges; see ClassifyAddr.
// IPv4-mapped IPv6 is treated as its IPv4 address everywhere; NAT64
// (64:ff9b::/96) and 6to4 addresses are classified by the IPv4 address
// they embed, but allowed_private_cidrs and allowed_tcp match the address
// as written.
//
// A Policy is built once by Parse or Load and never changes; a reload
// builds a new one and swaps a pointer. Lookups are map probes whose cost
// does not grow with the number of rules.
package policy
