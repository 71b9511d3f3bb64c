package forgeyaml

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/forge/forge-supervisor/policy"
)

// YAML tags the walker tells apart (yaml.v3 resolves every plain scalar to
// one of them).
const (
	tagNull  = "!!null"
	tagBool  = "!!bool"
	tagInt   = "!!int"
	tagStr   = "!!str"
	tagFloat = "!!float"
)

// field is one entry of a mapping: its key node (for the position of an
// unknown key) and its value node.
type field struct {
	key, val *yaml.Node
}

// fields returns the entries of the mapping n under path, keyed by name.
// Keys outside known are reported with the nearest known key as a
// suggestion; known == nil accepts every key (a section Forge owns and the
// supervisor only reads from). Duplicate keys, non-string keys, anchors,
// aliases and merge keys are reported: each has a meaning a reader of the
// file could get wrong.
func (p *problems) fields(n *yaml.Node, path string, known []string) map[string]field {
	if n == nil || isNull(n) {
		return nil
	}
	if !p.plain(n, path) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.at(n, path, "must be a mapping (key: value lines), not %s", describe(n))
		return nil
	}
	out := make(map[string]field, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		sub := join(path, name)
		switch {
		case k.Tag == "!!merge":
			p.at(k, path, "merge keys (<<) are not supported; write the keys out")
			continue
		case k.Kind != yaml.ScalarNode || (k.Tag != tagStr && k.Tag != tagInt && k.Tag != tagBool):
			p.at(k, path, "keys must be plain words, not %s", describe(k))
			continue
		}
		if _, dup := out[name]; dup {
			p.at(k, sub, "appears twice in the same mapping; keep one")
			continue
		}
		if known != nil && !contains(known, name) {
			p.at(k, sub, "unknown key%s", suggest(name, known))
			continue
		}
		if !p.plain(v, sub) {
			continue
		}
		out[name] = field{key: k, val: v}
	}
	return out
}

// plain refuses anchors and aliases: an alias can make one edit change many
// rules, and walking aliases of aliases can take exponential time.
func (p *problems) plain(n *yaml.Node, path string) bool {
	switch {
	case n.Kind == yaml.AliasNode:
		p.at(n, path, "aliases (*name) are not supported; write the value out")
		return false
	case n.Anchor != "":
		p.at(n, path, "anchors (&%s) are not supported; write the value out", n.Anchor)
		return false
	}
	return true
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == tagNull
}

// str returns a scalar's text. Forge types these fields as strings, and
// yaml.v3 reads any scalar (a number, a boolean) into a string, so any
// scalar is accepted; null is "unset".
func (p *problems) str(n *yaml.Node, path string) (string, bool) {
	if n == nil || isNull(n) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		p.at(n, path, "must be a single value, not %s", describe(n))
		return "", false
	}
	return n.Value, true
}

// boolean reads true/false; unset (absent or null) is nil, which some keys
// (allow_private_ips) tell apart from false.
func (p *problems) boolean(n *yaml.Node, path string) *bool {
	if n == nil || isNull(n) {
		return nil
	}
	var b bool
	if n.Kind != yaml.ScalarNode || n.Tag != tagBool || n.Decode(&b) != nil {
		p.at(n, path, "must be true or false, not %s", describe(n))
		return nil
	}
	return &b
}

// port reads a TCP port number 1..65535.
func (p *problems) port(n *yaml.Node, path string) (uint16, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != tagInt {
		p.at(n, path, "must be a port number 1..65535, not %s", describe(n))
		return 0, false
	}
	v, err := strconv.ParseUint(n.Value, 10, 16)
	if err != nil || v == 0 {
		p.at(n, path, "%s is not a port number 1..65535", n.Value)
		return 0, false
	}
	return uint16(v), true
}

// item is one entry of a list of strings, with its node for positions.
type item struct {
	val  string
	node *yaml.Node
	key  string // path of the entry: list[i]
}

// strs reads a sequence of scalars. Forge types these as []string, which a
// single value does not decode into, so a scalar is refused with a hint.
func (p *problems) strs(n *yaml.Node, path string) []item {
	if n == nil || isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.at(n, path, "must be a list (- item lines or [a, b]), not %s", describe(n))
		return nil
	}
	out := make([]item, 0, len(n.Content))
	for i, e := range n.Content {
		key := fmt.Sprintf("%s[%d]", path, i)
		if !p.plain(e, key) {
			continue
		}
		if e.Kind != yaml.ScalarNode || isNull(e) {
			p.at(e, key, "must be a single value, not %s", describe(e))
			continue
		}
		out = append(out, item{val: e.Value, node: e, key: key})
	}
	return out
}

// seq returns the entries of a sequence of mappings (mcp.servers,
// model.fallbacks, ...).
func (p *problems) seq(n *yaml.Node, path string) []*yaml.Node {
	if n == nil || isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.at(n, path, "must be a list, not %s", describe(n))
		return nil
	}
	return n.Content
}

// describe names a node's kind for messages: "a list", "the number 5".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case tagNull:
		return "an empty value"
	case tagBool:
		return "the boolean " + n.Value
	case tagInt, tagFloat:
		return "the number " + n.Value
	}
	return strconv.Quote(n.Value)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// suggest names the known key nearest to name (by edit distance), or lists
// the known keys when none is close.
func suggest(name string, known []string) string {
	best, bestD := "", 1<<30
	for _, k := range known {
		if d := policy.EditDistance(strings.ToLower(name), k); d < bestD {
			best, bestD = k, d
		}
	}
	if best != "" && bestD <= max(2, len(name)/3) {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	sorted := append([]string(nil), known...)
	sort.Strings(sorted)
	return "; known keys: " + strings.Join(sorted, ", ")
}
