package procid

import (
	"os"
	"path/filepath"
	"testing"
)

// Real /proc/PID/stat lines (cat's own, and a shell's) parse; anything
// else errors or parses, never panics.
func TestParseStatRealBytes(t *testing.T) {
	for _, f := range []string{"stat_cat.txt", "stat_sh.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		st, err := parseStat(b)
		if err != nil || st.ppid <= 0 || st.start == 0 || st.stack == 0 {
			t.Errorf("%s: %+v %v", f, st, err)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	for _, name := range []string{"stat_cat.txt", "stat_sh.txt"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("1 (a) b) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0 0 0 0 0 7"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseStat(b)
		_ = splitCmdline(b)
	})
}
