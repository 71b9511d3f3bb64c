// Package resilience runs the real forge-supervisor binary (PID 1 of its
// own PID namespace, in a private agent network namespace) under load and
// faults: ten thousand simultaneous connections, upstream resets and
// stalls, a file-descriptor limit, a crash-looping agent and SIGTERM under
// traffic. Load comes from a static Go program (./loadgen) run as the
// agent's UID, so the supervisor's nft rules redirect all of it.
//
// All traffic stays inside the namespaces the tests create (tests/world).
package resilience

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

// testNoFile is the RLIMIT_NOFILE the test process gives itself and so
// passes to everything it starts (the supervisor and the load generator):
// 10,000 relayed connections cost the supervisor ~6 descriptors each (two
// sockets, two splice pipes), and the world's servers run in this process.
const testNoFile = 1 << 17

func TestMain(m *testing.M) {
	// Raise both limits (needs CAP_SYS_RESOURCE for the hard one); without
	// the capability, take the soft limit up to the hard one. Setting it
	// ourselves also makes children inherit it: the Go runtime otherwise
	// restores the original soft limit for them.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		want := syscall.Rlimit{Cur: max(lim.Max, testNoFile), Max: max(lim.Max, testNoFile)}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			want = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
			_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
		}
	}
	code := m.Run()
	if loadgenDir != "" {
		_ = os.RemoveAll(loadgenDir)
	}
	os.Exit(code)
}

// noFile is the RLIMIT_NOFILE every process of the test gets.
func noFile() uint64 {
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Cur
}

// loadPort is the world's load server port; the policy opens it for
// allowed.test through an allowed_tcp rule.
const loadPort = 8000

const policyJSON = `{"profile":"standard","mode":"allowlist",
 "allowed_domains":["allowed.test"],"tool_domains":[],"all_domains":["allowed.test"],
 "allowed_tcp":["allowed.test:8000"]}`

var (
	loadgenOnce sync.Once
	loadgenDir  string
	loadgenBin  string
	loadgenErr  error
)

// loadgenPath builds ./loadgen once, static (CGO_ENABLED=0), into a
// world-readable directory so UID 1000 can run it.
func loadgenPath(t *testing.T) string {
	t.Helper()
	loadgenOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		dir, err := os.MkdirTemp("", "forge-loadgen")
		if err != nil {
			loadgenErr = err
			return
		}
		_ = os.Chmod(dir, 0o755)
		loadgenDir = dir
		loadgenBin = filepath.Join(dir, "loadgen")
		cmd := exec.Command("go", "build", "-trimpath", "-o", loadgenBin, "./loadgen")
		cmd.Dir = filepath.Dir(file)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			loadgenErr = fmt.Errorf("build loadgen: %v\n%s", err, out)
		}
	})
	if loadgenErr != nil {
		t.Fatal(loadgenErr)
	}
	return loadgenBin
}

// report mirrors loadgen's Report.
type report struct {
	Phase       string           `json:"phase"`
	Established int64            `json:"established"`
	Ready       int64            `json:"ready"`
	Completed   int64            `json:"completed"`
	Failures    map[string]int64 `json:"failures"`
	Ends        map[string]int64 `json:"ends"`
	Bytes       int64            `json:"bytes"`
	Seconds     float64          `json:"seconds"`
	NoFile      uint64           `json:"nofile"`
}

// loadgen is a running load generator.
type loadgen struct {
	t       *testing.T
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	reports chan report
	stderr  strings.Builder
	exited  chan struct{}
}

