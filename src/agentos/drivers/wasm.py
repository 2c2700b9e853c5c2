"""The `wasm` driver: run untrusted WebAssembly under wasmtime with hard limits.

What a module gets is decided by the *device* (and so by the capability that grants it),
never by the module or the process's open params:
- imports: none, unless this device was built with host functions (or WASI); a module that
  imports anything else is refused at open, naming the import;
- linear memory: at most `memory_pages` 64 KiB pages (default 16 = 1 MiB) and one memory;
  a declared minimum over the cap is refused at open, `memory.grow` past it returns -1;
- CPU: fuel. Each call gets `fuel` units; running out traps, and the fuel burnt is charged
  to the caller either way; a call ended by its wall-time deadline (or by its caller going
  away) is charged its whole reservation, the `fuel` it was given, since wasmtime reports
  no fuel used after an epoch trap: so a usd price on fuel bounds WASM compute;
- wall time: an epoch deadline per call (`timeout_ms`); a killed caller interrupts it too;
- start-up: `open` only checks and compiles the module (cached); instantiation, which runs
  the module's start function, happens on the worker thread at the first call, under the
  same fuel and deadline, and is charged to that call (a trap there is that call's error,
  and every later call on the handle says the module failed to start);
- output: an export returning `(ptr, len)` (two i32) yields the bytes at `ptr`; more than
  `output_limit` (default 4096) bytes, or a range outside memory, is an error;
- WASI (optional, device-level): one preopened host directory, read-only unless
  `wasi_writable=True`; no env, no args, no inherited stdio.

A call is the action `<device>.<export>`: exports are tools to policy, typed by the
device's `classes` (export name -> ontology class, `"*"` for every other export).

Invariants: one call at a time per handle (each handle owns a Store on its own Engine, so
cancelling one call never disturbs another); module code (start functions included) runs
on a worker thread, never on the kernel loop's thread (an `inline` device excepted, whose
deadline is at most INLINE_MAX_MS); compiled code is cached per module hash (serialized once, loaded per
engine, which is ~20x cheaper than compiling).
"""
from __future__ import annotations

import asyncio
import hashlib
import math
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..abi.driver import Driver, DriverResult
from ..abi.errors import DriverError
from ..abi.types import Cost, Pid
from .tools import ServedTool, check_class

PAGE = 65536
DEFAULT_PAGES = 16
DEFAULT_FUEL = 10_000_000
DEFAULT_TIMEOUT_MS = 1000.0
DEFAULT_OUTPUT = 4096
FUEL_PER_REDUCTION = 10_000
"""Fuel → reductions: one reduction per 10,000 units of fuel (rounded up), so a call that
burns a quantum's worth of fuel costs about what a busy kernel process does per quantum."""


INLINE_MAX_MS = 10.0
MAX_MODULE_BYTES = 8 << 20
"""Largest module `open` compiles. Compiling runs on the kernel thread (about 30 ms per MB
here), so this bounds how long one open can hold every other process up."""
CACHE_MODULES = 256
"""Compiled modules kept (oldest dropped first): processes choose the modules they open."""
_EXPORT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,127}$")


class WasmTrap(DriverError):
    """The module trapped (out of fuel, deadline, bad memory access, unreachable...).

    `cost` carries the fuel burnt before the trap, so the kernel charges it anyway."""

    def __init__(self, message: str, cost: Cost | None = None, code: str = "trap") -> None:
        super().__init__(message)
        self.cost = cost or Cost()
        self.code = code


@dataclass(frozen=True)
class HostFunction:
    """A host function a device grants to modules: `module.name : params -> results`."""

    module: str
    name: str
    params: Sequence[str]
    results: Sequence[str]
    fn: Callable[..., Any]


@dataclass
class _Handle:
    engine: Any
    store: Any
    instance: Any          # None until the first call instantiates the module
    memory: Any
    pages: int
    fuel: int
    timeout_ms: float
    output_limit: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False
    calls: int = 0
    funcs: dict[str, Any] = field(default_factory=dict)  # export name → caller (see _fast_call)
    start: Any = None      # (linker, module) until instantiated
    failed: str | None = None   # why the module could not start


_VALTYPES = ("i32", "i64", "f32", "f64")


def _wt() -> Any:
    import wasmtime  # lazy: `import agentos` must not pull wasmtime

    return wasmtime


