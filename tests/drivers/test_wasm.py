"""The wasm driver: limits enforced by wasmtime, results and costs through the kernel."""
from __future__ import annotations

import os
import time

import pytest

pytest.importorskip("wasmtime")

from agentos import AllowAll, Kernel
from agentos.abi.errors import DriverError
from agentos.abi.types import Quota
from agentos.drivers.wasm import HostFunction, WasmDriver

import wasm_modules as W


def run(body, driver: WasmDriver, quota: Quota | None = None, **kw):
    k = Kernel(**{"deterministic": True, "policy": AllowAll(), **kw})
    k.register_driver(driver)
    return k, k.run(body, grant=[driver.name], quota=quota)


def call(wat: str, func: str, args=(), **params):
    async def body(sys, _):
        h = await sys.open("wasm", {"wat": wat, **params})
        return await sys.read(h, {"call": func, "args": list(args)})
    return body


def test_add_runs_and_charges_fuel_as_reductions():
    k, res = run(call(W.ADD, "add", (2, 40)), WasmDriver(fuel_per_reduction=1))
    assert res.value == 42, res
    e = k.journal.entries[-1]
    assert e.ok and e.reductions > 0  # fuel burnt, mapped 1:1 here


def test_grow_past_cap_returns_minus_one():
    async def body(sys, _):
        h = await sys.open("wasm", {"wat": W.GROW, "memory_pages": 2})
        ok = await sys.read(h, {"call": "grow", "args": [1]})
        bad = await sys.read(h, {"call": "grow", "args": [1]})
        size = await sys.read(h, {"call": "size"})
        return ok, bad, size
    _, res = run(body, WasmDriver())
    assert res.value == (1, -1, 2)


def test_declared_minimum_over_cap_is_refused_at_open():
    async def body(sys, _):
        try:
            await sys.open("wasm", {"wat": W.MIN_OVER_CAP})
        except DriverError as e:
            return str(e)
    _, res = run(body, WasmDriver())
    assert "at least 17 pages" in res.value and "cap is 16 pages" in res.value


def test_open_params_cannot_widen_device_limits():
    async def body(sys, _):
        try:
            await sys.open("wasm", {"wat": W.ADD, "fuel": 10**12})
        except DriverError as e:
            return str(e)
    _, res = run(body, WasmDriver())
    assert "over this device's limit" in res.value


def test_infinite_loop_runs_out_of_fuel_and_the_fuel_is_charged():
    async def body(sys, _):
        h = await sys.open("wasm", {"wat": W.SPIN})
        try:
            await sys.read(h, {"call": "spin"})
        except DriverError as e:
            return str(e)
    k, res = run(body, WasmDriver(fuel=200_000))
    assert "ran out of fuel" in res.value
    e = k.journal.entries[-1]
    assert not e.ok and e.reductions == 20  # 200,000 fuel / 10,000 per reduction


def test_fuel_price_drains_the_usd_quota_and_kills():
    async def body(sys, _):
        h = await sys.open("wasm", {"wat": W.SPIN})
        for _ in range(100):
            try:
                await sys.read(h, {"call": "spin"})
            except DriverError:
                pass
    # each call burns 1e6 fuel = $0.001; a $0.0035 budget pays for three
    k, res = run(body, WasmDriver(fuel=1_000_000, usd_per_gfuel=1.0), quota=Quota(usd=0.0035))
    assert str(res.reason) == "quota(usd)"
    assert sum(1 for e in k.journal.entries if e.op == "read") == 4


def test_infinite_loop_hits_the_epoch_deadline():
    t0 = time.monotonic()
    async def body(sys, _):
        h = await sys.open("wasm", {"wat": W.SPIN})
        try:
            await sys.read(h, {"call": "spin"})
        except DriverError as e:
            return str(e)
    _, res = run(body, WasmDriver(fuel=10**15, timeout_ms=100))
    assert "interrupted" in res.value
    assert time.monotonic() - t0 < 10


def test_output_is_read_from_the_pointer():
    _, res = run(call(W.OUTPUT, "hello"), WasmDriver())
    assert res.value == b"hello, world"


def test_input_is_copied_in_and_echoed_back():
    async def body(sys, _):
        h = await sys.open("wasm", {"wat": W.OUTPUT})
        return await sys.read(h, {"call": "echo", "input": "ping \u00e9"})
    _, res = run(body, WasmDriver())
    assert res.value == "ping \u00e9".encode()


@pytest.mark.parametrize("func,msg", [("big", "5000 bytes of output; the cap is 4096"),
                                      ("outside", "outside its 65536-byte memory")])
def test_oversize_or_out_of_range_output_is_an_error(func, msg):
    async def body(sys, _):
        h = await sys.open("wasm", {"wat": W.OUTPUT})
        try:
            await sys.read(h, {"call": func})
        except DriverError as e:
            return str(e)
    _, res = run(body, WasmDriver())
    assert msg in res.value


def test_module_with_imports_is_refused_without_a_grant():
    async def body(sys, _):
        try:
            await sys.open("wasm", {"wat": W.IMPORTS_CLOCK})
        except DriverError as e:
            return str(e)
    _, res = run(body, WasmDriver())
    assert "imports env.now, which this device does not grant" in res.value


def test_granted_host_function_is_linked():
    hf = HostFunction("env", "now", [], ["i64"], lambda: 1234)
    _, res = run(call(W.IMPORTS_CLOCK, "now"), WasmDriver(host_functions=[hf]))
    assert res.value == 1234


