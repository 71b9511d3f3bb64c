package jail

import "runtime"

// Action names of the profile format.
const (
	actAllow       = "SCMP_ACT_ALLOW"
	actErrno       = "SCMP_ACT_ERRNO"
	actLog         = "SCMP_ACT_LOG"
	actKill        = "SCMP_ACT_KILL"
	actKillThread  = "SCMP_ACT_KILL_THREAD"
	actKillProcess = "SCMP_ACT_KILL_PROCESS"
	actTrap        = "SCMP_ACT_TRAP"
)

// actionNames are the supported actions. SCMP_ACT_TRACE and SCMP_ACT_NOTIFY
// are refused: with no tracer or listener attached they do not deny reliably.
var actionNames = map[string]struct{}{
	actAllow: {}, actErrno: {}, actLog: {}, actKill: {},
	actKillThread: {}, actKillProcess: {}, actTrap: {},
}

// compareOps are the argument comparison operators of the profile format.
var compareOps = map[string]struct{}{
	"SCMP_CMP_NE": {}, "SCMP_CMP_LT": {}, "SCMP_CMP_LE": {}, "SCMP_CMP_EQ": {},
	"SCMP_CMP_GE": {}, "SCMP_CMP_GT": {}, "SCMP_CMP_MASKED_EQ": {},
}

// knownFlags are OCI's seccomp flags. They are accepted and validated, but
// the filter is always loaded the same way (no TSYNC needed: the jail execs
// from the one thread the filter is loaded on).
var knownFlags = map[string]struct{}{
	"SECCOMP_FILTER_FLAG_TSYNC":              {},
	"SECCOMP_FILTER_FLAG_LOG":                {},
	"SECCOMP_FILTER_FLAG_SPEC_ALLOW":         {},
	"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": {},
}

// archNames maps both spellings used by profiles (SCMP_ARCH_* in
// architectures/archMap, Go-style short names in includes/excludes.arches)
// to one canonical short name.
var archNames = map[string]string{
	"SCMP_ARCH_X86": "x86", "x86": "x86", "386": "x86",
	"SCMP_ARCH_X86_64": "amd64", "amd64": "amd64",
	"SCMP_ARCH_X32": "x32", "x32": "x32",
	"SCMP_ARCH_ARM": "arm", "arm": "arm",
	"SCMP_ARCH_AARCH64": "arm64", "arm64": "arm64",
	"SCMP_ARCH_MIPS": "mips", "mips": "mips",
	"SCMP_ARCH_MIPS64": "mips64", "mips64": "mips64",
	"SCMP_ARCH_MIPS64N32": "mips64n32", "mips64n32": "mips64n32",
	"SCMP_ARCH_MIPSEL": "mipsle", "mipsel": "mipsle", "mipsle": "mipsle",
	"SCMP_ARCH_MIPSEL64": "mips64le", "mipsel64": "mips64le", "mips64le": "mips64le",
	"SCMP_ARCH_MIPSEL64N32": "mipsel64n32", "mipsel64n32": "mipsel64n32",
	"SCMP_ARCH_PPC": "ppc", "ppc": "ppc",
	"SCMP_ARCH_PPC64": "ppc64", "ppc64": "ppc64",
	"SCMP_ARCH_PPC64LE": "ppc64le", "ppc64le": "ppc64le",
	"SCMP_ARCH_S390": "s390", "s390": "s390",
	"SCMP_ARCH_S390X": "s390x", "s390x": "s390x",
	"SCMP_ARCH_PARISC": "parisc", "parisc": "parisc",
	"SCMP_ARCH_PARISC64": "parisc64", "parisc64": "parisc64",
	"SCMP_ARCH_RISCV64": "riscv64", "riscv64": "riscv64",
	"SCMP_ARCH_LOONGARCH64": "loong64", "loong64": "loong64",
}

// nativeArch is the canonical name of the architecture this binary runs as.
// The filter covers it alone: every other architecture's syscalls (i386 via
// int $0x80, x32 via __X32_SYSCALL_BIT) hit the bad-architecture action.
var nativeArch = archNames[runtime.GOARCH]

// capNames are the capabilities a profile's includes/excludes may name.
var capNames = map[string]struct{}{
	"CAP_CHOWN": {}, "CAP_DAC_OVERRIDE": {}, "CAP_DAC_READ_SEARCH": {}, "CAP_FOWNER": {},
	"CAP_FSETID": {}, "CAP_KILL": {}, "CAP_SETGID": {}, "CAP_SETUID": {}, "CAP_SETPCAP": {},
	"CAP_LINUX_IMMUTABLE": {}, "CAP_NET_BIND_SERVICE": {}, "CAP_NET_BROADCAST": {},
	"CAP_NET_ADMIN": {}, "CAP_NET_RAW": {}, "CAP_IPC_LOCK": {}, "CAP_IPC_OWNER": {},
	"CAP_SYS_MODULE": {}, "CAP_SYS_RAWIO": {}, "CAP_SYS_CHROOT": {}, "CAP_SYS_PTRACE": {},
	"CAP_SYS_PACCT": {}, "CAP_SYS_ADMIN": {}, "CAP_SYS_BOOT": {}, "CAP_SYS_NICE": {},
	"CAP_SYS_RESOURCE": {}, "CAP_SYS_TIME": {}, "CAP_SYS_TTY_CONFIG": {}, "CAP_MKNOD": {},
	"CAP_LEASE": {}, "CAP_AUDIT_WRITE": {}, "CAP_AUDIT_CONTROL": {}, "CAP_SETFCAP": {},
	"CAP_MAC_OVERRIDE": {}, "CAP_MAC_ADMIN": {}, "CAP_SYSLOG": {}, "CAP_WAKE_ALARM": {},
	"CAP_BLOCK_SUSPEND": {}, "CAP_AUDIT_READ": {}, "CAP_PERFMON": {}, "CAP_BPF": {},
	"CAP_CHECKPOINT_RESTORE": {},
}
