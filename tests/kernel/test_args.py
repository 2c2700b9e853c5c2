"""Syscall argument checks: a subclass of a builtin is read by its value, its own methods
never run in the kernel (a hostile one is a typed error or its plain value, never a kernel bug)."""
from __future__ import annotations

from typing import Any

import pytest

from agentos import AllowAll, Kernel
from agentos.abi.errors import BadArgument
from agentos.kernel import args as A


class EvilFloat(float):
    def __float__(self) -> float:
        raise RuntimeError("hostile __float__")

    def __lt__(self, other: object) -> bool:
        raise RuntimeError("hostile __lt__")

    def __gt__(self, other: object) -> bool:
        raise RuntimeError("hostile __gt__")

    def __le__(self, other: object) -> bool:
        raise RuntimeError("hostile __le__")

    def __ge__(self, other: object) -> bool:
        raise RuntimeError("hostile __ge__")

    def __mul__(self, other: object) -> float:
        raise RuntimeError("hostile __mul__")


class EvilInt(int):
    def __int__(self) -> int:
        raise RuntimeError("hostile __int__")

    def __index__(self) -> int:
        raise RuntimeError("hostile __index__")

    def __lt__(self, other: object) -> bool:
        raise RuntimeError("hostile __lt__")

    def __gt__(self, other: object) -> bool:
        raise RuntimeError("hostile __gt__")


class EvilList(list):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        raise RuntimeError("hostile __iter__")


def test_number_integer_and_sequence_read_a_hostile_subclass_by_its_value() -> None:
    f = A.number("x", EvilFloat(2.5), minimum=0)
    assert f == 2.5 and type(f) is float
    i = A.number("x", EvilInt(7), minimum=0)
    assert i == 7 and type(i) is int
    j = A.integer("x", EvilInt(7), minimum=0, maximum=9)
    assert j == 7 and type(j) is int
    with pytest.raises(BadArgument, match="at most 9"):
        A.integer("x", EvilInt(10), maximum=9)
    assert A.sequence("x", EvilList([1, 2])) == (1, 2)
    with pytest.raises(BadArgument, match="finite"):
        A.number("x", EvilFloat("nan"))


def test_a_hostile_float_subclass_as_a_syscall_argument_is_read_by_its_value() -> None:
    out: dict[str, Any] = {}

    async def child(sys: Any, args: Any) -> None:
        await sys.recv()

    async def init(sys: Any, args: Any) -> Any:
        _, cap = await sys.spawn(child)
        await sys.sleep(EvilFloat(5.0))
        out["report"] = await sys.report(cap, "lied", EvilFloat(0.5))
        try:
            await sys.report(cap, "lied", EvilFloat(1.5))
        except BadArgument as e:
            out["error"] = str(e)
        return "ok"

    k = Kernel(deterministic=True, policy=AllowAll())
    res = k.run(init)
    assert res.value == "ok", res
    assert out["report"] == pytest.approx(0.025)
    assert "weight must be in (0, 1]" in out["error"]
