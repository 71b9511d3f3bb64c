package ops

import (
	"fmt"
	"strings"
)

const (
	// diffContext is the unified diff's context lines, as diff -u.
	diffContext = 3
	// maxDiffCells bounds the LCS table (lines × lines). Policy files are a
	// few hundred lines; beyond this the diff replaces the file whole,
	// which patch applies just the same.
	maxDiffCells = 4 << 20
)

// unifiedDiff returns a unified diff turning a into b, with the file
// names given ("/dev/null" for a new file); "" when they are equal.
func unifiedDiff(nameA, nameB string, a, b []byte) string {
	x, y := splitLines(string(a)), splitLines(string(b))
	ops := diffLines(x, y)
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", nameA, nameB)
	changed := false
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		changed = true
		// A hunk: from diffContext lines before this change to
		// diffContext lines after the last change within reach.
		start := max(0, i-diffContext)
		end := i
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*diffContext {
				end = min(len(ops), end+diffContext)
				break
			}
			end = run
		}
		writeHunk(&out, ops[start:end])
		i = end
	}
	if !changed {
		return ""
	}
	return out.String()
}

type diffOp struct {
	kind byte // ' ', '-' or '+'
	line string
	a, b int // 1-based line numbers in a and b of this op (0 for the other side)
}

func writeHunk(w *strings.Builder, ops []diffOp) {
	var aStart, bStart, aLen, bLen int
	for _, op := range ops {
		if op.kind != '+' {
			if aStart == 0 {
				aStart = op.a
			}
			aLen++
		}
		if op.kind != '-' {
			if bStart == 0 {
				bStart = op.b
			}
			bLen++
		}
	}
	if aStart == 0 { // only additions: diff -u names the line before
		aStart = ops[0].a
	}
	if bStart == 0 {
		bStart = ops[0].b
	}
	fmt.Fprintf(w, "@@ -%s +%s @@\n", hunkRange(aStart, aLen), hunkRange(bStart, bLen))
	for _, op := range ops {
		line, cut := strings.CutSuffix(op.line, noNewline)
		fmt.Fprintf(w, "%c%s\n", op.kind, line)
		if cut {
			w.WriteString(noNewline[1:] + "\n")
		}
	}
}

func hunkRange(start, n int) string {
	if n == 0 {
		return fmt.Sprintf("%d,0", start)
	}
	if n == 1 {
		return fmt.Sprintf("%d", start)
	}
	return fmt.Sprintf("%d,%d", start, n)
}

// noNewline marks, in comparisons, a last line that has no newline: it
// differs from the same text with one, and prints with diff's marker.
const noNewline = "\x00\\ No newline at end of file"

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if !strings.HasSuffix(s, "\n") {
		lines[len(lines)-1] += noNewline
	}
	return lines
}

// diffLines is the longest-common-subsequence edit script from x to y.
func diffLines(x, y []string) []diffOp {
	n, m := len(x), len(y)
	if n*m > maxDiffCells {
		var ops []diffOp
		for i, l := range x {
			ops = append(ops, diffOp{kind: '-', line: l, a: i + 1})
		}
		for j, l := range y {
			ops = append(ops, diffOp{kind: '+', line: l, b: j + 1})
		}
		return ops
	}
	// lcs[i][j] is the LCS length of x[i:] and y[j:].
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var ops []diffOp
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && x[i] == y[j]:
			ops = append(ops, diffOp{kind: ' ', line: x[i], a: i + 1, b: j + 1})
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] > lcs[i+1][j]):
			ops = append(ops, diffOp{kind: '+', line: y[j], a: i, b: j + 1})
			j++
		default:
			ops = append(ops, diffOp{kind: '-', line: x[i], a: i + 1, b: j})
			i++
		}
	}
	return ops
}