class WasmDriver(Driver):
    """A device that runs WebAssembly modules. Register one per trust level."""

    name = "wasm"

    def __init__(self, name: str = "wasm", *, memory_pages: int = DEFAULT_PAGES,
                 fuel: int = DEFAULT_FUEL, timeout_ms: float = DEFAULT_TIMEOUT_MS,
                 output_limit: int = DEFAULT_OUTPUT, host_functions: Sequence[HostFunction] = (),
                 wasi_dir: str | None = None, wasi_writable: bool = False,
                 fuel_per_reduction: int = FUEL_PER_REDUCTION, usd_per_gfuel: float = 0.0,
                 max_workers: int = 4, inline: bool = False,
                 classes: Mapping[str, str] | None = None) -> None:
        """`inline=True` runs calls on the kernel's own thread (no thread hop, ~10x the call
        rate) and so needs `timeout_ms <= INLINE_MAX_MS`: the epoch deadline is then the
        longest the kernel can be held up. For small pure functions; killing a caller
        mid-call is moot there, the call is over before the kernel runs anything else."""
        for label, v in (("memory_pages", memory_pages), ("fuel", fuel), ("output_limit", output_limit),
                         ("fuel_per_reduction", fuel_per_reduction)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"wasm: {label} must be a positive int, got {v!r}")
        if not timeout_ms > 0:
            raise ValueError(f"wasm: timeout_ms must be positive, got {timeout_ms!r}")
        if inline and timeout_ms > INLINE_MAX_MS:
            raise ValueError(f"wasm: an inline device holds the kernel thread for up to timeout_ms; "
                             f"it must be <= {INLINE_MAX_MS} ms, got {timeout_ms}")
        self.inline = inline
        # export name -> ontology class ("*": every export not named): the module comes
        # from the process, so only the device can say what its exports are
        self.classes: dict[str, str] = dict(classes or {})
        for export, cls in self.classes.items():
            check_class(f"wasm {name}", export, cls)
        if wasi_dir is not None and not os.path.isdir(wasi_dir):
            raise ValueError(f"wasm: wasi_dir {wasi_dir!r} is not a directory")
        for hf in host_functions:
            bad = [t for t in (*hf.params, *hf.results) if t not in _VALTYPES]
            if bad:
                raise ValueError(f"wasm: host function {hf.module}.{hf.name} has unknown types {bad}")
        self.name = name
        self.memory_pages = memory_pages
        self.fuel = fuel
        self.timeout_ms = float(timeout_ms)
        self.output_limit = output_limit
        self.host_functions = {(h.module, h.name): h for h in host_functions}
        self.wasi_dir = wasi_dir
        self.wasi_writable = wasi_writable
        self.fuel_per_reduction = fuel_per_reduction
        self.usd_per_gfuel = usd_per_gfuel
        self._cache: dict[str, bytes] = {}
        self._cache_lock = threading.Lock()
        self.compiles = 0
        self.cache_hits = 0
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"{name}-run")

    # -- engine and module cache -----------------------------------------------------
    def _engine(self) -> Any:
        wt = _wt()
        cfg = wt.Config()
        cfg.consume_fuel = True
        cfg.epoch_interruption = True
        return wt.Engine(cfg)

    def _module(self, engine: Any, source: Any) -> Any:
        wt = _wt()
        if isinstance(source, str):
            if len(source) > 4 * MAX_MODULE_BYTES:  # text is larger than the binary it makes
                raise DriverError(f"{self.name}: WAT text of {len(source)} characters; the limit is "
                                  f"{4 * MAX_MODULE_BYTES}")
            try:
                binary = bytes(wt.wat2wasm(source))
            except Exception as e:
                raise DriverError(f"{self.name}: the module's WAT text does not parse: {e}") from None
        elif isinstance(source, (bytes, bytearray, memoryview)):
            binary = bytes(source)
        else:
            raise DriverError(f"{self.name}: open params need 'wat' (str) or 'wasm' (bytes), "
                              f"got {type(source).__name__}")
        if len(binary) > MAX_MODULE_BYTES:
            raise DriverError(f"{self.name}: a module of {len(binary)} bytes; the limit is {MAX_MODULE_BYTES} "
                              f"(it is compiled on the kernel thread)")
        key = hashlib.sha256(binary).hexdigest()
        with self._cache_lock:
            blob = self._cache.get(key)
        if blob is not None:
            self.cache_hits += 1
            return wt.Module.deserialize(engine, blob)
        try:
            module = wt.Module(engine, binary)
        except Exception as e:
            raise DriverError(f"{self.name}: invalid module: {e}") from None
        self.compiles += 1
        with self._cache_lock:
            self._cache[key] = module.serialize()
            while len(self._cache) > CACHE_MODULES:  # modules come from processes: keep it bounded
                del self._cache[next(iter(self._cache))]
        return module

    # -- open ---------------------------------------------------------------------------
    def open(self, owner: Pid, params: Any) -> _Handle:
        """params: {"wat": str} or {"wasm": bytes}; may narrow (never widen) fuel,
        timeout_ms, memory_pages and output_limit."""
        wt = _wt()
        if not isinstance(params, dict):
            raise DriverError(f"{self.name}: open params are a dict with 'wat' or 'wasm', got "
                              f"{type(params).__name__}")
        unknown = set(params) - {"wat", "wasm", "fuel", "timeout_ms", "memory_pages", "output_limit"}
        if unknown:
            raise DriverError(f"{self.name}: unknown open params {sorted(map(str, unknown))[:8]}")
        pages = self._narrow(params, "memory_pages", self.memory_pages)
        fuel = self._narrow(params, "fuel", self.fuel)
        timeout = float(self._narrow(params, "timeout_ms", self.timeout_ms))
        out_limit = self._narrow(params, "output_limit", self.output_limit)
        engine = self._engine()
        module = self._module(engine, params.get("wat", params.get("wasm")))
        self._check_static(module, pages)
        store = wt.Store(engine)
        store.set_limits(memory_size=pages * PAGE, memories=1, tables=4, table_elements=10_000,
                         instances=1)
        store.set_fuel(fuel)
        store.set_epoch_deadline(1)  # instantiation (start function) runs under the same limits
        linker = wt.Linker(engine)
        wanted = {(imp.module, imp.name) for imp in module.imports}
        wasi_wanted = {w for w in wanted if w[0].startswith("wasi_")}
        if wasi_wanted:
            self._setup_wasi(linker, store)
        for key in wanted - wasi_wanted:
            hf = self.host_functions[key]
            ft = wt.FuncType([_valtype(t) for t in hf.params], [_valtype(t) for t in hf.results])
            linker.define_func(hf.module, hf.name, ft, hf.fn)
        return _Handle(engine, store, None, None, pages, fuel, timeout, out_limit, start=(linker, module))

    def _instantiate(self, h: _Handle) -> Cost:
        """Run the module's start (under h.lock, on the calling thread: a worker, or the
        kernel's for an inline device), with the handle's fuel and deadline. Returns its cost."""
        wt = _wt()
        linker, module = h.start
        h.start = None
        store = h.store
        store.set_fuel(h.fuel)
        token = _WATCHDOG.arm(h.timeout_ms / 1000.0, h.engine)
        try:
            instance = linker.instantiate(store, module)
        except Exception as e:
            err = self._trap_error(e, store, h.fuel, "instantiate (the start function)")
            h.failed = str(err)
            raise err from None
        finally:
            _WATCHDOG.disarm(token)
        used = h.fuel - store.get_fuel()
        h.instance = instance
        for _name, ext in instance.exports(store).items():
            if isinstance(ext, wt.Memory):
                h.memory = ext
                break
        return self._cost(used)

    def max_cost(self, handle: _Handle | None = None) -> Cost:
        """The most one call can cost: its whole fuel (twice for a first call, which also
        runs the start function). What a reservation should hold before the call runs."""
        fuel = handle.fuel if handle is not None else self.fuel
        first = handle is None or handle.instance is None
        return self._cost(fuel * (2 if first else 1))

    @staticmethod
    def _narrow(params: dict[str, Any], key: str, cap: Any) -> Any:
        v = params.get(key, cap)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            raise DriverError(f"wasm: {key} must be a positive number, got {str(v)[:40]}")
        if v > cap:
            raise DriverError(f"wasm: {key}={v} is over this device's limit of {cap}")
        return type(cap)(v)

    def _check_static(self, module: Any, pages: int) -> None:
        wt = _wt()
        for imp in module.imports:
            key = (imp.module, imp.name)
            if imp.module.startswith("wasi_"):
                if self.wasi_dir is None:
                    raise DriverError(f"{self.name}: module imports {imp.module}.{imp.name}, but this "
                                      f"device grants no WASI (no preopened directory)")
                continue
            if key not in self.host_functions:
                granted = ", ".join(f"{m}.{n}" for m, n in self.host_functions) or "none"
                raise DriverError(f"{self.name}: module imports {imp.module}.{imp.name}, which this "
                                  f"device does not grant (granted host functions: {granted})")
            if not isinstance(imp.type, wt.FuncType):
                raise DriverError(f"{self.name}: import {imp.module}.{imp.name} is not a function")
        memories = [e for e in module.exports if isinstance(e.type, wt.MemoryType)]
        memories += [i for i in module.imports if isinstance(i.type, wt.MemoryType)]
        for m in memories:
            lim = m.type.limits
            if lim.min > pages:
                raise DriverError(f"{self.name}: module declares a memory of at least {lim.min} pages; "
                                  f"the cap is {pages} pages ({pages * PAGE} bytes)")

    def _setup_wasi(self, linker: Any, store: Any) -> None:
        wt = _wt()
        cfg = wt.WasiConfig()
        assert self.wasi_dir is not None
        cfg.preopen_dir(self.wasi_dir, "/", fs_mutable=self.wasi_writable)
        store.set_wasi(cfg)
        linker.define_wasi()

    # -- calls --------------------------------------------------------------------------
    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
        """`<device>.<export>`: each export is a tool policy can name and type by class; a
        request without a plain export name is `<device>.invalid` (and refused by read)."""
        func = req.get("call") if isinstance(req, dict) else None
        if not isinstance(func, str) or not _EXPORT_NAME.match(func):
            return (f"{self.name}.invalid", {"call": None})
        args = req.get("args", [])
        return (f"{self.name}.{func}", {"call": func, "args": list(args) if isinstance(args, (list, tuple)) else args})

    # -- the tools it serves (for policy) -------------------------------------------------
    serves_tools = True

    def tool_names(self) -> None:
        """Exports come with the module a process opens: not known up front."""
        return None

    def tool_info(self, export: str) -> ServedTool:
        """Every export is a tool: typed by `classes[export]`, else by `classes["*"]`."""
        return ServedTool(export, self.classes.get(export, self.classes.get("*")), "read_write")

    def tool_classes(self) -> dict[str, str]:
        return dict(self.classes)

    def bound(self, op: str, handle: Any, req: Any) -> Cost:
        """The whole fuel a call may burn (see `max_cost`)."""
        return self.max_cost(handle if isinstance(handle, _Handle) else None)

    def read(self, handle: _Handle, req: Any) -> Any:
        """req: {"call": export, "args": [numbers], "input": bytes|str (optional)}."""
        if not isinstance(req, dict) or not isinstance(req.get("call"), str):
            raise DriverError(f"{self.name}: a read is {{'call': export_name, 'args': [...]}}, got {req!r}")
        args = req.get("args", [])
        if not isinstance(args, (list, tuple)) or not all(
                isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise DriverError(f"{self.name}: args must be a list of numbers, got {args!r}")
        inp = req.get("input")
        if isinstance(inp, str):
            inp = inp.encode()
        if inp is not None and not isinstance(inp, (bytes, bytearray)):
            raise DriverError(f"{self.name}: input must be bytes or str, got {type(inp).__name__}")
        data = bytes(inp) if inp is not None else None
        if self.inline:
            return self._call(handle, req["call"], list(args), data, _NEVER)
        return self._submit(handle, req["call"], list(args), data)

    def write(self, handle: _Handle, data: Any) -> Any:
        """Same as read: a call may change the instance's state either way."""
        return self.read(handle, data)

    async def _submit(self, h: _Handle, func: str, args: list[Any], inp: bytes | None) -> DriverResult:
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        fut = loop.run_in_executor(self._pool, self._call, h, func, args, inp, cancel)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            # the caller was killed or interrupted: stop the module now, not at its deadline.
            # Flag first, then bump the epoch: `_call` arms its deadline before it looks at
            # the flag, so whichever order the threads run in, the call stops.
            cancel.set()
            h.engine.increment_epoch()
            raise

    def _call(self, h: _Handle, func: str, args: list[Any], inp: bytes | None,
              cancel: threading.Event) -> DriverResult:
        wt = _wt()
        with h.lock:
            store = h.store
            store.set_epoch_deadline(1)  # arm before looking at the flags (see _submit)
            if h.closed or cancel.is_set():
                raise DriverError(f"{self.name}: {func} was cancelled before it ran")
            if h.failed is not None:
                raise DriverError(f"{self.name}: the module failed to start: {h.failed}")
            started = Cost()
            if h.instance is None:
                started = self._instantiate(h)
                store.set_epoch_deadline(1)
                if h.closed or cancel.is_set():
                    raise DriverError(f"{self.name}: {func} was cancelled before it ran")
            fast = h.funcs.get(func)
            if fast is None:
                ext = h.instance.exports(store).get(func)
                if not isinstance(ext, wt.Func):
                    raise DriverError(f"{self.name}: the module exports no function {func!r}")
                fast = h.funcs[func] = _fast_call(store, ext)
            h.calls += 1
            store.set_fuel(h.fuel)
            token = _WATCHDOG.arm(h.timeout_ms / 1000.0, h.engine)
            try:
                if inp is not None:
                    args = self._write_input(h, inp) + args
                out = fast(store, args)
            except DriverError:
                raise
            except Exception as e:
                raise self._trap_error(e, store, h.fuel, func, started) from None
            finally:
                _WATCHDOG.disarm(token)
            used = h.fuel - store.get_fuel()
            return DriverResult(self._result(h, func, out), _add(self._cost(used), started))

    def _write_input(self, h: _Handle, data: bytes) -> list[int]:
        wt = _wt()
        alloc = h.instance.exports(h.store).get("alloc")
        if not isinstance(alloc, wt.Func) or h.memory is None:
            raise DriverError(f"{self.name}: passing input needs the module to export memory and alloc(len) -> ptr")
        ptr = alloc(h.store, len(data))
        if not isinstance(ptr, int) or ptr < 0 or ptr + len(data) > h.memory.data_len(h.store):
            raise DriverError(f"{self.name}: alloc({len(data)}) returned {ptr!r}, outside linear memory")
        h.memory.write(h.store, data, ptr)
        return [ptr, len(data)]

    def _result(self, h: _Handle, func: str, out: Any) -> Any:
        if isinstance(out, list) and len(out) == 2 and all(isinstance(x, int) for x in out):
            ptr, n = out[0] & 0xFFFFFFFF, out[1] & 0xFFFFFFFF
            if n > h.output_limit:
                raise WasmTrap(f"{self.name}: {func} returned {n} bytes of output; the cap is "
                               f"{h.output_limit} bytes", code="output")
            if h.memory is None:
                raise DriverError(f"{self.name}: {func} returned (ptr, len) but the module exports no memory")
            size = h.memory.data_len(h.store)
            if ptr + n > size:
                raise WasmTrap(f"{self.name}: {func} returned output range [{ptr}, {ptr + n}) outside "
                               f"its {size}-byte memory", code="output")
            return bytes(h.memory.read(h.store, ptr, ptr + n))
        return out

    def _cost(self, fuel_used: int) -> Cost:
        reductions = math.ceil(fuel_used / self.fuel_per_reduction)
        usd = fuel_used * self.usd_per_gfuel / 1e9 if self.usd_per_gfuel else 0.0
        return Cost(usd=usd, reductions=reductions)

    def _trap_error(self, e: BaseException, store: Any, fuel: int, what: str,
                    before: Cost | None = None) -> DriverError:
        """The error for a trap, carrying what the call costs: the fuel burnt, or for an
        epoch interrupt (wall-time deadline, caller gone) the whole reservation, since
        wasmtime reports no fuel used then. `before`: the start function's cost, if this
        call ran it."""
        wt = _wt()
        try:
            used = fuel - store.get_fuel()
        except Exception:
            used = fuel
        code = getattr(e, "trap_code", None) if isinstance(e, wt.Trap) else None
        if code == wt.TrapCode.INTERRUPT:
            used = fuel  # settle at the full reservation
        cost = _add(self._cost(used), before)
        if code == wt.TrapCode.OUT_OF_FUEL:
            return WasmTrap(f"{self.name}: {what} ran out of fuel after {used} units", cost, "fuel")
        if code == wt.TrapCode.INTERRUPT:
            return WasmTrap(f"{self.name}: {what} was interrupted at its wall-time deadline or "
                            f"because its caller went away (charged its whole {fuel} fuel)", cost, "deadline")
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "memory minimum size" in msg or "exceeds memory limits" in msg or "resource limit" in msg:
            return WasmTrap(f"{self.name}: {what}: memory over the {self.memory_pages}-page cap: {msg}", cost, "memory")
        return WasmTrap(f"{self.name}: {what} trapped: {msg}", cost)

    def close(self, handle: _Handle) -> None:
        handle.closed = True
        handle.engine.increment_epoch()  # a call still running on the pool stops now

    def stats(self) -> dict[str, int]:
        return {"compiles": self.compiles, "cache_hits": self.cache_hits, "cached": len(self._cache)}


def _add(a: Cost, b: Cost | None) -> Cost:
    if b is None or (not b.usd and not b.reductions):
        return a
    return Cost(usd=a.usd + b.usd, reductions=a.reductions + b.reductions)


_NUMERIC = {"i32": (1 << 31, 1 << 32), "i64": (1 << 63, 1 << 64), "f32": None, "f64": None}


def _fast_call(store: Any, func: Any) -> Callable[[Any, list[Any]], Any]:
    """A caller for one export. For all-numeric signatures, a direct ffi call with the
    signature looked up once (wasmtime-py's `Func.__call__` queries and converts the type
    on every call: ~100 µs; this: ~10 µs). Anything else, or a wasmtime-py without the
    internals used here, gets the public call."""
    def public(st: Any, args: list[Any]) -> Any:
        return func(st, *args)
    try:
        import ctypes

        import wasmtime
        import wasmtime._func as wfunc
        from wasmtime import _ffi as ffi

        ty = func.type(store)
        params = [str(t) for t in ty.params]
        results = [str(t) for t in ty.results]
        if not all(t in _NUMERIC for t in params + results):
            return public
        kind = {"i32": ffi.WASMTIME_I32.value, "i64": ffi.WASMTIME_I64.value,
                "f32": ffi.WASMTIME_F32.value, "f64": ffi.WASMTIME_F64.value}
        val_t, trap_t, call = ffi.wasmtime_val_t, ffi.wasm_trap_t, ffi.wasmtime_func_call
        raw = func._func
        n, m = len(params), len(results)
        spec = [(kind[t], t, _NUMERIC[t]) for t in params]
    except (ImportError, AttributeError, KeyError):
        return public

    def fast(st: Any, args: list[Any]) -> Any:
        if len(args) != n:
            raise DriverError(f"wasm: the export takes {n} arguments ({', '.join(params)}), got {len(args)}")
        pv = (val_t * n)()
        for i, (k, t, bounds) in enumerate(spec):
            v = args[i]
            if bounds is not None:
                half, full = bounds
                if not isinstance(v, int) or not -half <= v < full:
                    raise DriverError(f"wasm: argument {i} must be an {t}, got {v!r}")
                if v >= half:
                    v -= full  # unsigned spelling of a negative value
            pv[i].kind = k  # type: ignore[assignment]  # ctypes field takes an int
            setattr(pv[i].of, t, v if bounds is not None else float(v))
        rv = (val_t * m)()
        trap = ctypes.POINTER(trap_t)()
        err = call(st._context(), ctypes.byref(raw), pv, n, rv, m, ctypes.byref(trap))
        if err:
            wfunc.maybe_raise_last_exn()
            raise wasmtime.WasmtimeError._from_ptr(err)
        if trap:
            exc = wasmtime.Trap._from_ptr(trap)
            wfunc.maybe_raise_last_exn()
            raise exc
        out = [getattr(rv[i].of, results[i]) for i in range(m)]
        return None if m == 0 else out[0] if m == 1 else out
    return fast


class _Watchdog:
    """One thread for every wall-time deadline: bumps an engine's epoch when its call is due.

    Cheaper than a timer thread per call; a disarmed entry is skipped when it comes due."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._heap: list[tuple[float, int, Any]] = []
        self._live: set[int] = set()
        self._seq = 0
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, engine: Any) -> int:
        import heapq
        import time

        with self._cv:
            self._seq += 1
            token = self._seq
            heapq.heappush(self._heap, (time.monotonic() + seconds, token, engine))
            self._live.add(token)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="wasm-watchdog", daemon=True)
                self._thread.start()
            self._cv.notify()
            return token

    def disarm(self, token: int) -> None:
        with self._cv:
            self._live.discard(token)

    def _run(self) -> None:
        import heapq
        import time

        with self._cv:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cv.wait()
                    continue
                when, token, engine = self._heap[0]
                delay = when - time.monotonic()
                if delay > 0:
                    self._cv.wait(delay)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(token)
                engine.increment_epoch()


_WATCHDOG = _Watchdog()
_NEVER = threading.Event()  # the cancel flag of an inline call: nothing can set it


def _valtype(name: str) -> Any:
    wt = _wt()
    return {"i32": wt.ValType.i32, "i64": wt.ValType.i64,
            "f32": wt.ValType.f32, "f64": wt.ValType.f64}[name]()


__all__ = ["HostFunction", "WasmDriver", "WasmTrap", "DEFAULT_PAGES", "DEFAULT_OUTPUT"]
