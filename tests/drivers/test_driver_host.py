"""A driver never gets the kernel: only a `DriverHost` (name, clock, priorities, events,
keep-alive, fail), and no strong reference path from any shipped driver reaches a Kernel."""
from __future__ import annotations

import gc
import types
import weakref
from typing import Any

import pytest

from agentos import AllowAll, Driver, DriverHost, DriverResult, Kernel
from agentos.abi.driver import DriverPort
from agentos.abi.types import Cost


class Spy(Driver):
    name = "spy"

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_register(self, host: DriverHost) -> None:
        super().on_register(host)
        self.seen.append(host)

    def read(self, handle: Any, req: Any) -> DriverResult:
        assert self.host is not None
        return DriverResult({"prio": self.host.priority(handle), "now": self.host.now()}, Cost())

    def open(self, owner: int, params: Any) -> int:
        return owner


def kernel_parts(k: Kernel) -> list[Any]:
    """What a driver must not hold: the kernel and its tables."""
    return [k, k.procs, k.caps, k.accounts, k.runq, k.names, k.timers, k.events, k.journal]


def reaches(obj: Any, targets: type | list[Any], depth: int = 6) -> list[str]:
    """Paths of strong references (attributes, containers, closures, bound methods) from
    `obj` to an instance of `targets` (a class) or to one of `targets` (objects). Weak
    references are not followed: they are not holds."""
    cls = targets if isinstance(targets, type) else ()
    ids = set() if isinstance(targets, type) else {id(t) for t in targets}
    found: list[str] = []
    seen: set[int] = set()
    frontier: list[tuple[Any, str]] = [(obj, "driver")]
    for _ in range(depth):
        nxt: list[tuple[Any, str]] = []
        for o, path in frontier:
            if id(o) in seen or isinstance(o, (type, types.ModuleType, weakref.ref, str, bytes, int, float)):
                continue
            seen.add(id(o))
            if isinstance(o, cls) or id(o) in ids:
                found.append(path)
                continue
            kids: list[tuple[Any, str]] = []
            if isinstance(o, dict):
                kids += [(v, f"{path}[{k!r}]") for k, v in o.items()]
            elif isinstance(o, (list, tuple, set, frozenset)):
                kids += [(v, f"{path}[]") for v in o]
            elif isinstance(o, types.MethodType):
                kids.append((o.__self__, f"{path}.__self__"))
            elif isinstance(o, types.FunctionType):
                for cell in o.__closure__ or ():
                    try:
                        kids.append((cell.cell_contents, f"{path}.<closure>"))
                    except ValueError:
                        pass
            else:
                for name in getattr(o, "__dict__", {}) or {}:
                    kids.append((getattr(o, name), f"{path}.{name}"))
                for klass in type(o).__mro__:
                    for name in getattr(klass, "__slots__", ()):
                        if hasattr(o, name):
                            kids.append((getattr(o, name), f"{path}.{name}"))
            nxt += kids
        frontier = nxt
    return found


def test_a_driver_is_handed_a_driver_host_not_the_kernel():
    k = Kernel(policy=AllowAll(), deterministic=True)
    spy = Spy()
    k.register_driver(spy, "eyes")
    (host,) = spy.seen
    assert not isinstance(host, Kernel)
    assert isinstance(host, DriverHost) and isinstance(host, DriverPort)
    assert host.name == "eyes"
    assert reaches(spy, Kernel) == [] and reaches(spy, kernel_parts(k)) == []
    public = {n for n in dir(host) if not n.startswith("_")}
    assert public == {"name", "now", "priority", "alive", "emit", "keep_alive", "fail", "lineage",
                      "live_pids", "record", "shared", "limited", "check_policy", "ontology", "tools_changed"}


def test_the_reference_walk_finds_a_kernel_held_in_any_way():
    k = Kernel()
    for grab in (lambda d: setattr(d, "k", k),
                 lambda d: setattr(d, "lookup", (lambda procs: lambda pid: procs.get(pid))(k.procs)),
                 lambda d: setattr(d, "hooks", {"emit": k.events.emit}),
                 lambda d: setattr(d, "x", [(1, {k.caps})]),
                 lambda d: setattr(d, "cb", k.terminate)):
        d = Spy()
        grab(d)
        assert reaches(d, kernel_parts(k)), grab


@pytest.mark.live_only(reason="the program reads the kernel through a driver's host object, outside the syscall interface")
def test_the_host_knows_a_process_only_while_it_lives():
    k = Kernel(policy=AllowAll(), deterministic=True)
    spy = Spy()
    k.register_driver(spy)
    seen = {}

    async def caller(sys, _):
        assert spy.host is not None
        seen["during"] = (spy.host.priority(2), spy.host.alive(2))

    async def init(sys, _):
        _pid, cap = await sys.spawn(caller, priority=7)
        await sys.waitpid(cap)

    k.run(init)
    host = spy.host
    assert host is not None
    assert seen["during"] == (7, True)
    assert host.priority(2) == -1 and not host.alive(2)  # it has exited
    assert host.priority(12345) == -1 and not host.alive(12345)
    for junk in (None, "2", 2.5, -1):
        assert host.priority(junk) == -1 and not host.alive(junk)  # type: ignore[arg-type]


