package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

const (
	// maxPolicyBytes bounds what Load reads. Forge's profiles are a few
	// hundred rules (~20 KiB); 16 MiB leaves room for generated policies of
	// 100k rules while refusing /dev/zero or a runaway file.
	maxPolicyBytes = 16 << 20
	// maxListEntries bounds each list. Lookups do not slow down with size,
	// but memory and load time do; 100k is far beyond any real allowlist.
	maxListEntries = 100_000
	// maxProfileLen bounds the free-form profile, which goes into logs.
	maxProfileLen = 64
)

// Field names of egress_allowlist.json, exactly as Forge writes them.
const (
	fieldProfile         = "profile"
	fieldMode            = "mode"
	fieldAllowedDomains  = "allowed_domains"
	fieldToolDomains     = "tool_domains"
	fieldAllDomains      = "all_domains"
	fieldAllowedTCP      = "allowed_tcp"
	fieldAllowedCIDRs    = "allowed_private_cidrs"
	fieldAllowPrivateIPs = "allow_private_ips"
	fieldVerifySNIIP     = "verify_sni_ip"
)

var knownFields = []string{
	fieldProfile, fieldMode, fieldAllowedDomains, fieldToolDomains, fieldAllDomains,
	fieldAllowedTCP, fieldAllowedCIDRs, fieldAllowPrivateIPs, fieldVerifySNIIP,
}

// document is the file's content, decoded but not yet validated.
type document struct {
	profile         *string
	mode            *string
	domainLists     [3][]string // allowed_domains, tool_domains, all_domains
	allowedTCP      []string
	allowedCIDRs    []string
	allowPrivateIPs *bool
	verifySNIIP     *bool
	warnings        []string // what loaded but deserves a word: unknown fields, skipped entries
	strict          bool     // Options.Strict
}

var domainListFields = [3]string{fieldAllowedDomains, fieldToolDomains, fieldAllDomains}

// Options change how egress_allowlist.json is read.
type Options struct {
	// Strict makes every warning about the file's content an error
	// (FORGE_SUPERVISOR_STRICT_POLICY): unknown fields, entries skipped,
	// rules that allow nothing, CIDRs with host bits or no private address,
	// a byte-order mark. By default they are warnings, so a field a newer
	// Forge adds ("version", "generated_at") or an entry Forge writes
	// verbatim does not stop every agent. (The notice that private
	// destinations are denied without allow_private_ips stays a warning.)
	Strict bool
}

// Load reads and parses the policy file at path: a Rego module when the
// path ends in ".rego" (see ParseRego), else egress_allowlist.json. Any
// failure — missing, unreadable, not a regular file, too large, invalid —
// is an error naming the path; there is no fallback policy. What loads but
// deserves a word is in Policy.Warnings.
func Load(path string) (*Policy, error) { return LoadWith(path, Options{}) }

// LoadWith is Load with options.
func LoadWith(path string, opt Options) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err) // *PathError names the path
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("policy: %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("policy: %s: not a regular file (%s)", path, st.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("policy: %s: read: %w", path, err)
	}
	if len(data) > maxPolicyBytes {
		return nil, fmt.Errorf("policy: %s: larger than %d bytes", path, maxPolicyBytes)
	}
	if strings.HasSuffix(path, RegoSuffix) {
		return ParseRego(path, data)
	}
	p, err := parse(data, opt)
	if err != nil {
		return nil, fmt.Errorf("policy: %s: %w", path, err)
	}
	return p, nil
}

// Parse parses and validates an egress_allowlist.json document. Errors name
// the field, the entry's index and value, and how to fix it. Duplicate
// fields, wrong types and trailing data are errors; unknown fields
// (including case variants like "Mode") are warnings with a typo hint
// (errors with Options.Strict).
func Parse(data []byte) (*Policy, error) { return ParseWith(data, Options{}) }

// ParseWith is Parse with options.
func ParseWith(data []byte, opt Options) (*Policy, error) {
	p, err := parse(data, opt)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return p, nil
}

// utf8BOM is the byte-order mark some editors (and Windows tools) put at
// the start of a UTF-8 file; JSON forbids it, Forge's users still get it.
const utf8BOM = "\xef\xbb\xbf"

func parse(data []byte, opt Options) (*Policy, error) {
	var warnings []string
	if rest, ok := bytes.CutPrefix(data, []byte(utf8BOM)); ok {
		if opt.Strict {
			return nil, errors.New("the file starts with a UTF-8 byte-order mark, which JSON does not allow; save it without")
		}
		data = rest
		warnings = append(warnings, "the file starts with a UTF-8 byte-order mark; it was ignored")
	}
	doc, err := decode(data, opt)
	if err != nil {
		return nil, err
	}
	doc.warnings = append(warnings, doc.warnings...)
	doc.strict = opt.Strict
	return compile(doc)
}

