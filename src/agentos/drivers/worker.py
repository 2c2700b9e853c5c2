"""The `worker` driver: CPU-bound work in a pool of OS processes.

A process that must crunch (parse, score, simulate) cannot do it on the kernel's thread:
it would stall every other process. A read sends a registered function and its arguments
to a pool worker (another OS process: its own heap and core) and parks the caller until
the result comes back; the kernel keeps scheduling everyone else meanwhile.

Requests: `{"fn": name, "args": [...], "kwargs": {...}}`. Only functions registered with
the driver can run (a process cannot name `os:system`); each must be importable by name
(module level) so a worker can unpickle it. Action: `<device>.<fn>`. Cost: one tool call
per job (configurable per driver).

Cancellation is real: when the calling process dies (or a job passes its timeout) the
worker running its job is SIGKILLed and reaped, and a fresh one replaces it on demand; a
`concurrent.futures` pool cannot do that (a running job there cannot be stopped). A
worker that crashes (segfault, `os._exit`, OOM kill) fails only its own job.

Invariants: at most `max_workers` jobs run at once (a `PriorityGate`, so waiting jobs go
by process priority, then FIFO); a worker runs one job at a time; a worker is returned to
the idle list only after it answered. Workers are started with `forkserver` (`spawn`
where that is missing), never `fork`: the kernel process has threads.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import signal
import time
import weakref
from typing import Any, Callable, Iterable, Mapping

from ..abi.driver import Driver, DriverHost, DriverResult
from ..abi.errors import DriverError, DriverTimeout, ToolError
from ..abi.types import Cost
from .llm_sched import PriorityGate, caller_priority
from .tools import ServedTool, check_class, check_effect


def _worker_main(conn: Any) -> None:
    """A pool worker: run jobs until the pipe closes. Errors go back as data."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C is the kernel's to handle
    conn.send(("ready", os.getpid()))
    while True:
        try:
            fn, args, kwargs = conn.recv()
        except (EOFError, OSError):
            return
        t0 = time.process_time()
        try:
            out: tuple[Any, ...] = ("ok", fn(*args, **kwargs))
        except BaseException as e:  # the job's failure, reported to its caller
            out = ("err", type(e).__name__, str(e))
        cpu = time.process_time() - t0
        try:
            conn.send(out + (cpu,))
        except Exception as e:
            conn.send(("err", type(e).__name__, f"the result cannot be sent back: {e}", cpu))


class _Worker:
    __slots__ = ("proc", "conn", "jobs", "ready")

    def __init__(self, proc: Any, conn: Any) -> None:
        self.proc = proc
        self.conn = conn
        self.jobs = 0
        self.ready = False

    @property
    def pid(self) -> int:
        return self.proc.pid


