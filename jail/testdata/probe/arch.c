/* Probes the seccomp filter from inside the jail with calls Go cannot make
 * safely: other syscall ABIs (i386 int $0x80, x32 numbers) and raw clone with
 * namespace flags. Prints one "name=result" line per probe. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define X32_SYSCALL_BIT 0x40000000L
#define I386_GETPID 20

static const char *errname(int e) {
	switch (e) {
	case EPERM: return "EPERM";
	case ENOSYS: return "ENOSYS";
	case EINVAL: return "EINVAL";
	default: return strerror(e);
	}
}

int main(int argc, char **argv) {
	if (argc != 2) return 2;
	if (!strcmp(argv[1], "int80")) {
		long ret;
		__asm__ volatile("int $0x80" : "=a"(ret) : "a"(I386_GETPID) : "memory");
		printf("int80=returned %ld\n", ret);
		return 0;
	}
	if (!strcmp(argv[1], "x32")) {
		long ret = syscall(X32_SYSCALL_BIT | SYS_getpid);
		printf("x32=returned %ld errno %s\n", ret, ret < 0 ? errname(errno) : "none");
		return 0;
	}
	if (!strcmp(argv[1], "clone")) {
		long pid = syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0);
		if (pid == 0) _exit(0);
		if (pid > 0) { waitpid(pid, 0, 0); printf("clone_newns=OK\n"); }
		else printf("clone_newns=%s\n", errname(errno));
		pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
		if (pid == 0) _exit(0);
		if (pid > 0) { waitpid(pid, 0, 0); printf("clone_plain=OK\n"); }
		else printf("clone_plain=%s\n", errname(errno));
		long r = syscall(435 /* clone3 */, 0, 0);
		printf("clone3=%s\n", r < 0 ? errname(errno) : "OK");
		return 0;
	}
	return 2;
}
