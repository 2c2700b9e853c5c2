"""wasmtime reports no fuel used after an epoch (wall-time) trap, so a call ended by its
deadline used to cost $0: a priced device could be made to compute for free, forever.
Now such a call settles at its full reservation, the fuel it was given, and the usd quota
bounds WASM compute."""
from __future__ import annotations

import pytest

pytest.importorskip("wasmtime")

from agentos import Kernel
from agentos.abi.errors import DriverError
from agentos.abi.types import Quota
from agentos.drivers.wasm import WasmDriver
from agentos.kernel.kernel import AllowAll

import wasm_modules as W


def test_deadline_trapped_calls_drain_the_usd_quota_and_kill():
    # fuel 1e12 at $1 per 1e9 fuel: a call that runs to its deadline costs $1000
    d = WasmDriver(fuel=10**12, timeout_ms=30, usd_per_gfuel=1.0)
    k = Kernel(policy=AllowAll())
    k.register_driver(d)

    async def body(sys, _):
        h = await sys.open("wasm", {"wat": W.SPIN})
        for _ in range(20):
            try:
                await sys.read(h, {"call": "spin"})
            except DriverError:
                pass

    res = k.run(body, grant=["wasm"], quota=Quota(usd=2500))
    assert str(res.reason) == "quota(usd)", res
    reads = [e for e in k.journal.entries if e.op == "read"]
    ran, refused = reads[:-1], reads[-1]
    assert len(ran) == 2, len(reads)                # two paid for; the third's reservation
    assert refused.error_type == "ReservationRefused" and refused.value == "usd"  # never fit: it never ran
    assert all(not e.ok and "deadline" in e.value for e in ran)
    assert all(e.usd == pytest.approx(1000.0) for e in ran), [e.usd for e in ran]
    assert all(e.reductions == 10**12 // d.fuel_per_reduction for e in ran)


def test_a_deadline_narrowed_at_open_settles_at_the_full_reservation_too():
    d = WasmDriver(fuel=10**12, timeout_ms=60_000, usd_per_gfuel=1.0)
    k = Kernel(policy=AllowAll())
    k.register_driver(d)

    async def body(sys, _):
        h = await sys.open("wasm", {"wat": W.SPIN, "timeout_ms": 50})
        try:
            await sys.read(h, {"call": "spin"})
        except DriverError as e:
            return str(e)

    res = k.run(body, grant=["wasm"], quota=Quota(usd=5000))
    assert "charged its whole 1000000000000 fuel" in res.value, res.value
    reads = [e for e in k.journal.entries if e.op == "read"]
    assert reads[0].usd == pytest.approx(1000.0)


def test_the_driver_declares_the_bound_a_reservation_needs():
    d = WasmDriver(fuel=2 * 10**9, usd_per_gfuel=0.5)
    assert d.max_cost().usd == pytest.approx(2.0)     # a first call may also run the start function


def test_non_finite_or_widened_limits_are_refused_at_open():
    k = Kernel(policy=AllowAll())
    k.register_driver(WasmDriver())

    async def body(sys, _):
        out = []
        for params in ({"timeout_ms": float("nan")}, {"fuel": float("inf")}, {"timeout_ms": -1},
                       {"fuel": 10**30}):
            try:
                await sys.open("wasm", {"wat": W.SPIN, **params})
                out.append("opened")
            except DriverError as e:
                out.append(str(e)[:30])
        return out

    assert all(v != "opened" for v in k.run(body, grant=["wasm"]).value)