def test_wasi_reads_inside_the_preopen(tmp_path):
    (tmp_path / "in.txt").write_text("inside")
    async def body(sys, _):
        h = await sys.open("wasm", {"wat": W.WASI_FS})
        errno = await sys.read(h, {"call": "open", "input": "in.txt"})
        assert errno == 0, errno
        assert await sys.read(h, {"call": "read_opened"}) == 0
        return await sys.read(h, {"call": "data"})
    _, res = run(body, WasmDriver(wasi_dir=str(tmp_path)))
    assert res.value == b"inside"


def test_wasi_without_grant_is_refused():
    async def body(sys, _):
        try:
            await sys.open("wasm", {"wat": W.WASI_FS})
        except DriverError as e:
            return str(e)
    _, res = run(body, WasmDriver())
    assert "grants no WASI" in res.value


def test_compiled_modules_are_cached():
    d = WasmDriver()
    async def body(sys, _):
        for _ in range(5):
            h = await sys.open("wasm", {"wat": W.ADD})
            assert await sys.read(h, {"call": "add", "args": [1, 2]}) == 3
            await sys.close(h)
    run(body, d)
    assert d.stats()["compiles"] == 1 and d.stats()["cache_hits"] == 4


def test_bad_requests_are_typed_errors_and_the_kernel_keeps_running():
    async def body(sys, _):
        out = []
        h = await sys.open("wasm", {"wat": W.ADD})
        for req in ("nope", {"call": "missing"}, {"call": "add", "args": ["x"]}):
            try:
                await sys.read(h, req)
            except DriverError as e:
                out.append(type(e).__name__)
        for params in (None, {"wat": "(module"}, {"wasm": b"\0asm junk"}, {"wat": W.ADD, "x": 1}):
            try:
                await sys.open("wasm", params)
            except DriverError as e:
                out.append("open")
        out.append(await sys.read(h, {"call": "add", "args": [1, 1]}))
        return out
    _, res = run(body, WasmDriver())
    assert res.value == ["DriverError"] * 3 + ["open"] * 4 + [2]


@pytest.mark.live_only(reason="real time: the program waits in wall time for the outside world (the server, the model) before it kills, which a virtual clock cannot do while I/O is in flight")
def test_killed_caller_interrupts_the_running_module():
    d = WasmDriver(fuel=10**15, timeout_ms=60_000, max_workers=1)
    async def spinner(sys, _):
        h = await sys.open("wasm", {"wat": W.SPIN})
        await sys.read(h, {"call": "spin"})

    async def body(sys, _):
        _pid, cap = await sys.spawn(spinner, caps=["wasm"])
        await sys.sleep(50)
        await sys.kill(cap)
        r = await sys.waitpid(cap)
        # the pool has one worker: this call only runs once the spinner's call has stopped
        h = await sys.open("wasm", {"wat": W.ADD})
        return str(r), await sys.read(h, {"call": "add", "args": [1, 2]})
    t0 = time.monotonic()
    _, res = run(body, d, deterministic=False)
    assert res.value == ("killed(1)", 3)
    assert time.monotonic() - t0 < 20


MIXED = """(module
  (func (export "mix") (param i32 i64 f64) (result f64)
    local.get 0 f64.convert_i32_s local.get 1 f64.convert_i64_s f64.add local.get 2 f64.add)
  (func (export "neg") (result i32) i32.const -5)
  (func (export "nothing")))"""


def test_numeric_signatures_and_argument_checks():
    async def body(sys, _):
        h = await sys.open("wasm", {"wat": MIXED})
        out = [await sys.read(h, {"call": "mix", "args": [1, 2**40, 0.5]}),
               await sys.read(h, {"call": "neg"}),
               await sys.read(h, {"call": "nothing"})]
        for bad in ([1, 2], [2**32, 0, 0.0], [1.5, 0, 0.0]):
            try:
                await sys.read(h, {"call": "mix", "args": bad})
            except DriverError as e:
                out.append(str(e).split(":")[1].strip()[:14])
        # the unsigned spelling of -1 is the same i32
        out.append(await sys.read(h, {"call": "mix", "args": [2**32 - 1, 0, 0.0]}))
        return out
    _, res = run(body, WasmDriver())
    assert res.value == [1 + 2**40 + 0.5, -5, None, "the export tak", "argument 0 mus", "argument 0 mus", -1.0]


def test_inline_device_runs_on_the_kernel_thread_with_the_same_limits():
    import threading
    seen = []
    hf = HostFunction("env", "now", [], ["i64"], lambda: seen.append(threading.current_thread().name) or 7)

    async def body(sys, _):
        h = await sys.open("wasm", {"wat": W.IMPORTS_CLOCK})
        v = await sys.read(h, {"call": "now"})
        s = await sys.open("wasm", {"wat": W.SPIN})
        try:
            await sys.read(s, {"call": "spin"})
        except DriverError as e:
            return v, str(e)
    _, res = run(body, WasmDriver(inline=True, timeout_ms=5, fuel=10**12, host_functions=[hf]))
    assert res.value[0] == 7 and "interrupted" in res.value[1]
    assert seen == [threading.main_thread().name]
    with pytest.raises(ValueError, match="must be <= 10"):
        WasmDriver(inline=True, timeout_ms=1000)
