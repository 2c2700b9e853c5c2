"""The sandbox's seccomp filter: an allow-list, built with libseccomp (through `pyseccomp`).

The filter is built in the kernel's process, exported as a BPF program, and handed to the
child, which installs it on itself (prctl) before one byte of untrusted code is compiled.
libseccomp, not this module, writes the BPF: it checks the architecture (any other ABI,
such as i386 `int 0x80` or x32, kills the process) and resolves syscall numbers per
architecture.

Policy, in order of what it stops:
  * every syscall not named in `ALLOW` fails with EPERM (an allow-list: a syscall added to
    Linux tomorrow is refused until someone reads it and allows it here);
  * `clone` is allowed only without namespace flags: `clone(CLONE_NEWUSER|...)` fails
    with EPERM, so no path (unshare, clone flags, clone3, setns) makes a namespace;
  * `clone3` fails with ENOSYS: its flags live in memory a filter cannot read, and ENOSYS
    makes the C library fall back to `clone` for threads and fork;
  * no socket can be reached by address: `socket` makes only AF_UNIX stream sockets
    (another family: EACCES; another type: EPERM) and `connect` and `bind` fail with EACCES, so code
    that sees host files (`fs_view="host"`) still cannot connect to a world-writable Unix
    socket, to an abstract one (shared with the host when no private network namespace
    could be made), or send a datagram to /dev/log; `socketpair` (anonymous, already
    connected) stays, for asyncio and the like;
  * `ioctl` only for the few terminal and file-descriptor requests the interpreter makes
    (not TIOCSTI: no typing into a tty).

Invariant: the filter only ever narrows (seccomp filters stack; a child inherits them and
cannot remove them), and it is installed after no_new_privs and the uid drop.
"""
from __future__ import annotations

import errno
import os
import tempfile
import threading
from typing import Any

CLONE_NS_FLAGS = 0x7E020000
"""CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET. (CLONE_NEWTIME
exists only for unshare and clone3, both refused; in clone()'s flags that bit is part of
the exit signal.)"""

AF_UNIX = 1
SOCK_STREAM = 1
SOCK_TYPE_MASK = 0xF   # the type without SOCK_NONBLOCK / SOCK_CLOEXEC

IOCTL_ALLOW = (
    0x5401,  # TCGETS: isatty()
    0x5413,  # TIOCGWINSZ: terminal size
    0x541B,  # FIONREAD: bytes waiting on a pipe or socket
    0x5421,  # FIONBIO: non-blocking
    0x5450,  # FIONCLEX
    0x5451,  # FIOCLEX: close-on-exec, which the interpreter sets on every fd it opens
)

ALLOW: tuple[str, ...] = (
    # memory
    "brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "msync", "mincore",
    # files and descriptors (paths are confined by the mount namespace and file modes)
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "open", "openat", "openat2", "close", "close_range", "creat", "lseek",
    "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs", "access",
    "faccessat", "faccessat2", "getdents", "getdents64", "getcwd", "chdir", "fchdir",
    "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2",
    "link", "linkat", "symlink", "symlinkat", "readlink", "readlinkat", "chmod", "fchmod",
    "fchmodat", "truncate", "ftruncate", "fallocate", "fsync", "fdatasync", "flock", "fcntl",
    "dup", "dup2", "dup3", "pipe", "pipe2", "umask", "utimensat", "utime", "utimes",
    "futimesat", "sendfile", "copy_file_range", "splice", "tee", "fadvise64", "memfd_create",
    "eventfd", "eventfd2", "ioctl",
    # waiting and time
    "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "nanosleep", "clock_nanosleep",
    "clock_gettime", "clock_getres", "gettimeofday", "time", "times", "alarm", "getitimer",
    "setitimer", "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun",
    "timer_delete", "timerfd_create", "timerfd_settime", "timerfd_gettime", "pause",
    "futex", "futex_waitv", "sched_yield", "sched_getaffinity", "sched_getparam",
    "sched_getscheduler", "sched_get_priority_max", "sched_get_priority_min",
    # signals
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait",
    "rt_sigsuspend", "sigaltstack", "signalfd", "signalfd4", "kill", "tgkill", "tkill",
    # processes (clone is allowed below, without namespace flags)
    "fork", "vfork", "execve", "execveat", "wait4", "waitid", "exit", "exit_group",
    "set_tid_address", "set_robust_list", "get_robust_list", "rseq", "arch_prctl", "prctl",
    "getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getresuid",
    "getresgid", "getgroups", "getpgrp", "getpgid", "setpgid", "getsid", "setsid",
    "getpriority", "setpriority", "getrlimit", "setrlimit", "prlimit64", "getrusage",
    "capget", "uname", "sysinfo", "getrandom", "getcpu", "membarrier",
    # sockets: only AF_UNIX stream ones can be made (see `socket` below), and none can be
    # connected or bound to an address: no connect, no bind (EACCES below)
    "socketpair", "listen", "accept", "accept4", "sendto", "recvfrom",
    "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown", "getsockname", "getpeername",
    "getsockopt", "setsockopt",
)
"""Everything a CPython interpreter and ordinary library code need. Not here (so EPERM):
unshare, setns, mount and the new mount API, pivot_root, chroot, ptrace and
process_vm_*, bpf, perf_event_open, io_uring_*, keyctl/add_key/request_key, module and
kexec calls, userfaultfd, seccomp, capset, set*uid/set*gid, personality, reboot,
swapon, syslog, acct, quotactl, name_to_handle_at/open_by_handle_at, pidfd_getfd."""

