"""Every path to a new namespace is closed by the seccomp allow-list: unshare, clone with
any namespace flag (EPERM), clone3 (ENOSYS, so the C library falls back to clone), setns,
and the other ABIs (i386 `int 0x80`, x32), which kill the process. Threads and fork keep
working. The controls run the same code with seccomp off and watch it succeed, so each
assertion is about the filter, not about something else in the way."""
import errno
import os

import pytest

from sbx import ROOT, run_sandboxed

NS_FLAGS = {"newns": 0x00020000, "newcgroup": 0x02000000, "newuts": 0x04000000, "newipc": 0x08000000,
            "newuser": 0x10000000, "newpid": 0x20000000, "newnet": 0x40000000}

PROBE = r'''
import ctypes, os
SIGCHLD = 17
async def main(sys, args):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    out = {}
    def sc(name, nr, *a):
        ctypes.set_errno(0)
        rc = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(x) for x in a])
        if rc == 0 and name.startswith("clone_"):
            os._exit(0)          # the new child (in its new namespace): leave at once
        if rc > 0 and name.startswith("clone_"):
            os.waitpid(rc, 0)
        out[name] = "ok" if rc >= 0 else ctypes.get_errno()
    for flag_name, flag in args["flags"].items():
        sc("clone_" + flag_name, 56, flag | SIGCHLD, 0, 0, 0, 0)   # clone(flags, stack=0, ...)
        sc("unshare_" + flag_name, 272, flag)
    sc("clone3", 435, 0, 0)
    sc("setns", 308, 0, 0)
    await sys.log("info", "result", **out)
'''


def test_clone_with_any_namespace_flag_fails_with_eperm():
    out = run_sandboxed(PROBE, args={"flags": NS_FLAGS})
    assert out.reason == "normal", out.reason
    for name in NS_FLAGS:
        assert out.result["clone_" + name] == errno.EPERM, (name, out.result)


def test_unshare_of_every_namespace_fails_with_eperm():
    out = run_sandboxed(PROBE, args={"flags": NS_FLAGS})
    for name in NS_FLAGS:
        assert out.result["unshare_" + name] == errno.EPERM, (name, out.result)


def test_clone3_fails_with_enosys_and_setns_with_eperm():
    out = run_sandboxed(PROBE, args={"flags": {}})
    assert out.result["clone3"] == errno.ENOSYS, out.result
    assert out.result["setns"] == errno.EPERM, out.result


@pytest.mark.skipif(not ROOT, reason="the control needs the sandbox's own uid (root kernel)")
def test_control_without_the_filter_clone_newuser_succeeds():
    """The attack the filter stops is real: with seccomp off, the same sandboxed code gets a
    user namespace (full capabilities inside it) through clone, and through clone3."""
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            if int(f.read()) == 0:
                pytest.skip("user namespaces are disabled on this host")
    except OSError:
        pytest.skip("cannot read user.max_user_namespaces")
    out = run_sandboxed(PROBE, args={"flags": {"newuser": NS_FLAGS["newuser"]}}, seccomp=False,
                        require_isolation=False)
    assert out.reason == "normal", out.reason
    assert out.result["clone_newuser"] == "ok", out.result
    assert out.result["clone3"] != errno.ENOSYS, out.result  # the kernel has clone3: only the filter refuses it


THREADS_AND_FORK = r'''
import os, threading
async def main(sys, args):
    seen = []
    t = threading.Thread(target=lambda: seen.append("thread"))
    t.start()
    t.join()
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    _, status = os.waitpid(pid, 0)
    await sys.log("info", "result", thread=seen, child=os.waitstatus_to_exitcode(status))
'''


def test_threads_and_fork_still_work_through_the_clone_fallback():
    out = run_sandboxed(THREADS_AND_FORK, preload=["threading"])
    assert out.reason == "normal", out.reason
    assert out.result == {"thread": ["thread"], "child": 7}


I386 = r'''
import ctypes
async def main(sys, args):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    page = libc.mmap(None, 4096, 7, 0x22, -1, 0)          # rwx, private, anonymous
    # mov eax, 310 (i386 unshare); mov ebx, CLONE_NEWUSER; int 0x80; ret
    code = bytes([0xb8, 0x36, 0x01, 0, 0, 0xbb, 0, 0, 0, 0x10, 0xcd, 0x80, 0xc3])
    ctypes.memmove(page, code, len(code))
    await sys.log("info", "result", step="calling")
    rc = ctypes.CFUNCTYPE(ctypes.c_int)(page)()
    await sys.log("info", "result", rc=rc)
'''


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="i386 compat syscalls are an x86_64 matter")
def test_i386_abi_syscall_kills_the_sandboxed_process():
    out = run_sandboxed(I386)
    assert "SIGSYS" in out.reason, out.reason
    assert out.result == {"step": "calling"}
    assert out.sibling == "normal"


@pytest.mark.skipif(os.uname().machine != "x86_64" or not ROOT,
                    reason="i386 compat syscalls are an x86_64 matter; the control needs its own uid")
def test_control_without_the_filter_i386_unshare_succeeds():
    out = run_sandboxed(I386, seccomp=False, require_isolation=False)
    if out.reason != "normal":
        pytest.skip(f"this kernel has no i386 compat layer: {out.reason}")
    assert out.result == {"rc": 0}


X32 = r'''
import ctypes
async def main(sys, args):
    libc = ctypes.CDLL(None, use_errno=True)
    await sys.log("info", "result", step="calling")
    rc = libc.syscall(ctypes.c_long(0x40000000 | 272), ctypes.c_long(0x10000000))  # x32 unshare
    await sys.log("info", "result", rc=rc)
'''


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x32 is an x86_64 ABI")
def test_x32_abi_syscall_kills_the_sandboxed_process():
    out = run_sandboxed(X32)
    assert "SIGSYS" in out.reason, out.reason
    assert out.result == {"step": "calling"}