def test_a_driver_reads_priority_and_clock_through_its_host():
    k = Kernel(policy=AllowAll(), deterministic=True)
    spy = Spy()
    k.register_driver(spy)

    async def caller(sys, _):
        h = await sys.open("spy")
        await sys.sleep(5)
        return await sys.read(h, None)

    async def init(sys, _):
        out = []
        for prio in (2, 9):
            _pid, cap = await sys.spawn(caller, priority=prio, caps=["spy"])
            out.append(cap)
        return [await sys.waitpid(c) for c in out]

    k.run(init, grant=["spy"])
    values = [e.value for e in _journal(k) if e.op == "read"]
    assert values == [{"prio": 9, "now": 5.0}, {"prio": 2, "now": 5.0}]  # higher priority runs first


def _journal(k: Kernel) -> list[Any]:
    assert k.journal is not None
    return list(k.journal.entries)


@pytest.mark.live_only(reason="a driver ends a process from outside on wall time (host.fail): an action no journal holds")
def test_emit_keep_alive_and_fail_act_on_the_kernel():
    """What the sandbox does when its child dies: keep the loop alive while the child
    lives, write an event, end the owner with a fault, and wake whoever waits for it."""
    import asyncio

    k = Kernel(policy=AllowAll())
    spy = Spy()
    k.register_driver(spy)
    host = spy.host
    assert host is not None

    async def victim(sys, _):
        await sys.recv()  # nothing will ever send: only the driver can end this

    async def init(sys, _):
        pid, cap = await sys.spawn(victim)
        return pid, str(await sys.waitpid(cap))

    async def main():
        host.keep_alive(1)  # without it, init waiting on victim waiting on recv is a deadlock
        loop = asyncio.get_running_loop()

        def die():
            host.emit(2, "backing_dead", {"why": "test"})
            assert host.fail(2, "backing resource died") is True
            assert host.fail(2, "again") is False
            host.keep_alive(-1)

        loop.call_later(0.05, die)
        return await k.boot(init)

    res = asyncio.run(main())
    assert res.value == (2, "fault(backing resource died)")
    assert [e.data for e in k.events.events(kind="backing_dead")] == [{"why": "test"}]


@pytest.mark.parametrize("delta", [0, 2, -2, 10**9, "1", 1.0, None, True])
def test_keep_alive_takes_only_plus_or_minus_one(delta):
    k = Kernel()
    spy = Spy()
    k.register_driver(spy)
    assert spy.host is not None
    with pytest.raises(ValueError, match=r"keep_alive takes \+1 or -1"):
        spy.host.keep_alive(delta)


def test_without_keep_alive_the_same_wait_is_a_deadlock():
    k = Kernel(policy=AllowAll(), deterministic=True)

    async def victim(sys, _):
        await sys.recv()

    async def init(sys, _):
        _pid, cap = await sys.spawn(victim)
        await sys.waitpid(cap)

    assert "deadlock" in str(k.run(init).reason)


def test_a_host_outliving_its_kernel_does_nothing():
    k = Kernel(policy=AllowAll(), deterministic=True)
    spy = Spy()
    k.register_driver(spy)
    host = spy.host
    assert host is not None
    ref = weakref.ref(k)
    del k
    gc.collect()
    assert ref() is None  # the driver kept no kernel alive
    assert host.priority(1) == -1 and not host.alive(1)
    host.emit(1, "late", None)
    host.keep_alive(1)
    assert host.fail(1, "late") is False


def test_a_driver_moved_to_another_kernel_sees_that_kernels_processes():
    from agentos.drivers import LLMDriver

    d = LLMDriver(base_url="http://127.0.0.1:9", api_key="x", model="m")
    k1, k2 = Kernel(), Kernel()
    k1.register_driver(d, "a")
    first = d.host
    k2.register_driver(d, "b")
    assert d.host is not first and d.host is not None and d.host.name == "b" and d.name == "b"


def _shipped_drivers(tmp_path: Any) -> list[Driver]:
    from agentos.drivers import KVDriver, LLMDriver, MCPDriver, ToolsDriver, WorkerDriver
    from agentos.drivers.local import LocalDriver
    from agentos.drivers.scripted import ScriptedChat
    from agentos.sandbox import SandboxDriver

    out: list[Driver] = [KVDriver(), LLMDriver(base_url="http://127.0.0.1:9", api_key="x", model="m"),
                         MCPDriver("true", name="mcp"), ToolsDriver([]), WorkerDriver([]),
                         LocalDriver(str(tmp_path / "none.gguf")), ScriptedChat([]), SandboxDriver()]
    try:
        from agentos.drivers.wasm import WasmDriver

        out.append(WasmDriver())
    except ImportError:  # pragma: no cover - wasmtime is in the all extra
        pass
    return out


def test_no_shipped_driver_holds_the_kernel(tmp_path):
    from agentos.vfs import MemoryBackend, install

    drivers = _shipped_drivers(tmp_path)
    k = Kernel(policy=AllowAll())
    for d in drivers:
        k.register_driver(d, f"{type(d).__name__.lower()}")
    install(k, mounts={"/shared": MemoryBackend()})  # the VFS mount driver too
    mount = k.drivers["vfs:/shared"]
    for d in [*drivers, mount]:
        assert isinstance(d.host, DriverPort), type(d).__name__
        path = reaches(d, kernel_parts(k))
        if type(d).__name__ == "MountDriver":
            # a mount serves the kernel's own VFS, which is kernel-side code (ring 0 glue),
            # not a ring-1 driver: it reaches the kernel through the Vfs, never its host
            assert all(p.startswith("driver.vfs") for p in path), path
        else:
            assert path == [], (type(d).__name__, path)
    for d in drivers:
        close = getattr(d, "shutdown", None)
        if close is not None:
            close()
