package actors

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Timing of the file watcher.
const (
	// watchSettle is how long the watcher waits after the last inotify
	// event before it reads the files: an editor's save or kubelet's
	// ConfigMap swap is several events in a few milliseconds, and one
	// reload should follow, on the finished files.
	watchSettle = 150 * time.Millisecond
	// watchPoll is the check interval when inotify is unavailable (no
	// instances left: fs.inotify.max_user_instances).
	watchPoll = 5 * time.Second
	// maxWatchedFile bounds what the watcher reads to compare contents; a
	// policy or seccomp profile is KiBs. A larger file still counts as
	// changed when its first bytes or its size change.
	maxWatchedFile = 16 << 20
)

// Watch reloads when files change. It watches the directory of each file
// (and of the file its symlinks lead to), never the file itself: editors
// and kubelet replace files rather than write them, and a Kubernetes
// ConfigMap update swaps the directory's ..data symlink while the file's
// own name stays a symlink to ..data/NAME. Any event in those directories
// leads, after watchSettle, to comparing each file's content with what it
// was; OnChange is called for each file whose content differs.
type Watch struct {
	Paths    []string
	OnChange func(path string)
	Log      *zap.Logger

	// watching, when set, is called once Run has read the files' initial
	// state and is watching (or polling): a change made after it returns
	// is reported. Tests wait on it instead of sleeping.
	watching func()
}

// fileState is what the watcher last saw of a file: its content's hash,
// or the error reading it.
type fileState struct {
	sum [sha256.Size]byte
	err string
}

// Run watches until ctx is done. It never returns early: without inotify
// it polls every watchPoll.
func (w Watch) Run(ctx context.Context) error {
	log := w.Log
	if log == nil {
		log = zap.NewNop()
	}
	seen := make(map[string]fileState, len(w.Paths))
	for _, p := range w.Paths {
		seen[p] = readState(p)
	}
	check := func() {
		for _, p := range w.Paths {
			if st := readState(p); st != seen[p] {
				seen[p] = st
				w.OnChange(p)
			}
		}
	}

	ino, err := newInotify(w.watchedDirs())
	if err != nil {
		log.Warn("file_watch_degraded", zap.Error(err), zap.Duration("poll_interval", watchPoll))
		tick := time.NewTicker(watchPoll)
		defer tick.Stop()
		w.markWatching()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				check()
			}
		}
	}
	defer ino.stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	w.markWatching()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-ino.events:
			if !ok {
				log.Error("file_watch_failed", zap.String("reason", "inotify read failed; files are no longer watched"))
				<-ctx.Done()
				return nil
			}
			settle.Reset(watchSettle)
		case <-settle.C:
			// A swap may have made the links lead to a new directory.
			ino.add(w.watchedDirs())
			check()
		}
	}
}

func (w Watch) markWatching() {
	if w.watching != nil {
		w.watching()
	}
}

// watchedDirs are the directories of the files and of their symlink
// targets.
func (w Watch) watchedDirs() []string {
	var dirs []string
	for _, p := range w.Paths {
		dirs = append(dirs, filepath.Dir(p))
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(real))
		}
	}
	return dirs
}

// watchMask: every way a file in a directory can get new content.
// IN_CLOSE_WRITE and not IN_MODIFY: a file written in place is read once
// its writer is done.
const watchMask = unix.IN_CLOSE_WRITE | unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM |
	unix.IN_DELETE | unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// inotify is one inotify instance and the goroutine that turns its reads
// into pulses on events (closed when reading fails or stop is called).
type inotify struct {
	f      *os.File
	fd     int
	events chan struct{}
	done   chan struct{}
}

func newInotify(dirs []string) (*inotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	// Non-blocking, so os.File reads through the runtime poller and Close
	// wakes a blocked Read.
	in := &inotify{f: os.NewFile(uintptr(fd), "inotify"), fd: fd, events: make(chan struct{}, 1), done: make(chan struct{})}
	if err := in.add(dirs); err != nil {
		in.f.Close()
		return nil, err
	}
	go in.read()
	return in, nil
}

// add watches dirs (again: a directory already watched keeps its watch).
// It fails only when no directory could be watched.
func (in *inotify) add(dirs []string) error {
	var errs []error
	added := 0
	for _, d := range dirs {
		if _, err := unix.InotifyAddWatch(in.fd, d, watchMask); err != nil {
			errs = append(errs, fmt.Errorf("inotify_add_watch(%s): %w", d, err))
			continue
		}
		added++
	}
	if added == 0 {
		return errors.Join(append(errs, errors.New("no directory to watch"))...)
	}
	return nil
}

// read pulses events once per read: the events themselves are not
// needed, since every pulse leads to comparing the files' contents.
func (in *inotify) read() {
	defer close(in.done)
	defer close(in.events)
	buf := make([]byte, 64<<10)
	for {
		if _, err := in.f.Read(buf); err != nil {
			return
		}
		select {
		case in.events <- struct{}{}:
		default:
		}
	}
}

func (in *inotify) stop() {
	in.f.Close()
	<-in.done
}

// readState hashes the file's content (following symlinks), or records why
// it cannot be read. Only regular files are read: a FIFO or a device in
// their place is recorded by its kind, never opened for reading — the
// watcher must not consume what the supervisor itself reads.
func readState(path string) fileState {
	fi, err := os.Stat(path)
	if err != nil {
		return fileState{err: err.Error()}
	}
	if !fi.Mode().IsRegular() {
		return fileState{err: "not a regular file: " + fi.Mode().Type().String()}
	}
	// O_NONBLOCK: should it have become a FIFO since the Stat, open does
	// not wait for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return fileState{err: err.Error()}
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fileState{err: "not a regular file"}
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, maxWatchedFile)); err != nil {
		return fileState{err: err.Error()}
	}
	var st fileState
	copy(st.sum[:], h.Sum(nil))
	return st
}
