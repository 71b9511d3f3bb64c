package jail_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"unsafe"

	"github.com/forge/forge-supervisor/jail"
	"golang.org/x/sys/unix"
)

// probeModeEnv makes the test binary, run as the jailed agent, perform the
// forbidden syscalls itself and print one "name=ERRNO" line for each.
const probeModeEnv = "JAIL_TEST_PROBE"

func TestMain(m *testing.M) {
	jail.RunIfJail()
	if os.Getenv(probeModeEnv) == "1" {
		os.Exit(probe())
	}
	os.Exit(m.Run())
}

// probe runs raw syscalls that the jail must deny.
func probe() int {
	runtime.LockOSThread()
	report := func(name string, err error) {
		switch e := err.(type) {
		case nil:
			fmt.Printf("%s=OK\n", name)
		case syscall.Errno:
			fmt.Printf("%s=%s\n", name, unix.ErrnoName(e))
		default:
			fmt.Printf("%s=%v\n", name, err)
		}
	}
	report("unshare_user", unix.Unshare(unix.CLONE_NEWUSER))
	report("unshare_net", unix.Unshare(unix.CLONE_NEWNET))
	report("setns", unix.Setns(0, 0))
	report("mount", unix.Mount("x", "/tmp", "tmpfs", 0, ""))
	report("umount2", unix.Unmount("/proc", unix.MNT_DETACH))
	report("pivot_root", unix.PivotRoot("/", "/"))
	report("chroot", unix.Chroot("/"))
	report("bpf", rawErr(unix.SYS_BPF, 0, 0, 0))
	report("perf_event_open", rawErr(unix.SYS_PERF_EVENT_OPEN, 0, 0, 0))
	report("userfaultfd", rawErr(unix.SYS_USERFAULTFD, 0, 0, 0))
	var params [120]byte
	report("io_uring_setup", rawErr(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0))
	report("keyctl", rawErr(unix.SYS_KEYCTL, 0, 0, 0))
	report("add_key", rawErr(unix.SYS_ADD_KEY, 0, 0, 0))
	report("request_key", rawErr(unix.SYS_REQUEST_KEY, 0, 0, 0))
	report("kexec_load", rawErr(unix.SYS_KEXEC_LOAD, 0, 0, 0))
	report("init_module", rawErr(unix.SYS_INIT_MODULE, 0, 0, 0))
	report("finit_module", rawErr(unix.SYS_FINIT_MODULE, 0, 0, 0))
	report("delete_module", rawErr(unix.SYS_DELETE_MODULE, 0, 0, 0))
	report("open_by_handle_at", rawErr(unix.SYS_OPEN_BY_HANDLE_AT, 0, 0, 0))
	report("reboot", rawErr(unix.SYS_REBOOT, 0, 0, 0))
	report("swapon", rawErr(unix.SYS_SWAPON, 0, 0, 0))
	report("acct", rawErr(unix.SYS_ACCT, 0, 0, 0))
	report("quotactl", rawErr(unix.SYS_QUOTACTL, 0, 0, 0))
	report("process_vm_readv", rawErr(unix.SYS_PROCESS_VM_READV, uintptr(os.Getppid()), 0, 0))
	report("personality_no_aslr", rawErr(unix.SYS_PERSONALITY, 0x0040000 /* ADDR_NO_RANDOMIZE */, 0, 0))
	report("personality_query", rawErr(unix.SYS_PERSONALITY, 0xffffffff, 0, 0))
	report("socket_vsock", rawErr(unix.SYS_SOCKET, unix.AF_VSOCK, unix.SOCK_STREAM, 0))
	// PTRACE_ATTACH to a sibling: the agent's own child, same uid.
	sib, err := os.StartProcess("/bin/sleep", []string{"sleep", "30"}, &os.ProcAttr{})
	if err != nil {
		report("ptrace_attach", err)
	} else {
		report("ptrace_attach", unix.PtraceAttach(sib.Pid))
		_ = sib.Kill()
		_, _ = sib.Wait()
	}
	// Multicast group joins (item 8 of issue 11), also with garbage in the
	// upper half of the level and optname registers.
	ufd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err == nil {
		mreq := unix.IPMreq{Multiaddr: [4]byte{239, 1, 2, 3}}
		report("mcast_ip_add_membership", unix.SetsockoptIPMreq(ufd, unix.SOL_IP, unix.IP_ADD_MEMBERSHIP, &mreq))
		report("mcast_ip_add_membership_hibits", rawErr6(unix.SYS_SETSOCKOPT, uintptr(ufd), 1<<32|unix.SOL_IP,
			1<<32|unix.IP_ADD_MEMBERSHIP, uintptr(unsafe.Pointer(&mreq)), unsafe.Sizeof(mreq)))
		var gsr [264]byte // struct group_source_req
		report("mcast_join_source_group", rawErr6(unix.SYS_SETSOCKOPT, uintptr(ufd), unix.SOL_IP,
			unix.MCAST_JOIN_SOURCE_GROUP, uintptr(unsafe.Pointer(&gsr[0])), uintptr(len(gsr))))
		report("mcast_ip_multicast_ttl", unix.SetsockoptInt(ufd, unix.SOL_IP, unix.IP_MULTICAST_TTL, 2))
		report("sockopt_reuseaddr", unix.SetsockoptInt(ufd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1))
		unix.Close(ufd)
	}
	if u6, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM, 0); err == nil {
		mreq6 := unix.IPv6Mreq{Multiaddr: [16]byte{0xff, 0x05, 15: 1}}
		report("mcast_ipv6_join_group", unix.SetsockoptIPv6Mreq(u6, unix.SOL_IPV6, unix.IPV6_JOIN_GROUP, &mreq6))
		var gr [136]byte // struct group_req
		report("mcast_ipv6_mcast_join_group", rawErr6(unix.SYS_SETSOCKOPT, uintptr(u6), unix.SOL_IPV6,
			unix.MCAST_JOIN_GROUP, uintptr(unsafe.Pointer(&gr[0])), uintptr(len(gr))))
		report("sockopt_v6only", unix.SetsockoptInt(u6, unix.SOL_IPV6, unix.IPV6_V6ONLY, 1))
		unix.Close(u6)
	}
	// Allowed calls still work.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	report("socket_inet", err)
	if err == nil {
		unix.Close(fd)
	}
	report("personality_linux", rawErr(unix.SYS_PERSONALITY, 0, 0, 0))
	return 0
}

func rawErr6(nr, a1, a2, a3, a4, a5 uintptr) error {
	_, _, e := unix.Syscall6(nr, a1, a2, a3, a4, a5, 0)
	if e != 0 {
		return e
	}
	return nil
}

func rawErr(nr, a1, a2, a3 uintptr) error {
	_, _, e := unix.Syscall(nr, a1, a2, a3)
	if e != 0 {
		return e
	}
	return nil
}

// agentDir makes a temporary directory the agent (UID 1000) can read and
// enter, removed when the test ends.
func agentDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "jail-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// agentCopyOfSelf copies the test binary where UID 1000 can execute it
// (go test builds in a 0700 directory).
func agentCopyOfSelf(t testing.TB, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, "jail.test")
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, src); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}
