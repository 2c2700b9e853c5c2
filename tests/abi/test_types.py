"""`Right.parse`: what a process hands the kernel as rights is read by its value."""
from __future__ import annotations

import itertools
from typing import Any

import pytest

from agentos import AllowAll, Kernel
from agentos.abi.errors import AgentOSError
from agentos.abi.types import Right


class EvilInt(int):
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("hostile __eq__")

    __hash__ = int.__hash__

    def __and__(self, other: object) -> int:
        raise RuntimeError("hostile __and__")


class EvilStr(str):
    def split(self, *a: Any, **kw: Any) -> Any:
        raise RuntimeError("hostile split")


class EvilList(list):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        raise RuntimeError("hostile __iter__")


def test_rights_given_as_hostile_subclasses_are_read_by_their_value() -> None:
    assert Right.parse(EvilInt(int(Right.SEND))) == Right.SEND
    assert Right.parse(EvilStr("send,kill")) == Right.SEND | Right.KILL
    assert Right.parse(EvilList(["read"])) == Right.READ
    assert Right.parse(("read", EvilStr("write"))) == Right.READ | Right.WRITE


@pytest.mark.parametrize("bad", [itertools.repeat("send"), {"send"}, 1.5, None, ["send", 3], -1, 1 << 200],
                         ids=["endless", "set", "float", "none", "non-str-item", "negative", "huge"])
def test_rights_of_another_shape_are_refused_not_read_forever(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        Right.parse(bad)


def test_a_bus_narrow_with_a_hostile_int_as_rights_is_a_typed_error_not_a_kernel_bug() -> None:
    from agentos.services import attach_bus, bus_narrow

    async def init(sys: Any, args: Any) -> Any:
        try:
            await bus_narrow(sys, sys.caps[0], "a.>", EvilInt(int(Right.NONE)))
        except AgentOSError as e:
            return type(e).__name__
        return "accepted"

    k = Kernel(deterministic=True, policy=AllowAll())
    attach_bus(k)
    res = k.run(init, grant=["bus"])
    assert res.value == "CapError", res.reason
