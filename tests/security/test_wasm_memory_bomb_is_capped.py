"""A module cannot take more linear memory than its device allows, however it asks."""
from __future__ import annotations

import pytest

pytest.importorskip("wasmtime")

from agentos import AllowAll, Kernel
from agentos.abi.errors import DriverError
from agentos.drivers.wasm import WasmDriver

import wasm_modules as W

BOMB = """(module (memory (export "memory") 1)
  (func (export "bomb") (result i32) (local i32)
    (loop (br_if 0 (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    memory.size))"""

TWO_MEMORIES = """(module (memory 1) (memory 1))"""


def run(body):
    k = Kernel(policy=AllowAll())
    k.register_driver(WasmDriver())
    return k.run(body, grant=["wasm"])


def test_grow_loop_stops_at_sixteen_pages():
    async def body(sys, _):
        h = await sys.open("wasm", {"wat": BOMB})
        return await sys.read(h, {"call": "bomb"})
    assert run(body).value == 16


def test_huge_declared_memory_is_refused_before_allocation():
    async def body(sys, _):
        try:
            await sys.open("wasm", {"wat": '(module (memory (export "m") 65536))'})
        except DriverError as e:
            return str(e)
    assert "cap is 16 pages" in run(body).value


def _start(wat):
    """Open and make a first call (instantiation happens there, off the kernel thread)."""
    async def body(sys, _):
        try:
            h = await sys.open("wasm", {"wat": wat})
            await sys.read(h, {"call": "anything"})
        except DriverError as e:
            return str(e)
    return run(body).value


def test_second_memory_is_refused():
    assert _start(TWO_MEMORIES)  # multi-memory off / memories=1: never instantiated


def test_memory_growth_from_data_segment_outside_bounds_is_refused():
    msg = _start('(module (memory 1) (data (i32.const 70000) "x"))')
    assert "instantiate" in msg and ("trapped" in msg or "out of bounds" in msg), msg
