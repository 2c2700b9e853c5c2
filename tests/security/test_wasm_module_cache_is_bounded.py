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
