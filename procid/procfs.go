package procid

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Limits on what is read from /proc. Each says why that size.
const (
	// maxCmdlineBytes: a command line goes into policy input and audit;
	// 4 KiB holds any sensible one, and ARG_MAX-sized ones are attacks
	// on the log.
	maxCmdlineBytes = 4096
	// maxCmdlineArgs bounds the argument list built from those bytes.
	maxCmdlineArgs = 64
	// statBufLen holds /proc/PID/stat: 52 numbers and a comm of at most
	// 16 bytes stay under 1 KiB even with every field at its widest.
	statBufLen = 1024
	// statusBufLen holds the head of /proc/PID/status, where Tgid is the
	// fourth line.
	statusBufLen = 512
	// dirBufLen is one getdents64 batch: ~170 entries of /proc/PID/fd.
	dirBufLen = 8192
)

// procFS reads process facts under a /proc mount.
type procFS struct {
	root string // "/proc", or a test's directory
}

// stat holds the fields of /proc/PID/stat identity needs.
type stat struct {
	ppid  int
	start uint64 // field 22: start time in clock ticks after boot
	// stack is field 28, the stack's start address. Start times tick at
	// 100 Hz, so two processes started within 10 ms share one; under ASLR
	// each execve draws a new stack address, which tells them apart.
	stack uint64
}

// readStat reads /proc/PID/stat. The comm field (2) is in parentheses and
// may itself contain spaces and ")", so fields are counted from the last
// ")".
func (fs procFS) readStat(pid int) (stat, error) {
	var buf [statBufLen]byte
	n, err := readSmall(fs.path(pid, "stat"), buf[:])
	if err != nil {
		return stat{}, err
	}
	return parseStat(buf[:n])
}

func parseStat(b []byte) (stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, errors.New("procid: stat without a comm field")
	}
	// After ") " come fields 3 (state), 4 (ppid), ... 22 (starttime).
	fields := bytes.Fields(b[i+1:])
	if len(fields) < 26 {
		return stat{}, fmt.Errorf("procid: stat has %d fields after comm, want ≥ 26", len(fields))
	}
	ppid, err := strconv.Atoi(string(fields[1]))
	if err != nil {
		return stat{}, fmt.Errorf("procid: stat ppid %q: %w", fields[1], err)
	}
	start, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("procid: stat starttime %q: %w", fields[19], err)
	}
	stack, err := strconv.ParseUint(string(fields[25]), 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("procid: stat startstack %q: %w", fields[25], err)
	}
	return stat{ppid: ppid, start: start, stack: stack}, nil
}

// readExe is readlink /proc/PID/exe.
func (fs procFS) readExe(pid int) (string, error) {
	var buf [unix.PathMax]byte
	n, err := unix.Readlink(fs.path(pid, "exe"), buf[:])
	if err != nil {
		return "", fmt.Errorf("procid: readlink exe of %d: %w", pid, err)
	}
	return string(buf[:n]), nil
}

// readCmdline reads /proc/PID/cmdline as arguments, within the limits.
func (fs procFS) readCmdline(pid int) ([]string, error) {
	var buf [maxCmdlineBytes]byte
	n, err := readSmall(fs.path(pid, "cmdline"), buf[:])
	if err != nil {
		return nil, err
	}
	return splitCmdline(buf[:n]), nil
}

func splitCmdline(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil // a kernel thread, or a zombie
	}
	parts := bytes.SplitN(b, []byte{0}, maxCmdlineArgs)
	args := make([]string, len(parts))
	for i, p := range parts {
		args[i] = string(p)
	}
	return args
}

