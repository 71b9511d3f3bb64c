package forgeyaml

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is one mistake in a forge.yaml: where it is (file, line, column),
// which key (a dotted path like "egress.allowed_tcp[2]") and what to do
// about it.
type Error struct {
	File   string
	Line   int
	Column int
	Key    string
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	if e.Key != "" {
		b.WriteString(": ")
		b.WriteString(e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// problems collects every mistake of one file, so a user fixes them all in
// one round instead of one per run.
type problems struct {
	file string
	errs []error
}

// at records a mistake at node n (nil: no position) under key.
func (p *problems) at(n *yaml.Node, key, format string, args ...any) {
	e := &Error{File: p.file, Key: key, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
}

// maxProblems stops a pathological file from producing megabytes of
// errors; the first few are what a user fixes first anyway.
const maxProblems = 50

func (p *problems) err() error {
	errs := p.errs
	if len(errs) > maxProblems {
		errs = append(errs[:maxProblems:maxProblems], fmt.Errorf("%s: %d more problems not shown", p.file, len(p.errs)-maxProblems))
	}
	return errors.Join(errs...)
}