// decode walks the top-level object by tokens, so field names match
// exactly (encoding/json alone would accept "MODE" for "mode") and
// duplicates are caught, then decodes each field on its own so type errors
// name the field.
func decode(data []byte, opt Options) (*document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, errors.New(`empty document; expected a JSON object like {"mode": "allowlist", "allowed_domains": ["api.example.com"]}`)
	}
	if err != nil {
		return nil, syntaxError(data, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf(`top level must be a JSON object like {"mode": "allowlist", ...}, not %s`, describeToken(tok))
	}
	doc := &document{}
	seen := make(map[string]bool, len(knownFields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(data, err)
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%s: %w", key, syntaxError(data, err))
		}
		if seen[key] {
			return nil, fmt.Errorf("%s: field appears twice; keep one", key)
		}
		seen[key] = true
		if err := doc.set(key, raw); err != nil {
			var unknown *unknownFieldError
			if !errors.As(err, &unknown) || opt.Strict {
				return nil, err
			}
			doc.warnings = append(doc.warnings, err.Error()+"; ignored (FORGE_SUPERVISOR_STRICT_POLICY=1 makes this an error)")
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, syntaxError(data, err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, fmt.Errorf("trailing data after the JSON object: %w", syntaxError(data, err))
		}
		return nil, fmt.Errorf("trailing data after the JSON object (%s at byte %d); the file must hold exactly one object", describeToken(tok), dec.InputOffset())
	}
	return doc, nil
}

func (d *document) set(key string, raw json.RawMessage) error {
	var err error
	switch key {
	case fieldProfile:
		d.profile, err = decodeString(key, raw)
	case fieldMode:
		d.mode, err = decodeString(key, raw)
	case fieldAllowedDomains:
		d.domainLists[0], err = decodeStrings(key, raw)
	case fieldToolDomains:
		d.domainLists[1], err = decodeStrings(key, raw)
	case fieldAllDomains:
		d.domainLists[2], err = decodeStrings(key, raw)
	case fieldAllowedTCP:
		d.allowedTCP, err = decodeStrings(key, raw)
	case fieldAllowedCIDRs:
		d.allowedCIDRs, err = decodeStrings(key, raw)
	case fieldAllowPrivateIPs:
		d.allowPrivateIPs, err = decodeBool(key, raw)
	case fieldVerifySNIIP:
		d.verifySNIIP, err = decodeBool(key, raw)
	default:
		return unknownField(key)
	}
	return err
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

func decodeString(field string, raw json.RawMessage) (*string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%s: must be a string, got %s", field, abbreviate(raw))
	}
	return &s, nil
}

func decodeBool(field string, raw json.RawMessage) (*bool, error) {
	if isNull(raw) {
		return nil, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("%s: must be true or false, got %s", field, abbreviate(raw))
	}
	return &b, nil
}

func decodeStrings(field string, raw json.RawMessage) ([]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var out []string
	if err := json.Unmarshal(raw, &out); err == nil {
		if len(out) > maxListEntries {
			return nil, fmt.Errorf("%s: %d entries, at most %d are accepted", field, len(out), maxListEntries)
		}
		return out, nil
	}
	// Decode again item by item, only to say which entry is wrong.
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf(`%s: must be a list of strings like ["api.example.com"], got %s`, field, abbreviate(raw))
	}
	if len(items) > maxListEntries {
		return nil, fmt.Errorf("%s: %d entries, at most %d are accepted", field, len(items), maxListEntries)
	}
	out = make([]string, len(items))
	for i, item := range items {
		if err := json.Unmarshal(item, &out[i]); err != nil {
			return nil, fmt.Errorf("%s[%d]: must be a string, got %s", field, i, abbreviate(item))
		}
	}
	return out, nil
}

// unknownFieldError is a field the supervisor does not know: a warning
// unless Options.Strict.
type unknownFieldError struct{ msg string }

func (e *unknownFieldError) Error() string { return e.msg }

// unknownField names the field and, when it looks like a typo of a known
// one, the field that was probably meant.
func unknownField(key string) error {
	best, bestDist := "", 4
	for _, f := range knownFields {
		if strings.EqualFold(f, key) {
			return &unknownFieldError{fmt.Sprintf("%s: unknown field; field names are lowercase: did you mean %q?", key, f)}
		}
		if d := EditDistance(key, f); d < bestDist {
			best, bestDist = f, d
		}
	}
	if best != "" {
		return &unknownFieldError{fmt.Sprintf("%s: unknown field; did you mean %q?", key, best)}
	}
	return &unknownFieldError{fmt.Sprintf("%s: unknown field; known fields are %s", key, strings.Join(knownFields, ", "))}
}

// EditDistance is the Levenshtein distance, for typo hints on short keys
// (here and in forge.yaml's reader). Strings over 64 bytes are no typo of
// a key: they get 64 at once, so a hostile key costs nothing quadratic.
func EditDistance(a, b string) int {
	const maxLen = 64 // field names are short; a long key is no typo of one
	if len(a) > maxLen || len(b) > maxLen {
		return maxLen
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// syntaxError adds the line and column to a JSON syntax error. A
// Decoder's offsets are not always positions in the document (inside a
// value they count from the decoder's buffer), so the position comes from
// scanning the whole document once more, which finds the same first error.
func syntaxError(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		var whole *json.SyntaxError
		var v any
		if errors.As(json.Unmarshal(data, &v), &whole) {
			se = whole
		}
	}
	if se != nil && se.Offset <= int64(len(data)) {
		before := data[:se.Offset]
		line := bytes.Count(before, []byte("\n")) + 1
		// Offset is just past the offending byte: its column is the last one.
		col := max(1, len(before)-bytes.LastIndexByte(before, '\n')-1)
		return fmt.Errorf("invalid JSON at line %d column %d: %v", line, col, err)
	}
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return errors.New("invalid JSON: the document ends early (unclosed object, list or string)")
	}
	return fmt.Errorf("invalid JSON: %v", err)
}

func describeToken(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		return fmt.Sprintf("%q", string(t))
	case string:
		return "a string"
	case nil:
		return "null"
	case bool:
		return "a boolean"
	default:
		return "a number"
	}
}

// abbreviate quotes a raw JSON value for an error message, cut short so a
// huge value does not flood the log.
func abbreviate(raw json.RawMessage) string {
	const maxShown = 60
	s := string(bytes.TrimSpace(raw))
	if len(s) > maxShown {
		s = s[:maxShown] + "…"
	}
	return s
}
