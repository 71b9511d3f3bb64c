package netenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildOut  []byte
)

// Binary returns the path of a forge-supervisor binary: $FORGE_SUPERVISOR_BIN
// when set (make test sets it to the static build), else one built once per
// test process from the module root.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("FORGE_SUPERVISOR_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "forge-supervisor-bin")
		if err != nil {
			buildErr = err
			return
		}
		// World-readable: the jailed agent re-executes it as UID 1000.
		_ = os.Chmod(dir, 0o755)
		builtBin = filepath.Join(dir, "forge-supervisor")
		cmd := exec.Command("go", "build", "-o", builtBin, ".")
		cmd.Dir = root
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("netenv: build forge-supervisor: %v\n%s", buildErr, buildOut)
	}
	return builtBin
}