// startLoadgen runs loadgen as UID/GID 1000 in the agent namespace with
// n connections to the world's load server on path.
func startLoadgen(t *testing.T, w *world.World, path string, n int, extra ...string) *loadgen {
	t.Helper()
	args := append([]string{"-addr", fmt.Sprintf("198.51.100.1:%d", loadPort), "-host", "allowed.test",
		"-path", path, "-n", strconv.Itoa(n)}, extra...)
	cmd := w.AsAgent(loadgenPath(t), args...)
	lg := &loadgen{t: t, cmd: cmd, reports: make(chan report, 2), exited: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if lg.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &lg.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start loadgen: %v", err)
	}
	go func() {
		defer close(lg.exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r report
			if err := json.Unmarshal(sc.Bytes(), &r); err == nil {
				lg.reports <- r
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = lg.stdin.Close()
		select {
		case <-lg.exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-lg.exited
		}
	})
	return lg
}

// next waits for the next report.
func (lg *loadgen) next(phase string, timeout time.Duration) report {
	lg.t.Helper()
	select {
	case r := <-lg.reports:
		if r.Phase != phase {
			lg.t.Fatalf("loadgen: got report %q, want %q: %+v", r.Phase, phase, r)
		}
		return r
	case <-lg.exited:
		// The last report may be buffered when the process has exited.
		select {
		case r := <-lg.reports:
			if r.Phase == phase {
				return r
			}
		default:
		}
		lg.t.Fatalf("loadgen exited before its %q report: %s", phase, lg.stderr.String())
	case <-time.After(timeout):
		lg.t.Fatalf("loadgen: no %q report within %v", phase, timeout)
	}
	return report{}
}

// release lets hold connections finish (and closes streams).
func (lg *loadgen) release() { _, _ = io.WriteString(lg.stdin, "go\n") }

// metric scrapes one unlabelled sample from the supervisor's /metrics.
func metric(t *testing.T, w *world.World, name string) float64 {
	t.Helper()
	code, b, err := world.Get(w.AgentHTTP(), "http://127.0.0.1:15000/metrics")
	body := string(b)
	if err != nil || code != 200 {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %q: %v", name, line, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not in /metrics", name)
	return 0
}

// healthy checks that the supervisor process runs and /healthz answers
// 200 (retrying for a few seconds: the machine may be saturated). A
// failure is an error, not fatal, so the test still reports its figures.
func healthy(t *testing.T, w *world.World, s *world.Supervisor) bool {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if exited(s) {
			t.Errorf("supervisor exited\nstderr:\n%s", s.Err.String())
			return false
		}
		code, body, err := world.Get(w.AgentHTTP(), "http://127.0.0.1:15000/healthz")
		if err == nil && code == 200 {
			return true
		}
		if time.Now().After(deadline) {
			fds, _ := s.OpenFDs()
			t.Errorf("GET /healthz: %d %v %q (supervisor holds %d fds of %d)", code, err, body, fds, noFile())
			return false
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// settleGoroutines waits until go_goroutines is within tolerance of want
// and returns the last value seen.
func settleGoroutines(t *testing.T, w *world.World, want float64, timeout time.Duration) float64 {
	t.Helper()
	const tolerance = 50
	deadline := time.Now().Add(timeout)
	var g float64
	for {
		g = metric(t, w, "go_goroutines")
		if g <= want+tolerance && g >= want-tolerance {
			return g
		}
		if time.Now().After(deadline) {
			t.Errorf("goroutines: %v after %v, baseline %v (±%d): a leak", g, timeout, want, tolerance)
			return g
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// egressEvents returns the audit events of connections to port.
func egressEvents(s *world.Supervisor, port int) []world.Event {
	var out []world.Event
	for _, e := range s.Events() {
		if !strings.HasPrefix(e.Msg(), "egress_") {
			continue
		}
		if p, _ := e["dst_port"].(float64); int(p) == port {
			out = append(out, e)
		}
	}
	return out
}

// waitEgress waits until at least n audit events for port are logged and
// returns them all.
func waitEgress(t *testing.T, s *world.Supervisor, port, n int, timeout time.Duration) []world.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ev := egressEvents(s, port)
		if len(ev) >= n || time.Now().After(deadline) {
			return ev
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// countBy tallies events by msg and reason.
func countBy(ev []world.Event) map[string]int {
	m := map[string]int{}
	for _, e := range ev {
		m[e.Msg()+"/"+e.Str("reason")]++
	}
	return m
}

// startWorld builds the world, its load server and a supervisor whose
// agent sleeps; the load comes from outside the jail, as UID 1000.
func startWorld(t *testing.T, l world.Launch) (*world.World, *world.LoadServer, *world.Supervisor) {
	t.Helper()
	w := world.New(t)
	ls := w.StartLoadServer(t, loadPort)
	l.Policy = w.WritePolicy(t, "egress_allowlist.json", policyJSON)
	s := w.StartLaunch(t, l, "sleep", "600")
	s.WaitReady()
	return w, ls, s
}

// exited reports whether the supervisor process has ended.
func exited(s *world.Supervisor) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

// metricOr is metric for figures that are only reported: -1 when the
// scrape fails.
func metricOr(w *world.World, name string) float64 {
	code, b, err := world.Get(w.AgentHTTP(), "http://127.0.0.1:15000/metrics")
	if err != nil || code != 200 {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return f
			}
		}
	}
	return -1
}

// msgCounts tallies the supervisor's log lines by msg (and reason for
// egress events).
func msgCounts(s *world.Supervisor) map[string]int {
	m := map[string]int{}
	for _, e := range s.Events() {
		k := e.Msg()
		if strings.HasPrefix(k, "egress_") {
			k += "/" + e.Str("reason")
		}
		m[k]++
	}
	return m
}