_lock = threading.Lock()
_cached: bytes | None = None


class SeccompUnavailable(RuntimeError):
    """libseccomp or pyseccomp is missing, or this platform has no seccomp."""


def _build(seccomp: Any) -> Any:
    f = seccomp.SyscallFilter(seccomp.ERRNO(errno.EPERM))
    f.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
    try:  # a binary search over syscall numbers instead of a linear scan (libseccomp >= 2.5)
        f.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
    except OSError:
        pass
    for name in ALLOW:
        if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) < 0:
            continue  # not a syscall on this architecture (e.g. `open` on aarch64)
        if name == "ioctl":
            for req in IOCTL_ALLOW:
                f.add_rule(seccomp.ALLOW, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, req))
            continue
        f.add_rule(seccomp.ALLOW, name)
    f.add_rule(seccomp.ALLOW, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NS_FLAGS, 0))
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    f.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, AF_UNIX),
               seccomp.Arg(1, seccomp.MASKED_EQ, SOCK_TYPE_MASK, SOCK_STREAM))
    f.add_rule(seccomp.ERRNO(errno.EACCES), "socket", seccomp.Arg(0, seccomp.NE, AF_UNIX))
    # an AF_UNIX socket of another type (datagram, seqpacket) matches no rule: EPERM
    for name in ("connect", "bind"):
        f.add_rule(seccomp.ERRNO(errno.EACCES), name)
    return f


def _import() -> Any:
    try:
        import pyseccomp
    except (ImportError, RuntimeError, OSError) as e:  # RuntimeError: no libseccomp found
        raise SeccompUnavailable(f"pyseccomp with the system libseccomp is needed for the sandbox's "
                                 f"seccomp filter ({type(e).__name__}: {e}); install agentos[sandbox] "
                                 f"and libseccomp2") from None
    return pyseccomp


def filter_bpf() -> bytes:
    """The filter as a BPF program (struct sock_filter[]), built once per process."""
    global _cached
    with _lock:
        if _cached is None:
            seccomp = _import()
            f = _build(seccomp)
            with tempfile.TemporaryFile() as out:
                f.export_bpf(out)
                out.seek(0)
                prog = out.read()
            if not prog or len(prog) % 8:
                raise SeccompUnavailable(f"libseccomp exported a {len(prog)}-byte program")
            _cached = prog
        return _cached


def filter_text() -> str:
    """The filter in libseccomp's pseudo-code, for reading and for docs."""
    f = _build(_import())
    with tempfile.TemporaryFile("w+") as out:
        f.export_pfc(out)
        out.flush()
        os.fsync(out.fileno())
        out.seek(0)
        return out.read()


__all__ = ["ALLOW", "CLONE_NS_FLAGS", "IOCTL_ALLOW", "SeccompUnavailable", "filter_bpf", "filter_text"]
