package ops

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Field names of egress_allowlist.json the tools read and write.
const (
	fieldMode            = "mode"
	fieldAllowedDomains  = "allowed_domains"
	fieldToolDomains     = "tool_domains"
	fieldAllDomains      = "all_domains"
	fieldAllowedTCP      = "allowed_tcp"
	fieldAllowedCIDRs    = "allowed_private_cidrs"
	fieldAllowPrivateIPs = "allow_private_ips"
)

// domainFields are the lists of domain rules (Forge writes all_domains as
// the union of the other two).
var domainFields = []string{fieldAllowedDomains, fieldToolDomains, fieldAllDomains}

// allowlist is an egress_allowlist.json document as written: its fields
// in file order with their raw values, so the tools can change a list and
// write the rest back untouched. policy.Parse has validated it already.
type allowlist struct {
	keys    []string
	values  map[string]json.RawMessage
	changed map[string]bool // fields set since reading: re-rendered, the rest written back as read
}

func readAllowlist(data []byte) (*allowlist, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	a := &allowlist{values: map[string]json.RawMessage{}, changed: map[string]bool{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		a.keys = append(a.keys, key)
		a.values[key] = raw
	}
	return a, nil
}

// strings returns a list field's entries (nil when absent or null).
func (a *allowlist) strings(field string) []string {
	var out []string
	_ = json.Unmarshal(a.values[field], &out)
	return out
}

func (a *allowlist) str(field string) string {
	var s string
	_ = json.Unmarshal(a.values[field], &s)
	return s
}

func (a *allowlist) boolean(field string) bool {
	var b bool
	_ = json.Unmarshal(a.values[field], &b)
	return b
}

// domainRules is the union of the domain lists, in first-seen order.
func (a *allowlist) domainRules() []string {
	var out []string
	for _, f := range domainFields {
		for _, r := range a.strings(f) {
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	return out
}

// without returns the document with entry removed from every list named.
func (a *allowlist) without(entry string, fields ...string) []byte {
	b := a.clone()
	for _, f := range fields {
		if _, ok := b.values[f]; !ok {
			continue
		}
		list := slices.DeleteFunc(b.strings(f), func(s string) bool { return s == entry })
		b.setList(f, list)
	}
	return b.render()
}

func (a *allowlist) clone() *allowlist {
	b := &allowlist{keys: slices.Clone(a.keys), values: make(map[string]json.RawMessage, len(a.values)), changed: map[string]bool{}}
	for k, v := range a.values {
		b.values[k] = v
	}
	for k := range a.changed {
		b.changed[k] = true
	}
	return b
}

// setList sets a list field, appending the field when it is new. A list
// written on one line stays on one line; a new or multi-line one gets an
// entry per line.
func (a *allowlist) setList(field string, list []string) {
	if list == nil {
		list = []string{}
	}
	old, had := a.values[field]
	var raw []byte
	if had && !bytes.Contains(old, []byte("\n")) {
		parts := make([]string, len(list))
		for i, s := range list {
			q, _ := json.Marshal(s)
			parts[i] = string(q)
		}
		raw = []byte("[" + strings.Join(parts, ", ") + "]")
	} else {
		raw, _ = json.MarshalIndent(list, "  ", "  ")
	}
	a.set(field, raw)
}

func (a *allowlist) setString(field, v string) {
	raw, _ := json.Marshal(v)
	a.set(field, raw)
}

func (a *allowlist) set(field string, raw []byte) {
	if _, ok := a.values[field]; !ok {
		a.keys = append(a.keys, field)
	}
	a.values[field] = raw
	a.changed[field] = true
}

// render writes the document as Forge does, one field per line with
// two-space indentation, in the original order; fields not changed keep
// their bytes as read.
func (a *allowlist) render() []byte {
	var b strings.Builder
	b.WriteString("{\n")
	for i, k := range a.keys {
		kb, _ := json.Marshal(k)
		fmt.Fprintf(&b, "  %s: %s", kb, a.values[k])
		if i < len(a.keys)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("}\n")
	return []byte(b.String())
}
