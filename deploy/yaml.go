package deploy

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// yamlDoc builds one YAML document line by line. Keys are fixed identifiers
// written by this package; every string value goes through yamlString or
// yamlBlock, so no input can change the document's structure.
type yamlDoc struct {
	b bytes.Buffer
}

// line writes one line at the given nesting depth (two spaces per level).
func (d *yamlDoc) line(depth int, format string, args ...any) {
	d.b.WriteString(strings.Repeat("  ", depth))
	fmt.Fprintf(&d.b, format, args...)
	d.b.WriteByte('\n')
}

// comment writes a comment block at depth, one "# " line per text line.
func (d *yamlDoc) comment(depth int, text string) {
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if l == "" {
			d.line(depth, "#")
			continue
		}
		d.line(depth, "# %s", l)
	}
}

// yamlString renders s as a YAML double-quoted scalar. Go's quoting is a
// subset of YAML's double-quoted escapes (\a \b \t \n \v \f \r \" \\ \xNN
// \uNNNN \UNNNNNNNN) for valid UTF-8, and every string reaching it was
// checked to be valid UTF-8, so the scalar reads back as exactly s.
func yamlString(s string) string {
	return strconv.Quote(s)
}

// yamlStrings renders a flow sequence of double-quoted scalars.
func yamlStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = yamlString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// blockSafe reports whether s can be a literal block scalar that reads back
// byte for byte: valid UTF-8 of printable characters, tabs and line feeds
// only (a carriage return or a control character would be normalised or
// refused by a YAML parser).
func blockSafe(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r != '\n' && r != '\t' && !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// value writes "key: <s>" at depth: a literal block scalar when s is
// blockSafe (readable policies in the manifest), else a double-quoted
// scalar. The block has an explicit indentation indicator, so content
// starting with spaces is kept, and a chomping indicator that keeps exactly
// s's trailing line feeds.
func (d *yamlDoc) value(depth int, key, s string) {
	if !blockSafe(s) {
		d.line(depth, "%s: %s", key, yamlString(s))
		return
	}
	chomp := "-" // no final line feed
	body := s
	switch {
	case strings.HasSuffix(s, "\n\n"):
		chomp = "+" // keep every trailing line feed
		body = strings.TrimSuffix(s, "\n")
	case strings.HasSuffix(s, "\n"):
		chomp = "" // clip: exactly one
		body = strings.TrimSuffix(s, "\n")
	}
	d.line(depth, "%s: |2%s", key, chomp)
	indent := strings.Repeat("  ", depth+1)
	for _, l := range strings.Split(body, "\n") {
		if l == "" {
			d.b.WriteByte('\n')
			continue
		}
		d.b.WriteString(indent)
		d.b.WriteString(l)
		d.b.WriteByte('\n')
	}
}
