"""Syscall arguments that subclass a built-in are read as their plain value: none of the
subclass's own methods (an endless __iter__, a raising __int__ or __lt__) run in the kernel."""
from __future__ import annotations

from typing import Any

import pytest

from agentos.abi.errors import BadArgument
from agentos.kernel import args as A


class _Ran:
    n = 0


class EndlessCaps(list):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        _Ran.n += 1
        while True:
            yield 0


class EndlessTuple(tuple):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        _Ran.n += 1
        while True:
            yield 0


class SlyInt(int):
    def __int__(self) -> int:
        _Ran.n += 1
        raise AssertionError("ran")

    def __lt__(self, other: Any) -> bool:
        _Ran.n += 1
        raise AssertionError("ran")

    def __gt__(self, other: Any) -> bool:
        _Ran.n += 1
        raise AssertionError("ran")


class SlyFloat(float):
    def __float__(self) -> float:
        _Ran.n += 1
        raise AssertionError("ran")

    def __lt__(self, other: Any) -> bool:
        _Ran.n += 1
        raise AssertionError("ran")


def test_a_sequence_subclass_with_an_endless_iter_is_read_as_its_items() -> None:
    _Ran.n = 0
    assert A.sequence("send: caps", EndlessCaps([1, 2])) == (1, 2)
    assert A.sequence("send: caps", EndlessTuple((3,))) == (3,)
    assert _Ran.n == 0


def test_a_number_subclass_is_read_as_its_plain_value() -> None:
    _Ran.n = 0
    assert A.integer("lane", SlyInt(2), minimum=0, maximum=3) == 2
    assert type(A.number("ttl", SlyInt(5), minimum=0)) is int
    assert A.number("ttl", SlyFloat(1.5), minimum=0) == 1.5
    with pytest.raises(BadArgument, match="at most 3"):
        A.integer("lane", SlyInt(9), maximum=3)
    assert _Ran.n == 0


def test_a_send_whose_caps_list_never_ends_is_answered() -> None:
    from agentos.abi.syscalls import Send
    from agentos.kernel.trap import trap
    from tests.support.boot import boot

    async def init(sys: Any, args: Any) -> Any:
        me = await sys.self_cap()
        try:  # the request built by hand: the kernel, not the process's own wrapper, reads the list
            await trap(Send(me, "hi", EndlessCaps([me]), None, None))
        except Exception as e:  # a refusal is fine too: the point is an answer
            return type(e).__name__
        return (await sys.recv(timeout=0)).body

    _, res = boot(init)
    assert res.value == "hi"
