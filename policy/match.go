package policy

import (
	"net/netip"
	"slices"
	"strings"
)

// portRules are the rules that share one key (a name, a wildcard suffix or
// an IP) and the ports each opens. Lookup is constant time whatever the
// number of ports listed.
type portRules struct {
	web   string            // a domain-list rule: opens ports 80 and 443, as Forge's NetworkPolicy does
	any   string            // an allowed_tcp "host:*" rule: opens every port
	ports map[uint16]string // allowed_tcp "host:port" rules
	first string            // the rule reported when the question is "any port" (port 0)
}

// match returns the rule that opens port on this key. Port 0 asks whether
// any port is open. When several rules open the port, the most specific
// kind wins: the domain rule, then host:port, then host:*.
func (r *portRules) match(port uint16) (string, bool) {
	switch {
	case port == 0:
		return r.first, r.first != ""
	case r.web != "" && (port == 80 || port == 443):
		return r.web, true
	}
	if rule, ok := r.ports[port]; ok {
		return rule, true
	}
	return r.any, r.any != ""
}

// addWeb, addAny and addPort record a rule; the first rule recorded for a
// key is the one reported for "any port", so reports are deterministic.
func (r *portRules) addWeb(rule string) {
	if r.web == "" {
		r.web = rule
	}
	r.noteFirst(rule)
}

func (r *portRules) addAny(rule string) {
	if r.any == "" {
		r.any = rule
	}
	r.noteFirst(rule)
}

func (r *portRules) addPort(port uint16, rule string) {
	if r.ports == nil {
		r.ports = make(map[uint16]string)
	}
	if _, ok := r.ports[port]; !ok {
		r.ports[port] = rule
	}
	r.noteFirst(rule)
}

func (r *portRules) noteFirst(rule string) {
	if r.first == "" {
		r.first = rule
	}
}

// nameTable holds name rules: exact names in one map, wildcard rules in
// another keyed by the suffix after "*.". A lookup walks the name's label
// boundaries (at most 127 for a 253-octet name), never the rules, so its
// cost does not grow with the policy.
type nameTable struct {
	exact map[string]*portRules
	wild  map[string]*portRules
	// wildDepths has bit n set when some wildcard suffix has n labels, so
	// the walk probes only suffixes of a length that exists (a 253-octet
	// name has at most 127 labels).
	wildDepths [2]uint64
}

func labelCount(name string) int {
	return strings.Count(name, ".") + 1
}

func (t *nameTable) hasWildDepth(n int) bool {
	return n < 128 && t.wildDepths[n/64]&(1<<(n%64)) != 0
}

func newNameTable() nameTable {
	return nameTable{exact: make(map[string]*portRules), wild: make(map[string]*portRules)}
}

func (t *nameTable) entry(key string, wildcard bool) *portRules {
	m := t.exact
	if wildcard {
		m = t.wild
	}
	r := m[key]
	if r == nil {
		r = &portRules{}
		m[key] = r
		if n := labelCount(key); wildcard && n < 128 {
			t.wildDepths[n/64] |= 1 << (n % 64)
		}
	}
	return r
}

// lookup finds the rule that allows the normalized name on port, trying
// the exact name first and then wildcard suffixes from the longest (most
// specific) to the shortest. A wildcard "*.example.com" is stored under
// "example.com" and so matches "a.example.com" and "a.b.example.com" but
// never "example.com" itself: the walk only looks at suffixes that follow
// a dot inside the name. When no rule opens the port, nearest is the most
// specific rule that matched the name (for a port_not_allowed report).
func (t *nameTable) lookup(name string, port uint16) (rule string, ok bool, nearest string) {
	if r := t.exact[name]; r != nil {
		if rule, ok := r.match(port); ok {
			return rule, true, ""
		}
		nearest = r.first
	}
	if len(t.wild) == 0 {
		return "", false, nearest
	}
	depth := labelCount(name) // labels in the suffix after the next dot, plus one
	for i := 0; i < len(name); i++ {
		if name[i] != '.' {
			continue
		}
		depth--
		if !t.hasWildDepth(depth) {
			continue
		}
		r := t.wild[name[i+1:]]
		if r == nil {
			continue
		}
		if rule, ok := r.match(port); ok {
			return rule, true, ""
		}
		if nearest == "" {
			nearest = r.first
		}
	}
	return "", false, nearest
}

// cidrTable holds allowed_private_cidrs grouped by prefix length: a lookup
// masks the address once per distinct length (at most 33 + 129) and probes
// a map, so it does not grow with the number of CIDRs.
type cidrTable struct {
	levels []cidrLevel // longest prefix first: the most specific CIDR is reported
}

type cidrLevel struct {
	bits  int
	is6   bool
	rules map[netip.Prefix]string
}

func (t *cidrTable) add(p netip.Prefix, rule string) {
	for i := range t.levels {
		l := &t.levels[i]
		if l.bits == p.Bits() && l.is6 == p.Addr().Is6() {
			if _, dup := l.rules[p]; !dup {
				l.rules[p] = rule
			}
			return
		}
	}
	t.levels = append(t.levels, cidrLevel{bits: p.Bits(), is6: p.Addr().Is6(), rules: map[netip.Prefix]string{p: rule}})
	slices.SortFunc(t.levels, func(a, b cidrLevel) int { return b.bits - a.bits })
}

// lookup returns the rule of the most specific CIDR containing the
// canonical address ip.
func (t *cidrTable) lookup(ip netip.Addr) (string, bool) {
	for i := range t.levels {
		l := &t.levels[i]
		if l.is6 != ip.Is6() {
			continue
		}
		p, err := ip.Prefix(l.bits)
		if err != nil {
			continue
		}
		if rule, ok := l.rules[p]; ok {
			return rule, true
		}
	}
	return "", false
}

func (t *cidrTable) count() int {
	n := 0
	for _, l := range t.levels {
		n += len(l.rules)
	}
	return n
}
