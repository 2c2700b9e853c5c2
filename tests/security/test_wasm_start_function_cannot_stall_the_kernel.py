"""A module whose start function spins used to stall every process for its whole timeout:
instantiation ran on the kernel's thread inside `open`. Now `open` only checks and
compiles; the start function runs on a worker thread at the first call, under the same
fuel and deadline, and that call pays for it."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("wasmtime")

from agentos import Kernel
from agentos.abi.errors import DriverError
from agentos.drivers.wasm import WasmDriver
from agentos.kernel.kernel import AllowAll

SPIN_AT_START = """(module
  (func $spin (loop (br 0)))
  (start $spin)
  (func (export "f") (result i32) i32.const 1))"""

COUNT_AT_START = """(module
  (global $n (mut i32) (i32.const 0))
  (func $count (local i32)
    (loop (local.set 0 (i32.add (local.get 0) (i32.const 1)))
          (br_if 0 (i32.lt_u (local.get 0) (i32.const 10000))))
    (global.set $n (local.get 0)))
  (start $count)
  (func (export "n") (result i32) global.get $n))"""


def test_a_spinning_start_function_does_not_stall_other_processes():
    k = Kernel(policy=AllowAll())
    k.register_driver(WasmDriver(fuel=10**15, timeout_ms=1500))
    seen: dict[str, float] = {}
    t0 = time.monotonic()

    async def opener(sys, _):
        h = await sys.open("wasm", {"wat": SPIN_AT_START})
        seen["opened"] = time.monotonic() - t0
        errors = []
        for _ in range(2):
            try:
                await sys.read(h, {"call": "f"})
            except DriverError as e:
                errors.append(str(e))
        seen["failed"] = time.monotonic() - t0
        return errors

    async def ticker(sys, _):
        for _ in range(10):
            await sys.sleep(5)
        seen["ticked"] = time.monotonic() - t0

    async def init(sys, _):
        _a, a = await sys.spawn(opener, caps=["wasm"])
        _b, b = await sys.spawn(ticker)
        await sys.waitpid(b)
        return await sys.waitpid(a)

    res = k.run(init, grant=["wasm"])
    assert str(res.value) == "normal", res
    assert seen["opened"] < 0.5, seen          # open returned at once
    assert seen["ticked"] < 1.0, seen          # the other process ran while the start function spun
    assert seen["failed"] >= 1.4, seen         # the deadline still ended it
    errors = [e.value for e in k.journal.entries if e.op == "read"]
    assert "instantiate (the start function) was interrupted" in errors[0], errors
    assert "the module failed to start" in errors[1], errors


def test_the_first_call_pays_for_the_start_function():
    k = Kernel(policy=AllowAll())
    k.register_driver(WasmDriver(fuel_per_reduction=1))

    async def body(sys, _):
        h = await sys.open("wasm", {"wat": COUNT_AT_START})
        return [await sys.read(h, {"call": "n"}) for _ in range(2)]

    res = k.run(body, grant=["wasm"])
    assert res.value == [10000, 10000]
    first, second = [e for e in k.journal.entries if e.op == "read"]
    assert first.reductions > 10000 > second.reductions, (first.reductions, second.reductions)


def test_closing_a_handle_before_its_first_call_never_runs_the_start():
    d = WasmDriver(fuel=10**15, timeout_ms=60_000)
    k = Kernel(policy=AllowAll())
    k.register_driver(d)

    async def body(sys, _):
        for _ in range(20):
            h = await sys.open("wasm", {"wat": SPIN_AT_START})
            await sys.close(h)
        return "closed"

    t0 = time.monotonic()
    assert k.run(body, grant=["wasm"]).value == "closed"
    assert time.monotonic() - t0 < 5