// holds reports whether pid has a descriptor on the socket with inode
// ino. Each descriptor costs one fstatat (it follows the /proc magic link
// to the socket inode), which is cheaper than reading and parsing the
// link text. It also reports every socket seen (descriptor and inode),
// for the caches.
func (fs procFS) holds(pid int, ino uint64, seen func(fd int, ino uint64)) (bool, error) {
	dir, err := unix.Open(fs.path(pid, "fd"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(dir)
	var buf [dirBufLen]byte
	found := false
	for {
		n, err := unix.Getdents(dir, buf[:])
		if err != nil {
			return false, err
		}
		if n == 0 {
			return found, nil
		}
		for b := buf[:n]; len(b) >= direntNameOff; {
			reclen := int(le16(b[16:]))
			if reclen < direntNameOff || reclen > len(b) {
				return found, errors.New("procid: malformed dirent")
			}
			name := b[direntNameOff:reclen]
			if j := bytes.IndexByte(name, 0); j >= 0 {
				name = name[:j]
			}
			b = b[reclen:]
			if len(name) == 0 || name[0] < '0' || name[0] > '9' {
				continue // "." and ".."
			}
			var st unix.Stat_t
			if unix.Fstatat(dir, string(name), &st, 0) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
				continue // closed meanwhile, or not a socket
			}
			if st.Ino == ino {
				found = true
			}
			if seen != nil {
				fd, _ := strconv.Atoi(string(name))
				seen(fd, st.Ino)
			}
		}
	}
}

// isThreadOf reports whether tid is a thread of process pid.
func (fs procFS) isThreadOf(pid, tid int) bool {
	return unix.Access(fs.path(pid, "task/"+strconv.Itoa(tid)), unix.F_OK) == nil
}

// holdsAt reports whether pid's descriptor fd is the socket with inode
// ino: one stat, for a descriptor number a previous scan suggests.
func (fs procFS) holdsAt(pid, fd int, ino uint64) bool {
	var st unix.Stat_t
	err := unix.Stat(fs.root+"/"+strconv.Itoa(pid)+"/fd/"+strconv.Itoa(fd), &st)
	return err == nil && st.Mode&unix.S_IFMT == unix.S_IFSOCK && st.Ino == ino
}

// direntNameOff is the offset of d_name in struct linux_dirent64 (u64
// ino, s64 off, u16 reclen, u8 type).
const direntNameOff = 19

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }

// lastPID is the pid most recently handed out in this PID namespace, the
// last field of /proc/loadavg ("0.00 0.01 0.05 1/123 4567").
func (fs procFS) lastPID() (int, error) {
	var buf [128]byte
	n, err := readSmall(fs.root+"/loadavg", buf[:])
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(buf[:n])
	if len(f) < 5 {
		return 0, fmt.Errorf("procid: loadavg %q has no last pid", buf[:n])
	}
	pid, err := strconv.Atoi(string(f[4]))
	if err != nil {
		return 0, fmt.Errorf("procid: loadavg last pid %q: %w", f[4], err)
	}
	return pid, nil
}

// tgid is the thread-group id (the process's pid) of pid, which may name
// a thread: /proc lists only processes, but /proc/TID opens for every
// thread too, and a thread shares its process's descriptors.
func (fs procFS) tgid(pid int) (int, error) {
	var buf [statusBufLen]byte
	n, err := readSmall(fs.path(pid, "status"), buf[:])
	if err != nil {
		return 0, err
	}
	_, rest, ok := bytes.Cut(buf[:n], []byte("\nTgid:"))
	if !ok {
		return 0, fmt.Errorf("procid: status of %d has no Tgid", pid)
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	tgid, err := strconv.Atoi(string(bytes.TrimSpace(line)))
	if err != nil {
		return 0, fmt.Errorf("procid: status of %d: Tgid %q: %w", pid, line, err)
	}
	return tgid, nil
}

// pids lists the numeric entries of /proc: the visible processes.
func (fs procFS) pids() ([]int, error) {
	f, err := os.Open(fs.root)
	if err != nil {
		return nil, fmt.Errorf("procid: open %s: %w", fs.root, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("procid: list %s: %w", fs.root, err)
	}
	out := make([]int, 0, len(names))
	for _, n := range names {
		if n == "" || n[0] < '1' || n[0] > '9' {
			continue
		}
		if pid, err := strconv.Atoi(n); err == nil {
			out = append(out, pid)
		}
	}
	return out, nil
}

func (fs procFS) path(pid int, leaf string) string {
	return fs.root + "/" + strconv.Itoa(pid) + "/" + leaf
}

// readSmall reads up to len(buf) bytes of a /proc file in one read: these
// files are generated whole on the first read.
func readSmall(path string, buf []byte) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("procid: open %s: %w", path, err)
	}
	defer unix.Close(fd)
	n, err := unix.Read(fd, buf)
	if err != nil {
		return 0, fmt.Errorf("procid: read %s: %w", path, err)
	}
	return n, nil
}
