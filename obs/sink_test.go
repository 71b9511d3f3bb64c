package obs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// nonblockPipe returns a pipe whose write end is O_NONBLOCK (as an agent
// sharing the description could make it) and as small as the kernel
// allows, so a few lines fill it.
func nonblockPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatal(err)
	}
	r, w = os.NewFile(uintptr(fds[0]), "pipe-r"), os.NewFile(uintptr(fds[1]), "pipe-w")
	t.Cleanup(func() { r.Close(); w.Close() })
	setNonblock(t, w)
	return r, w
}

func setNonblock(t *testing.T, f *os.File) {
	t.Helper()
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETFL, fl|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
}

// fill writes to the (non-blocking) fd until EAGAIN.
func fill(t *testing.T, f *os.File) int {
	t.Helper()
	junk := bytes.Repeat([]byte("j"), 512)
	n := 0
	for {
		m, err := unix.Write(int(f.Fd()), junk)
		n += max(m, 0)
		if err == unix.EAGAIN {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestSinkNonblockFullPipeLosesNoDenial is item 9's O_NONBLOCK attack on
// the writer: the output's description is non-blocking and the pipe is
// full when the denials are written. Every one reaches the output, whole,
// and /denials holds the same events as the log.
func TestSinkNonblockFullPipeLosesNoDenial(t *testing.T) {
	r, w := nonblockPipe(t)
	junk := fill(t, w)

	var stderr syncBuffer
	sink := NewSink(w, 0, &stderr)
	log, err := NewLogger(sink, "info")
	if err != nil {
		t.Fatal(err)
	}
	m, d := NewMetrics(), NewDenials(64)
	m.WatchSink(sink)
	a := NewAuditor(log, m, d)
	const n = 40
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			a.Egress(Flow{Proto: "tcp", DstIP: "198.51.100.3", DstPort: uint16(7000 + i), Reason: "no_name_for_ip"})
		}
	}()
	// The pipe stays full a while: the writer must wait, not drop.
	time.Sleep(300 * time.Millisecond)
	got := make(chan []byte)
	go func() {
		br := bufio.NewReader(r)
		_, _ = io.CopyN(io.Discard, br, int64(junk))
		rest, _ := io.ReadAll(br)
		got <- rest
	}()
	<-done
	if err := sink.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	w.Close()
	rest := <-got
	lines := strings.Split(strings.TrimSuffix(string(rest), "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("%d lines reached the output, want %d; stderr %q", len(lines), n, stderr.buf.String())
	}
	ring := d.Recent(n)
	for i, l := range lines {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil || e["msg"] != MsgEgressDenied {
			t.Fatalf("line %d is not a whole egress_denied event: %v %q", i, err, l)
		}
		// The ring is newest first; the log oldest first.
		if got, want := e["dst_port"], float64(ring[n-1-i].DstPort); got != want {
			t.Errorf("line %d: dst_port %v, /denials has %v", i, got, want)
		}
	}
	if st := sink.Stats(); st.Dropped != 0 || st.Written != n {
		t.Errorf("stats %+v, want %d written, 0 dropped", st, n)
	}
	if stderr.buf.Len() != 0 {
		t.Errorf("stderr: %q", stderr.buf.String())
	}
}

// TestSinkAgentShareLeavesRoomForAudit: an agent flooding its output fills
// only its half of the buffer; the supervisor's own lines still get in
// without waiting while the output is stalled.
func TestSinkAgentShareLeavesRoomForAudit(t *testing.T) {
	r, w := nonblockPipe(t)
	fill(t, w) // stalled output: nothing more gets out until the test reads
	sink := NewSink(w, 64<<10, io.Discard)
	agent := sink.Agent()
	line := append(bytes.Repeat([]byte("a"), 1023), '\n')
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		for range 200 { // 200 KiB: far more than its 32 KiB share
			if _, err := agent.Write(line); err != nil {
				return
			}
		}
	}()
	// Wait until the agent is held back.
	deadline := time.Now().Add(5 * time.Second)
	for sink.Stats().Waits == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the agent's flood never waited")
		}
		time.Sleep(5 * time.Millisecond)
	}
	written := make(chan struct{})
	go func() {
		defer close(written)
		for i := range 10 {
			fmt.Fprintf(sink, `{"msg":"egress_denied","i":%d}`+"\n", i)
		}
	}()
	select {
	case <-written:
	case <-time.After(5 * time.Second):
		t.Fatal("audit lines waited behind the agent's flood")
	}
	go io.Copy(io.Discard, r) // unstall
	<-flooded
	if err := sink.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestSinkLinesStayWhole: many writers, a slow reader; every line arrives