class WorkerDriver(Driver):
    name = "worker"

    def __init__(self, functions: Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any]] = (), *,
                 max_workers: int = 2, timeout: float | None = None, start_method: str | None = None,
                 cost: Cost | None = None, priority_of: Callable[[int], int] | None = None,
                 name: str = "worker", classes: Mapping[str, str] | None = None,
                 effects: Mapping[str, Any] | None = None) -> None:
        """`classes` types functions by ontology class and `effects` gives each one's effect
        (`read_only`, `read_write` or a classifier of its job): a registered function is a
        tool like any other, and policy rules on a class or `mode: read_only` govern it."""
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be a positive int, got {max_workers!r}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive seconds or None, got {timeout!r}")
        self.name = name
        self.functions: dict[str, Callable[..., Any]] = {}
        self.classes: dict[str, str] = dict(classes or {})
        self.effects: dict[str, Any] = dict(effects or {})
        items = functions.items() if isinstance(functions, Mapping) else ((f.__name__, f) for f in functions)
        for fname, fn in items:
            self.register(fname, fn)
        for label, table in (("classes", self.classes), ("effects", self.effects)):
            stray = sorted(set(table) - set(self.functions))
            if stray:
                raise ValueError(f"{self.name}: {label} names functions that are not registered: {stray}")
        for fname, cls in self.classes.items():
            check_class(self.name, fname, cls)
        for fname, eff in self.effects.items():
            check_effect(self.name, fname, eff)
        self.max_workers = max_workers
        self.timeout = timeout
        if start_method is None:
            start_method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        self._ctx = multiprocessing.get_context(start_method)
        self.cost = cost or Cost(tool_calls=1)
        self.priority_of = priority_of
        self.gate = PriorityGate(max_workers)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self.killed: list[int] = []      # pids of workers killed (cancel, timeout); newest last
        self.crashed = 0
        self.cpu_s = 0.0
        weakref.finalize(self, _kill_all, self._idle, self._busy)

    def register(self, fname: str, fn: Callable[..., Any]) -> None:
        """Allow `fn` to run in workers under `fname`. It must pickle by reference."""
        if not callable(fn):
            raise ValueError(f"{self.name}: {fname!r} is not callable")
        try:
            pickle.dumps(fn)
        except Exception as e:
            raise ValueError(f"{self.name}: {fname!r} cannot be sent to a worker process (define it at "
                             f"module level so it pickles by name): {e}") from None
        if fname in self.functions:
            raise ValueError(f"{self.name}: {fname!r} is registered twice")
        self.functions[fname] = fn

    # -- the tools it serves (for policy) -------------------------------------------------
    serves_tools = True

    def tool_names(self) -> list[str]:
        return list(self.functions)

    def tool_info(self, fname: str) -> ServedTool | None:
        if fname not in self.functions:
            return None
        return ServedTool(fname, self.classes.get(fname), self.effects.get(fname, "read_write"))

    def tool_classes(self) -> dict[str, str]:
        return dict(self.classes)

    # -- ABI ----------------------------------------------------------------------------
    def on_register(self, host: DriverHost) -> None:
        super().on_register(host)
        self.name = host.name

    def open(self, owner: int, params: Any) -> int:
        if params not in (None, {}):
            raise DriverError(f"{self.name}: open takes no params, got {params!r}")
        return owner

    def _parse(self, req: Any) -> tuple[str, Callable[..., Any], list[Any], dict[str, Any]]:
        if not isinstance(req, dict):
            raise ToolError(f"{self.name}: a job is {{'fn': name, 'args': [...], 'kwargs': {{...}}}}, "
                            f"got {type(req).__name__}")
        extra = sorted(k for k in req if k not in ("fn", "args", "kwargs"))
        if extra:
            raise ToolError(f"{self.name}: unknown job key(s) {extra} (fn, args, kwargs)")
        fname = req.get("fn")
        fn = self.functions.get(fname) if isinstance(fname, str) else None
        if fn is None:
            known = ", ".join(sorted(self.functions)) or "none"
            raise ToolError(f"{self.name}: unknown function {fname!r} (registered: {known})")
        args, kwargs = req.get("args", []), req.get("kwargs", {})
        if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
            raise ToolError(f"{self.name}: 'args' must be a list and 'kwargs' a dict")
        return fname, fn, list(args), kwargs  # type: ignore[return-value]

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
        """`<device>.<fn>`; a malformed job is still named (so policy sees it) and then
        refused by `read` with a `ToolError` that says what is wrong."""
        if not isinstance(req, dict):
            return (f"{self.name}.invalid", {})
        fname = req.get("fn")
        return (f"{self.name}.{fname if isinstance(fname, str) else 'invalid'}",
                {"args": req.get("args", []), "kwargs": req.get("kwargs", {})})

    def bound(self, op: str, handle: Any, req: Any) -> Cost:
        """One job costs this pool's declared cost (one tool call by default)."""
        return self.cost

    def read(self, handle: int, req: Any) -> Any:
        fname, fn, args, kwargs = self._parse(req)
        return self._run(handle, fname, fn, args, kwargs)

    # -- the pool -----------------------------------------------------------------------
    def start(self, n: int | None = None) -> None:
        """Start `n` (default: all) workers now rather than on first use, and wait until
        they are ready."""
        fresh = []
        while len(self._idle) + len(self._busy) < min(n or self.max_workers, self.max_workers):
            w = self._spawn()
            self._idle.append(w)
            fresh.append(w)
        for w in fresh:
            if w.conn.poll(60) and w.conn.recv()[0] == "ready":
                w.ready = True

    def worker_pids(self) -> list[int]:
        return sorted(w.pid for w in (*self._idle, *self._busy))

    def shutdown(self) -> None:
        """Stop every worker (idle ones politely, busy ones with SIGKILL)."""
        _kill_all(self._idle, self._busy)

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(  # type: ignore[attr-defined]
            target=_worker_main, args=(child,), name=f"agentos-{self.name}", daemon=True)
        proc.start()
        child.close()
        return _Worker(proc, parent)

    async def _run(self, owner: int, fname: str, fn: Callable[..., Any], args: list[Any],
                   kwargs: dict[str, Any]) -> DriverResult:
        lookup = self.priority_of or (self.host.priority if self.host is not None else None)
        async with self.gate.slot(caller_priority(lookup, owner)):
            w = self._idle.pop() if self._idle else self._spawn()
            self._busy.add(w)
            try:
                msg = await self._job(w, fname, fn, args, kwargs)
            except ToolError:            # nothing reached the worker: it stays usable
                self._busy.discard(w)
                self._idle.append(w)
                raise
            except BaseException:
                self._busy.discard(w)
                self._kill(w)            # cancelled (caller died), timed out or broken: stop it
                raise
            self._busy.discard(w)
            if w.proc.is_alive():
                self._idle.append(w)
        status, *rest = msg
        self.cpu_s += rest[-1]
        if status == "ok":
            return DriverResult(rest[0], self.cost)
        raise ToolError(f"{self.name}.{fname} failed: {rest[0]}: {rest[1]}")

    async def _job(self, w: _Worker, fname: str, fn: Callable[..., Any], args: list[Any],
                   kwargs: dict[str, Any]) -> tuple[Any, ...]:
        if not w.ready:  # a fresh worker: its start-up does not count against the job's timeout
            hello = await self._recv(w, fname, None, "starting up")
            if hello[0] != "ready":
                raise DriverError(f"{self.name}: a worker spoke before it was ready: {hello!r:.80}")
            w.ready = True
        try:
            w.conn.send((fn, args, kwargs))
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            raise ToolError(f"{self.name}.{fname}: arguments cannot be sent to a worker: {e}") from None
        w.jobs += 1
        return await self._recv(w, fname, self.timeout, "running the job")

    async def _recv(self, w: _Worker, fname: str, timeout: float | None, doing: str) -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = w.conn.fileno()
        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            if timeout is None:
                await ready
            else:
                try:
                    await asyncio.wait_for(ready, timeout)
                except asyncio.TimeoutError:
                    raise DriverTimeout(f"{self.name}.{fname}: still running after {timeout:g}s; "
                                        f"its worker was killed") from None
        finally:
            loop.remove_reader(fd)
        try:
            return w.conn.recv()
        except (EOFError, OSError):
            w.proc.join(1)
            self.crashed += 1
            raise DriverError(f"{self.name}.{fname}: the worker process died "
                              f"({_exit_text(w.proc.exitcode)}) while {doing}") from None

    def _kill(self, w: _Worker) -> None:
        if w.proc.is_alive():
            w.proc.kill()
            self.killed.append(w.pid)
        w.proc.join(2)
        w.conn.close()


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _kill_all(idle: list[_Worker], busy: set[_Worker]) -> None:
    for w in list(idle):
        try:
            w.conn.close()            # an idle worker exits on EOF
        except OSError:
            pass
    for w in list(busy):
        if w.proc.is_alive():
            w.proc.kill()
    for w in (*idle, *busy):
        w.proc.join(2)
        if w.proc.is_alive():
            w.proc.kill()
            w.proc.join(1)
    idle.clear()
    busy.clear()


__all__ = ["WorkerDriver"]
