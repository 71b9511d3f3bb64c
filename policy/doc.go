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
// "*.internal" are real use); "*foo.com", "foo.*.com", ports and paths are
// refused with a hint. Names are compared in normal form (see
// NormalizeName: what DNS accepts, underscores and "--" included). An IP
// address in a domain list (Forge adds them from model, MCP and OTel URLs)
// is a rule for that address on ports 80 and 443.
//
// Entries are trimmed as Forge trims them. Entries Forge writes verbatim
// that can never match anything — empty, a bare "*", an unexpanded
// "$VARIABLE", a URL — are skipped with one warning each (Policy.Warnings),
// never taken as allow-all.
//
// allowed_tcp entries open one port ("host:5432") or every port
// ("host:*") for a name, a wildcard, or an IP literal (IPv6 in brackets);
// an IP literal matches the destination address itself.
//
// allowed_private_cidrs have Forge's meaning: an exemption from the
// private-IP block for the addresses inside, never a grant — a domain or
// allowed_tcp rule must still allow the connection. Any prefix loads;
// one holding no private address (it exempts nothing) or every private
// range of its family ("0.0.0.0/0": the same as allow_private_ips for it)
// loads with a warning. An IP-literal rule for a private address allows
// only with allow_private_ips or a covering CIDR (a warning says when
// neither is there); one for an always-blocked address is skipped with a
// warning. Without allow_private_ips (Forge never writes it) private
// destinations are denied, and a warning says so.
//
// Unknown fields (including case variants: "Mode") are warnings with a
// typo hint, so a field a newer Forge adds does not stop the agent;
// Options.Strict makes them errors. Duplicate fields, wrong types and
// trailing data are errors that name the field, the entry index and
// value, and how to fix it; broken JSON is an error with its line and
// column. A leading UTF-8 byte-order mark is ignored.
//
// # Addresses
//
// Cloud metadata endpoints (of every major cloud) are always denied, as
// are loopback, unspecified, multicast, broadcast and reserved ranges;
// see ClassifyAddr. IPv4-mapped IPv6 is treated as its IPv4 address
// everywhere; every other embedding of IPv4 in IPv6 (SIIT, NAT64 and its
// local-use prefix, 6to4, Teredo, IPv4-compatible) is classified by the
// IPv4 address it embeds, but allowed_private_cidrs and allowed_tcp match
// the address as written.
//
// A Policy is built once by Parse or Load and never changes; a reload
// builds a new one and swaps a pointer. Lookups are map probes whose cost
// does not grow with the number of rules.
package policy
