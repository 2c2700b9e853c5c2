"""Processes choose the modules they open, and each distinct one was kept compiled for
ever: opening module after module grew the kernel's memory without bound. The cache now
keeps the most recent `CACHE_MODULES` and drops the oldest."""
from __future__ import annotations

import pytest

pytest.importorskip("wasmtime")

from agentos.drivers import wasm  # noqa: E402


def test_distinct_modules_do_not_grow_the_cache_without_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wasm, "CACHE_MODULES", 3)
    drv = wasm.WasmDriver()
    engine = drv._engine()
    for i in range(8):
        drv._module(engine, f'(module (func (export "f{i}") (result i32) i32.const {i}))')
    assert drv.compiles == 8 and len(drv._cache) == 3
    drv._module(engine, '(module (func (export "f7") (result i32) i32.const 7))')
    assert drv.cache_hits == 1   # the newest is still there


def test_a_huge_module_is_refused_before_it_is_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from agentos.abi.errors import DriverError

    monkeypatch.setattr(wasm, "MAX_MODULE_BYTES", 1 << 20)
    drv = wasm.WasmDriver()
    engine = drv._engine()
    body = " ".join(["i32.const 1 drop"] * 2000)
    wat = "(module " + " ".join(f"(func $f{i} {body})" for i in range(200)) + ")"
    t0 = time.perf_counter()
    with pytest.raises(DriverError, match="limit"):
        drv._module(engine, wat)
    with pytest.raises(DriverError, match="limit"):
        drv._module(engine, b"\0asm\x01\0\0\0" + b"\0" * (2 << 20))
    assert time.perf_counter() - t0 < 1.0 and drv.compiles == 0
