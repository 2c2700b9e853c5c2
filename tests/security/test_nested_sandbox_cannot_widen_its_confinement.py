"""Sandboxed code reaches the `sandbox` device through its monitor (it holds the device's
capability, because the monitor needs it). Whatever it asks for, a sandbox it opens
inherits its own confinement and can only narrow it: no namespaces off, no seccomp off,
no host view, no higher limit, no extra preload, no host path, and only so many at once."""
import os
import socket
import stat

import pytest

from agentos.sandbox import SandboxLimits

from sbx import ROOT, run_sandboxed

OPENER = r'''
async def main(sys, args):
    out = {}
    for name, params in args:
        try:
            h = await sys.open("sandbox", {"code": "async def main(sys, args):\n    return 1\n", **params})
            out[name] = "opened"
            await sys.close(h)
        except Exception as e:
            out[name] = type(e).__name__ + ": " + str(e)
    await sys.log("info", "result", **out)
'''

WIDENINGS = [
    ("namespaces_off", {"namespaces": False}, "namespaces off"),
    ("seccomp_off", {"seccomp": False}, "seccomp off"),
    ("pid_namespace_off", {"pid_namespace": False}, "pid_namespace off"),
    ("host_view", {"fs_view": "host"}, "fs_view='host'"),
    ("host_workdir", {"workdir": "/etc"}, "cannot choose a host directory"),
    ("relative_workdir", {"workdir": "."}, "cannot choose a host directory"),
    ("more_cpu", {"limits": {"cpu_s": 1000}}, "cannot raise limit cpu_s"),
    ("no_memory_limit", {"limits": {"as_bytes": None}}, "cannot raise limit as_bytes"),
    ("more_nested", {"limits": {"nested": 50}}, "cannot raise limit nested"),
    ("preload_antigravity", {"preload": ["antigravity"]}, "cannot preload"),
    ("not_a_bool", {"namespaces": 0}, "must be true or false"),
    ("unknown_key", {"uid": 0}, "unknown open params"),
    ("limits_garbage", {"limits": {"cpu_s": "lots"}}, "bad limits"),
]


def test_every_widening_of_a_nested_sandbox_is_refused():
    out = run_sandboxed(OPENER, args=[[n, p] for n, p, _ in WIDENINGS])
    assert out.reason == "normal", out.reason
    for name, _params, why in WIDENINGS:
        got = out.result[name]
        assert got.startswith("DriverError") and why in got, (name, got)


def test_a_host_directory_named_by_sandboxed_code_keeps_its_owner_and_mode(tmp_path):
    target = tmp_path / "victim"
    target.mkdir(mode=0o755)
    before = os.stat(target)
    out = run_sandboxed(OPENER, args=[["victim", {"workdir": str(target)}]])
    assert "cannot choose a host directory" in out.result["victim"], out.result
    after = os.stat(target)
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == \
        (before.st_uid, before.st_gid, stat.S_IMODE(before.st_mode))


NESTER = r'''
async def main(sys, args):
    h = await sys.open("sandbox", {"code": args["inner"], "args": args["port"]})
    hello = await sys.read(h, "next")
    done = await sys.read(h, "next")
    await sys.close(h)
    await sys.log("info", "result", hello=hello, value=done.get("value"), t=done.get("t"))
'''

INNER = r'''
import ctypes, os, resource, socket
async def main(sys, port):
    out = {}
    s = socket.socket(socket.AF_UNIX)
    s.close()
    try:
        socket.socket(socket.AF_INET).connect(("127.0.0.1", port))
        out["connect"] = "connected"
    except OSError as e:
        out["connect"] = e.errno
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.syscall(ctypes.c_long(56), ctypes.c_long(0x10000000 | 17), 0, 0, 0, 0)
    if rc == 0:
        os._exit(0)
    out["clone_newuser"] = "ok" if rc > 0 else ctypes.get_errno()
    out["cpu"] = resource.getrlimit(resource.RLIMIT_CPU)[0]
    out["nproc"] = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    out["uid"] = os.getuid()
    return out
'''


def test_a_nested_sandbox_inherits_the_cage_and_cannot_reach_host_loopback():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.1)
    try:
        out = run_sandboxed(NESTER, args={"inner": INNER, "port": srv.getsockname()[1]},
                            limits=SandboxLimits(cpu_s=3, nproc=3))
        with pytest.raises(OSError):
            srv.accept()
    finally:
        srv.close()
    assert out.reason == "normal", out.reason
    hello, value = out.result["hello"], out.result["value"]
    assert hello["net"] == "private" and hello["seccomp"] == "on", hello
    assert hello["fs"].startswith("minimal root"), hello
    assert value["connect"] != "connected", value
    assert value["clone_newuser"] == 1, value             # EPERM: the nested child is filtered too
    assert value["cpu"] == 3 and value["nproc"] == 3, value  # the outer sandbox's limits, inherited
    if ROOT:
        assert value["uid"] != out.uid and value["uid"] >= 1_600_000, (value, out.uid)


def test_nested_sandboxes_are_bounded_in_number():
    code = r'''
async def main(sys, args):
    got = []
    for i in range(4):
        try:
            got.append(await sys.open("sandbox", {"code": "async def main(sys, a):\n    import time\n    time.sleep(5)\n"}))
        except Exception as e:
            got.append(type(e).__name__ + ": " + str(e))
    await sys.log("info", "result", got=got)
'''
    out = run_sandboxed(code, limits=SandboxLimits(nested=2))
    got = out.result["got"]
    assert isinstance(got[0], int) and isinstance(got[1], int), got
    assert all("at most 2 nested sandbox" in g for g in got[2:]), got


def test_no_nested_sandboxes_when_the_limit_is_zero():
    out = run_sandboxed(OPENER, args=[["plain", {}]], limits=SandboxLimits(nested=0))
    assert "at most 0 nested sandbox" in out.result["plain"], out.result


def test_a_narrower_nested_sandbox_is_allowed():
    out = run_sandboxed(OPENER, args=[["narrower", {"limits": {"cpu_s": 1, "nproc": 2}}], ["same", {}]],
                        limits=SandboxLimits(cpu_s=3))
    assert out.result == {"narrower": "opened", "same": "opened"}, out.result


def test_a_second_sandbox_device_is_no_way_around_the_cage():
    """The monitor holds two sandbox devices; the code asks the other one. Both share the
    kernel's confinement registry, so the open is nested all the same."""
    from agentos.sandbox import install

    code = r'''
async def main(sys, args):
    try:
        await sys.open("sandbox2", {"code": "async def main(s, a): pass", "namespaces": False})
        await sys.log("info", "result", got="opened")
    except Exception as e:
        await sys.log("info", "result", got=type(e).__name__ + ": " + str(e))
'''
    out = run_sandboxed(code, setup=lambda k: install(k, "sandbox2"), grant=("sandbox2",))
    assert "namespaces off" in out.result["got"], out.result
