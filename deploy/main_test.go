package deploy_test

import (
	"os"
	"testing"

	"github.com/forge/forge-supervisor/jail"
)

// TestMain lets the requirement tests run programs under the real jail,
// which re-executes this test binary in jail mode.
func TestMain(m *testing.M) {
	jail.RunIfJail()
	os.Exit(m.Run())
}
