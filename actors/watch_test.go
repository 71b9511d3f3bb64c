package actors

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// configMap lays out a directory as kubelet mounts a ConfigMap: the data
// in a timestamped directory, ..data a symlink to it, and each key a
// symlink to ..data/KEY.
type configMap struct {
	t   *testing.T
	dir string
	gen int
}

func newConfigMap(t *testing.T, key, body string) (*configMap, string) {
	t.Helper()
	c := &configMap{t: t, dir: t.TempDir()}
	c.update(key, body)
	if err := os.Symlink(filepath.Join("..data", key), filepath.Join(c.dir, key)); err != nil {
		t.Fatal(err)
	}
	return c, filepath.Join(c.dir, key)
}

// update swaps in new data as kubelet's AtomicWriter does: write a new
// timestamped directory, point ..data_tmp at it, rename ..data_tmp over
// ..data (the one atomic step), remove the old directory.
func (c *configMap) update(key, body string) {
	c.t.Helper()
	c.gen++
	ts := filepath.Join(c.dir, "..2026_12_01_00_00_0"+string(rune('0'+c.gen)))
	if err := os.Mkdir(ts, 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, key), []byte(body), 0o644); err != nil {
		c.t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(c.dir, "..data"))
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		c.t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(c.dir, old)); err != nil {
			c.t.Fatal(err)
		}
	}
}

// startWatch runs a Watch over paths and returns its change notices.
func startWatch(t *testing.T, paths ...string) <-chan string {
	t.Helper()
	changes := make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	watching := make(chan struct{})
	go func() {
		defer close(done)
		w := Watch{Paths: paths, OnChange: func(p string) { changes <- p }, watching: func() { close(watching) }}
		_ = w.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	// Changes count from when Run has read the initial state and added its
	// watches; a fixed sleep instead loses the first change under load.
	select {
	case <-watching:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher did not start watching")
	}
	return changes
}

func expectChange(t *testing.T, changes <-chan string, want string) {
	t.Helper()
	select {
	case got := <-changes:
		if got != want {
			t.Fatalf("change of %s, want %s", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no change of %s reported", want)
	}
}

func expectQuiet(t *testing.T, changes <-chan string) {
	t.Helper()
	select {
	case got := <-changes:
		t.Fatalf("unexpected change of %s", got)
	case <-time.After(4 * watchSettle):
	}
}

// TestWatchConfigMapSwap: the ..data swap of a ConfigMap update is one
// change of the key's file, though the file's own name never changed.
func TestWatchConfigMapSwap(t *testing.T) {
	cm, path := newConfigMap(t, "egress_allowlist.json", `{"v":1}`)
	changes := startWatch(t, path)
	cm.update("egress_allowlist.json", `{"v":2}`)
	expectChange(t, changes, path)
	expectQuiet(t, changes) // one swap, one change
	cm.update("egress_allowlist.json", `{"v":3}`)
	expectChange(t, changes, path)
	// The same content again (kubelet resyncs): no change.
	cm.update("egress_allowlist.json", `{"v":3}`)
	expectQuiet(t, changes)
}

// TestWatchPlainFile: a file replaced by rename (editors, `kubectl cp`) or
// written in place; and a second watched file in another directory.
func TestWatchPlainFile(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	path, prof := filepath.Join(dir, "policy.json"), filepath.Join(other, "seccomp.json")
	for _, p := range []string{path, prof} {
		if err := os.WriteFile(p, []byte("a"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	changes := startWatch(t, path, prof)

	tmp := filepath.Join(dir, ".policy.json.swp")
	if err := os.WriteFile(tmp, []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	expectChange(t, changes, path)

	if err := os.WriteFile(path, []byte("c"), 0o644); err != nil {
		t.Fatal(err)
	}
	expectChange(t, changes, path)

	// Replaced, not written in place: the check that reported path's change
	// goes on to read prof, and could see it half written (a change to
	// the empty file, then one to "b").
	if err := os.WriteFile(prof+".tmp", []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(prof+".tmp", prof); err != nil {
		t.Fatal(err)
	}
	expectChange(t, changes, prof)

	// Deleted, then back: two changes (unreadable is a state too).
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	expectChange(t, changes, path)
	if err := os.WriteFile(path, []byte("d"), 0o644); err != nil {
		t.Fatal(err)
	}
	expectChange(t, changes, path)
}

// TestWatchNeverReadsAFIFO: a FIFO in a watched file's place is not
// opened for reading, so the watcher takes nothing a writer meant for the
// supervisor (and never blocks on it).
func TestWatchNeverReadsAFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seccomp.json")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	changes := startWatch(t, path)
	// A reader opening the FIFO now would unblock this writer: no one
	// must, for the length of a settle period and more.
	opened := make(chan struct{})
	go func() {
		if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
			close(opened)
			f.Close()
		}
	}()
	if err := os.Chmod(path, 0o644); err != nil { // an event in the directory
		t.Fatal(err)
	}
	select {
	case <-opened:
		t.Fatal("the watcher opened the FIFO for reading")
	case <-changes:
		t.Fatal("a FIFO's mode change counted as a content change")
	case <-time.After(4 * watchSettle):
	}
	// Release the writer.
	if f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
		<-opened
		f.Close()
	}
}
