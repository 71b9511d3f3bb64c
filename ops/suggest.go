package ops

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/forge/forge-supervisor/policy"
)

const (
	// maxEventLine bounds one NDJSON line: audit lines are a few hundred
	// bytes (names are truncated to 1 KiB in them).
	maxEventLine = 64 << 10
	// maxInput bounds a /denials document read whole.
	maxInput = 256 << 20
)

// fixableReasons are the denials an allowlist addition would have
// allowed. Others (metadata_address, private_ip, sni_ip_mismatch,
// label_limit, process_unknown, parse errors…) are counted, not fixed:
// allowing them takes a decision suggest must not make for the operator.
var fixableReasons = map[string]bool{
	policy.ReasonNotAllowed:     true,
	policy.ReasonPortNotAllowed: true,
	policy.ReasonNoNameForIP:    true,
	policy.ReasonDenyAll:        true,
	policy.ReasonIPLiteral:      true,
}

// event is the part of an audit line (or /denials entry) suggest reads.
type event struct {
	Msg       string `json:"msg"`
	SNI       string `json:"sni"`
	Host      string `json:"host"`
	DstIP     string `json:"dst_ip"`
	DstPort   uint16 `json:"dst_port"`
	QName     string `json:"qname"`
	Reason    string `json:"reason"`
	WouldDeny bool   `json:"would_deny"`
}

// Suggestion is one allowlist addition and the denials it answers.
type Suggestion struct {
	Entry   string         `json:"entry"` // as it goes into the list
	Field   string         `json:"field"` // allowed_domains or allowed_tcp
	Count   int            `json:"count"` // denials it would have allowed
	Reasons map[string]int `json:"reasons"`
}

// SuggestReport is the outcome of reading the denials.
type SuggestReport struct {
	Events      int            `json:"events"`      // decision events read
	Denials     int            `json:"denials"`     // of which denied or would-deny
	Suggestions []Suggestion   `json:"suggestions"` // sorted by count, then entry
	Unfixable   map[string]int `json:"not_fixable"` // denials by reason that no addition allows
	Covered     int            `json:"now_allowed"` // denials the current policy already allows
	Unreadable  int            `json:"unreadable"`  // lines that were not JSON
}

// Suggest reads audit NDJSON (the supervisor's stdout) or a /denials
// document from in and writes the minimal allowlist additions that would
// have allowed what was denied: a summary as "#" lines, then, for a JSON
// policy, a unified diff of policyPath (a new file when it does not
// exist). A Rego policy or a forge.yaml gets the summary only.
func Suggest(w io.Writer, in io.Reader, policyPath string, load Loader) int {
	var cur *policy.Policy
	var doc *allowlist
	var orig []byte
	exists, patchable := false, false
	if _, err := os.Stat(policyPath); err == nil {
		exists = true
		l, err := load(policyPath)
		if err != nil {
			fmt.Fprintf(w, "# %v\n", err)
			return ExitUsage
		}
		cur = l.Policy
		if l.Allowlist != nil && !l.Derived {
			patchable, orig = true, l.Allowlist
			if doc, err = readAllowlist(orig); err != nil {
				fmt.Fprintf(w, "# %s: %v\n", policyPath, err)
				return ExitUsage
			}
		}
	} else if !os.IsNotExist(err) {
		fmt.Fprintf(w, "# %v\n", err)
		return ExitUsage
	}
	events, unreadable, err := readEvents(in)
	if err != nil {
		fmt.Fprintf(w, "# read denials: %v\n", err)
		return ExitUsage
	}
	r := suggest(events, cur)
	r.Unreadable = unreadable
	writeSuggestSummary(w, r, policyPath)
	if len(r.Suggestions) == 0 {
		return ExitOK
	}
	if exists && !patchable {
		fmt.Fprintf(w, "# %s is not an egress_allowlist.json: add the entries above to it by hand (a forge.yaml: its egress section)\n", policyPath)
		return ExitOK
	}
	if doc == nil {
		doc = &allowlist{values: map[string]json.RawMessage{}, changed: map[string]bool{}}
		doc.setString("profile", "suggested")
		doc.setString(fieldMode, string(policy.ModeAllowlist))
	}
	if doc.str(fieldMode) == string(policy.ModeDenyAll) {
		doc.setString(fieldMode, string(policy.ModeAllowlist))
	}
	apply(doc, r.Suggestions)
	from, to := "a/"+baseName(policyPath), "b/"+baseName(policyPath)
	if !exists {
		from = "/dev/null"
	}
	fmt.Fprint(w, unifiedDiff(from, to, orig, doc.render()))
	return ExitOK
}

// readEvents reads NDJSON lines, or one JSON array (the /denials body).
func readEvents(in io.Reader) ([]event, int, error) {
	br := bufio.NewReader(in)
	for {
		b, err := br.Peek(1)
		if err != nil {
			return nil, 0, nil // empty input
		}
		if b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t' {
			br.ReadByte()
			continue
		}
		if b[0] == '[' {
			var evs []event
			if err := json.NewDecoder(io.LimitReader(br, maxInput)).Decode(&evs); err != nil {
				return nil, 0, fmt.Errorf("a JSON array of /denials events: %w", err)
			}
			return evs, 0, nil
		}
		break
	}
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	var evs []event
	bad := 0
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e event
		if json.Unmarshal(line, &e) != nil {
			bad++
			continue
		}
		evs = append(evs, e)
	}
	return evs, bad, sc.Err()
}

