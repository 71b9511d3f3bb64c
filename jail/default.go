package jail

// allowedSyscalls is the built-in allowlist: Docker's default profile for a
// container without CAP_SYS_ADMIN, minus what an agent never needs and what
// has been a steady source of kernel escapes:
//   - ptrace, process_vm_readv/writev (Docker allows them on kernel ≥ 4.8):
//     no debugging or memory access of other processes;
//   - io_uring_setup/enter/register: a large, fast-moving attack surface that
//     also bypasses seccomp for the operations it performs;
//   - modify_ldt: 16-bit segments, only for old emulators.
//
// Everything Docker gates on a capability (mount, umount2, pivot_root,
// chroot, unshare, setns, bpf, perf_event_open, userfaultfd, keyctl, add_key,
// request_key, kexec_*, *_module, open_by_handle_at, reboot, swapon/off, acct,
// quotactl, ...) is absent, so the default action denies it with EPERM.
var allowedSyscalls = []string{
	"accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk",
	"capget", "capset", "chdir", "chmod", "chown", "clock_adjtime",
	"clock_getres", "clock_gettime", "clock_nanosleep", "close", "close_range",
	"connect", "copy_file_range", "creat", "dup", "dup2", "dup3",
	"epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
	"epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
	"execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2",
	"fadvise64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat",
	"fchown", "fchownat", "fcntl", "fdatasync", "fgetxattr", "flistxattr",
	"flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstatfs", "fsync",
	"ftruncate", "futex", "futex_waitv", "futimesat", "getcpu", "getcwd",
	"getdents", "getdents64", "getegid", "geteuid", "getgid", "getgroups",
	"getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid",
	"getpriority", "getrandom", "getresgid", "getresuid", "getrlimit",
	"get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt",
	"get_thread_area", "gettid", "gettimeofday", "getuid", "getxattr",
	"inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
	"io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents",
	"ioprio_get", "ioprio_set", "io_setup", "io_submit", "kill",
	"landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
	"lchown", "lgetxattr", "link", "linkat", "listen", "listxattr",
	"llistxattr", "lremovexattr", "lseek", "lsetxattr", "lstat", "madvise",
	"membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat",
	"mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mprotect",
	"mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend",
	"mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync",
	"munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep",
	"newfstatat", "open", "openat", "openat2", "pause", "pidfd_open",
	"pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
	"pkey_mprotect", "poll", "ppoll", "prctl", "pread64", "preadv", "preadv2",
	"prlimit64", "process_mrelease", "pselect6", "pwrite64", "pwritev",
	"pwritev2", "read", "readahead", "readlink", "readlinkat", "readv",
	"recvfrom", "recvmmsg", "recvmsg", "remap_file_pages", "removexattr",
	"rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq",
	"rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
	"rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_tgsigqueueinfo",
	"sched_getaffinity", "sched_getattr", "sched_getparam",
	"sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
	"sched_rr_get_interval", "sched_setaffinity", "sched_setattr",
	"sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select",
	"semctl", "semget", "semop", "semtimedop", "sendfile", "sendmmsg",
	"sendmsg", "sendto", "setfsgid", "setfsuid", "setgid", "setgroups",
	"setitimer", "setpgid", "setpriority", "setregid", "setresgid", "setresuid",
	"setreuid", "setrlimit", "set_robust_list", "setsid", "setsockopt",
	"set_thread_area", "set_tid_address", "setuid", "setxattr", "shmat",
	"shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd",
	"signalfd4", "socketpair", "splice", "stat", "statfs", "statx", "symlink",
	"symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee",
	"tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
	"timer_gettime", "timer_settime", "timerfd_create", "timerfd_gettime",
	"timerfd_settime", "times", "tkill", "truncate", "umask", "uname", "unlink",
	"unlinkat", "utime", "utimensat", "utimes", "vfork", "vmsplice", "wait4",
	"waitid", "write", "writev", "arch_prctl",
}

// Argument values of the conditional rules below.
const (
	// cloneNamespaceFlags is every CLONE_NEW* flag (NEWNS, NEWCGROUP, NEWUTS,
	// NEWIPC, NEWUSER, NEWPID, NEWNET), as in Docker's profile: clone is
	// allowed only when none of them is set.
	cloneNamespaceFlags = 0x7E020000
	// afVsock is AF_VSOCK: a channel to the hypervisor, never the agent's.
	afVsock = 40
	// enosys makes clone3 look unimplemented so libc falls back to clone,
	// whose flags (unlike clone3's, behind a pointer) the filter can check.
	enosys = 38
)

// safePersonalities are the personality(2) values Docker allows: PER_LINUX,
// PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and 0xffffffff (query).
var safePersonalities = []uint64{0x0, 0x8, 0x20000, 0x20008, 0xffffffff}

// DefaultProfile returns the built-in profile: an allowlist whose default
// action is ERRNO(EPERM), at least as strict as Docker's default for a
// container without CAP_SYS_ADMIN (see allowedSyscalls). Each call returns a
// fresh value the caller may modify.
func DefaultProfile() *Profile {
	eperm, nosys := uint(1), uint(enosys)
	p := &Profile{
		Comment:         "forge-supervisor built-in profile",
		DefaultAction:   actErrno,
		DefaultErrnoRet: &eperm,
		Architectures:   []string{"SCMP_ARCH_X86_64"},
		Syscalls: []Syscalls{
			{Names: append([]string(nil), allowedSyscalls...), Action: actAllow},
			{
				Names: []string{"clone"}, Action: actAllow,
				Comment: "threads and fork, never new namespaces",
				Args:    []Arg{{Index: 0, Value: cloneNamespaceFlags, ValueTwo: 0, Op: "SCMP_CMP_MASKED_EQ"}},
			},
			{
				Names: []string{"clone3"}, Action: actErrno, ErrnoRet: &nosys,
				Comment: "flags are behind a pointer: make libc fall back to clone",
			},
			{
				Names: []string{"socket"}, Action: actAllow,
				Comment: "any family but AF_VSOCK",
				Args:    []Arg{{Index: 0, Value: afVsock, Op: "SCMP_CMP_NE"}},
			},
		},
	}
	for _, v := range safePersonalities {
		p.Syscalls = append(p.Syscalls, Syscalls{
			Names: []string{"personality"}, Action: actAllow,
			Args: []Arg{{Index: 0, Value: v, Op: "SCMP_CMP_EQ"}},
		})
	}
	return p
}
