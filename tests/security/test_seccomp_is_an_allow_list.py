"""The filter is an allow-list built by libseccomp: what it does not name is refused, so a
syscall nobody thought about (or one Linux adds next year) is refused too."""
import errno

from agentos.sandbox import seccomp

from sbx import run_sandboxed

PROBE = r'''
import ctypes, os
async def main(sys, args):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    out = {}
    for name, nr, argv in args:
        ctypes.set_errno(0)
        rc = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(x) for x in argv])
        out[name] = "allowed" if rc >= 0 else ctypes.get_errno()
    await sys.log("info", "result", **out)
'''

REFUSED = [  # (name, x86_64 number, args): each would be a way out, or a way into the kernel
    ("mount", 165, (0, 0, 0, 0, 0)), ("umount2", 166, (0, 0)), ("pivot_root", 155, (0, 0)),
    ("chroot", 161, (0,)), ("ptrace", 101, (16, 1, 0, 0)), ("process_vm_readv", 310, (1, 0, 0, 0, 0, 0)),
    ("bpf", 321, (0, 0, 0)), ("perf_event_open", 298, (0, 0, -1, -1, 0)), ("io_uring_setup", 425, (8, 0)),
    ("keyctl", 250, (0, 0, 0, 0, 0)), ("add_key", 248, (0, 0, 0, 0, 0)), ("userfaultfd", 323, (0,)),
    ("open_tree", 428, (-100, 0, 0)), ("fsopen", 430, (0, 0)), ("move_mount", 429, (0, 0, 0, 0, 0)),
    ("mount_setattr", 442, (0, 0, 0, 0, 0)), ("init_module", 175, (0, 0, 0)), ("kexec_load", 246, (0, 0, 0, 0)),
    ("personality", 135, (0x0040000,)), ("setuid", 105, (0,)), ("capset", 126, (0, 0)),
    ("seccomp", 317, (1, 0, 0)), ("pidfd_getfd", 438, (0, 0, 0)), ("name_to_handle_at", 303, (0, 0, 0, 0, 0)),
    ("unassigned_463", 463, ()), ("unassigned_1000", 1000, ()),
]


def test_syscalls_off_the_allow_list_fail_with_eperm():
    import os

    if os.uname().machine != "x86_64":
        import pytest
        pytest.skip("syscall numbers here are x86_64's")
    out = run_sandboxed(PROBE, args=[list(r) for r in REFUSED])
    assert out.reason == "normal", out.reason
    assert out.result == {name: errno.EPERM for name, _nr, _a in REFUSED}, out.result


SOCKETS = r'''
import socket
async def main(sys, args):
    out = {}
    for name, family, kind in (("unix", socket.AF_UNIX, socket.SOCK_STREAM), ("inet", socket.AF_INET, socket.SOCK_STREAM),
                               ("inet6", socket.AF_INET6, socket.SOCK_DGRAM), ("netlink", 16, socket.SOCK_RAW),
                               ("packet", 17, socket.SOCK_RAW)):
        try:
            socket.socket(family, kind).close()
            out[name] = "made"
        except OSError as e:
            out[name] = e.errno
    a, b = socket.socketpair()
    a.sendall(b"x")
    out["pair"] = b.recv(1).decode()
    await sys.log("info", "result", **out)
'''


def test_only_unix_sockets_can_be_made():
    out = run_sandboxed(SOCKETS)
    assert out.reason == "normal", out.reason
    assert out.result == {"unix": "made", "inet": errno.EACCES, "inet6": errno.EACCES,
                          "netlink": errno.EACCES, "packet": errno.EACCES, "pair": "x"}


TIOCSTI = r'''
import ctypes, os
async def main(sys, args):
    libc = ctypes.CDLL(None, use_errno=True)
    c = ctypes.c_char(b"x")
    ctypes.set_errno(0)
    rc = libc.ioctl(2, 0x5412, ctypes.byref(c))   # TIOCSTI: push a byte into a terminal's input
    sti = ctypes.get_errno() if rc < 0 else "allowed"
    await sys.log("info", "result", tiocsti=sti, isatty=os.isatty(2))
'''


def test_ioctl_tiocsti_is_refused_but_isatty_works():
    out = run_sandboxed(TIOCSTI)
    assert out.reason == "normal", out.reason
    assert out.result == {"tiocsti": errno.EPERM, "isatty": False}


def test_the_filter_is_built_by_libseccomp_with_an_eperm_default_and_kill_on_other_abis():
    text = seccomp.filter_text()
    assert "action ERRNO(1);" in text.split("# default action")[1]      # default: EPERM
    assert "invalid architecture action\naction KILL_PROCESS" in text
    assert 'syscall "clone3"' in text and "ERRNO(38)" in text          # ENOSYS
    assert "0x7e020000" in text                                         # clone's namespace mask
    assert 'syscall "unshare"' not in text and 'syscall "setns"' not in text
    prog = seccomp.filter_bpf()
    assert len(prog) % 8 == 0 and len(prog) // 8 > 50
