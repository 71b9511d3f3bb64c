package actors_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge/forge-supervisor/actors"
	"github.com/forge/forge-supervisor/jail"
	"github.com/forge/forge-supervisor/tests/netenv"
)

// stampSource is a tiny agent that writes CLOCK_MONOTONIC at its first
// instruction of main, so the benchmark measures RunAgent start → agent
// running, jail included.
const stampSource = `#include <stdio.h>
#include <time.h>
int main(int argc, char **argv) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	FILE *f = fopen(argv[1], "w");
	if (!f) return 1;
	fprintf(f, "%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
	return fclose(f) != 0;
}
`

// BenchmarkStartToExec reports the time from calling RunAgent to the agent's
// first instruction (re-exec, jail, seccomp load, execve), p50 and p99.
func BenchmarkStartToExec(b *testing.B) {
	netenv.RequireRoot(b)
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		b.Skip("needs gcc to build the timestamp agent")
	}
	dir, err := os.MkdirTemp("", "actors-bench")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o777); err != nil { // the agent (UID 1000) writes its stamp here
		b.Fatal(err)
	}
	src := filepath.Join(dir, "stamp.c")
	bin := filepath.Join(dir, "stamp")
	if err := os.WriteFile(src, []byte(stampSource), 0o644); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-O2", "-o", bin, src).CombinedOutput(); err != nil {
		b.Fatalf("gcc: %v\n%s", err, out)
	}
	stampFile := filepath.Join(dir, "stamp.out")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		os.Remove(stampFile)
		var t0 unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &t0)
		code, err := actors.RunAgent(context.Background(), actors.AgentConfig{
			Spec: jail.Spec{UID: 1000, GID: 1000, Argv: []string{bin, stampFile}},
		})
		if err != nil || code != 0 {
			b.Fatalf("RunAgent: code %d err %v", code, err)
		}
		raw, err := os.ReadFile(stampFile)
		if err != nil {
			b.Fatal(err)
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Duration(ns-t0.Nano()))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