func suggest(events []event, cur *policy.Policy) SuggestReport {
	r := SuggestReport{Unfixable: map[string]int{}, Suggestions: []Suggestion{}}
	byEntry := map[string]*Suggestion{}
	dnsOnly := map[string]*Suggestion{}
	for _, e := range events {
		kind := eventKind(e.Msg)
		if kind == "" {
			continue
		}
		r.Events++
		if !strings.HasSuffix(e.Msg, "_denied") && !e.WouldDeny {
			continue
		}
		r.Denials++
		if !fixableReasons[e.Reason] {
			r.Unfixable[e.Reason]++
			continue
		}
		entry, field, name, port := additionFor(kind, e)
		if entry == "" {
			r.Unfixable[e.Reason]++
			continue
		}
		if cur != nil && name != "" && cur.CheckName(name, port).Allow {
			r.Covered++
			continue
		}
		set := byEntry
		if kind == "dns" {
			set = dnsOnly
		}
		s := set[entry]
		if s == nil {
			s = &Suggestion{Entry: entry, Field: field, Reasons: map[string]int{}}
			set[entry] = s
		}
		s.Count++
		s.Reasons[e.Reason]++
	}
	// A name some connection needs is allowed by that connection's entry,
	// which lets its DNS through too; only names seen in DNS alone get a
	// domain rule of their own.
	for name, s := range dnsOnly {
		covered := false
		for entry, t := range byEntry {
			if entry == name || strings.HasPrefix(entry, name+":") {
				t.Count += s.Count
				for k, v := range s.Reasons {
					t.Reasons[k] += v
				}
				covered = true
			}
		}
		if !covered {
			byEntry[name] = s
		}
	}
	for _, s := range byEntry {
		r.Suggestions = append(r.Suggestions, *s)
	}
	slices.SortFunc(r.Suggestions, func(a, b Suggestion) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Entry, b.Entry)
	})
	return r
}

func eventKind(msg string) string {
	switch {
	case strings.HasPrefix(msg, "egress_"):
		return "tcp"
	case msg == "dns_allowed" || msg == "dns_denied":
		return "dns"
	}
	return ""
}

// additionFor is the narrowest entry that would have allowed e: a domain
// rule for a name on 80/443 (or in DNS), an allowed_tcp name:port for a
// name on another port, an allowed_tcp address:port for a nameless flow.
func additionFor(kind string, e event) (entry, field, name string, port uint16) {
	raw := e.SNI
	if raw == "" {
		raw = e.Host
	}
	if kind == "dns" {
		raw = e.QName
	}
	if n, err := policy.NormalizeName(raw); err == nil && raw != "" {
		name = n
	}
	switch {
	case kind == "dns" && name != "":
		return name, fieldAllowedDomains, name, 0
	case kind == "dns":
		return "", "", "", 0
	case name != "" && (e.DstPort == 80 || e.DstPort == 443):
		return name, fieldAllowedDomains, name, e.DstPort
	case name != "" && e.DstPort != 0:
		return name + ":" + strconv.Itoa(int(e.DstPort)), fieldAllowedTCP, name, e.DstPort
	}
	ip, err := netip.ParseAddr(e.DstIP)
	if err != nil || e.DstPort == 0 {
		return "", "", "", 0
	}
	return netip.AddrPortFrom(ip, e.DstPort).String(), fieldAllowedTCP, "", e.DstPort
}

// apply adds the suggestions to doc: domain rules to allowed_domains and
// all_domains (Forge keeps all_domains the union), allowed_tcp entries to
// allowed_tcp; sorted, without duplicates.
func apply(doc *allowlist, sug []Suggestion) {
	add := func(field string, entries []string) {
		if len(entries) == 0 {
			return
		}
		list := doc.strings(field)
		for _, e := range entries {
			if !slices.Contains(list, e) {
				list = append(list, e)
			}
		}
		doc.setList(field, list)
	}
	var names, tcp []string
	for _, s := range sug {
		if s.Field == fieldAllowedTCP {
			tcp = append(tcp, s.Entry)
		} else {
			names = append(names, s.Entry)
		}
	}
	slices.Sort(names)
	slices.Sort(tcp)
	add(fieldAllowedDomains, names)
	add(fieldAllDomains, names)
	add(fieldAllowedTCP, tcp)
}

func writeSuggestSummary(w io.Writer, r SuggestReport, policyPath string) {
	fmt.Fprintf(w, "# forge-supervisor suggest for %s: %d decision events, %d denied\n", policyPath, r.Events, r.Denials)
	for _, s := range r.Suggestions {
		fmt.Fprintf(w, "#   %-15s %-40s %5d denied (%s)\n", s.Field, s.Entry, s.Count, reasonList(s.Reasons))
	}
	if len(r.Suggestions) == 0 {
		fmt.Fprintf(w, "#   nothing to add\n")
	}
	if r.Covered > 0 {
		fmt.Fprintf(w, "#   %d denials are allowed by the policy as it is now\n", r.Covered)
	}
	if len(r.Unfixable) > 0 {
		fmt.Fprintf(w, "#   not fixable by an allowlist addition: %s\n", reasonList(r.Unfixable))
	}
	if r.Unreadable > 0 {
		fmt.Fprintf(w, "#   %d input lines were not JSON\n", r.Unreadable)
	}
}

func reasonList(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