// whole and none twice.
func TestSinkLinesStayWhole(t *testing.T) {
	r, w := nonblockPipe(t)
	sink := NewSink(w, 8<<10, io.Discard)
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				fmt.Fprintf(sink, "%d-%d-%s\n", g, i, strings.Repeat("z", 100+i))
			}
		}()
	}
	got := make(chan []string)
	go func() {
		var lines []string
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if len(lines)%100 == 0 {
				time.Sleep(time.Millisecond) // slower than the writers
			}
		}
		got <- lines
	}()
	wg.Wait()
	if err := sink.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	w.Close()
	lines := <-got
	seen := map[string]bool{}
	for _, l := range lines {
		var g, i int
		var z string
		if _, err := fmt.Sscanf(l, "%d-%d-%s", &g, &i, &z); err != nil || len(z) != 100+i {
			t.Fatalf("broken line %q", l)
		}
		if seen[l] {
			t.Fatalf("line twice: %q", l)
		}
		seen[l] = true
	}
	if len(seen) != writers*each {
		t.Fatalf("%d lines, want %d", len(seen), writers*each)
	}
}

// TestSinkOutputErrorIsCountedOnce: a closed reader (EPIPE) drops lines,
// counts them and says so once on stderr, never crashing.
func TestSinkOutputErrorIsCountedOnce(t *testing.T) {
	r, w := nonblockPipe(t)
	r.Close()
	var stderr syncBuffer
	sink := NewSink(w, 0, &stderr)
	m := NewMetrics()
	m.WatchSink(sink)
	for range 5 {
		fmt.Fprintln(sink, `{"msg":"egress_denied"}`)
		if err := sink.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	_ = sink.Close(time.Second)
	if st := sink.Stats(); st.Dropped != 5 {
		t.Errorf("dropped %d, want 5", st.Dropped)
	}
	if n := strings.Count(stderr.buf.String(), "\n"); n != 1 || !strings.Contains(stderr.buf.String(), "broken pipe") {
		t.Errorf("stderr %q: want one line naming the error", stderr.buf.String())
	}
	if v := scrapeValue(t, m, "forge_supervisor_audit_lines_dropped_total"); v != 5 {
		t.Errorf("forge_supervisor_audit_lines_dropped_total = %v, want 5", v)
	}
}

// TestSinkCloseStalledOutput: PID 1 exits even when nobody reads its log;
// the lines left are counted as dropped.
func TestSinkCloseStalledOutput(t *testing.T) {
	_, w := nonblockPipe(t)
	fill(t, w)
	sink := NewSink(w, 0, io.Discard)
	fmt.Fprintln(sink, `{"msg":"egress_denied"}`)
	fmt.Fprintln(sink, `{"msg":"egress_denied"}`)
	start := time.Now()
	if err := sink.Close(200 * time.Millisecond); err == nil {
		t.Fatal("Close of a stalled output: nil error")
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("Close took %v", time.Since(start))
	}
	if st := sink.Stats(); st.Dropped == 0 {
		t.Errorf("stats %+v: the stuck lines are not counted", st)
	}
	if _, err := fmt.Fprintln(sink, "late"); err == nil {
		t.Error("write after Close: nil error")
	}
}

// scrapeValue gathers m and returns the value of the single-series metric
// name.
func scrapeValue(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		pm := mf.GetMetric()[0]
		if c := pm.GetCounter(); c != nil {
			return c.GetValue()
		}
		return pm.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// BenchmarkSinkWrite is the cost of queuing one audit line (to /dev/null);
// once the buffers have grown a line allocates nothing.
func BenchmarkSinkWrite(b *testing.B) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	sink := NewSink(devnull, 0, io.Discard)
	defer sink.Close(time.Second)
	line := []byte(`{"level":"info","ts":"2026-12-01T07:40:53.834119448Z","msg":"egress_denied","proto":"tls","sni":"evil.test","reason":"not_in_allowlist"}` + "\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sink.Write(line); err != nil {
			b.Fatal(err)
		}
	}
}
