"""Structured concurrency: a scope that owns the children it starts.

Leaving the `async with` block normally waits for every child; leaving it with an
exception kills every child first, then lets the exception go on. Children are linked,
so if the owner itself is killed (a kill is never catchable) the kernel kills them too:
no child outlives its scope either way.
"""
from __future__ import annotations

from types import TracebackType
from typing import Any

from ..abi.types import Down, ExitReason, Quota
from ..kernel.trap import Sys


class Nursery:
    def __init__(self, sys: Sys) -> None:
        self._sys = sys
        self._children: dict[int, int] = {}   # pid -> cap
        self.results: dict[int, ExitReason] = {}

    async def start(self, image: Any, *, args: Any = None, caps: tuple[Any, ...] = (),
                    quota: Quota | None = None, priority: int | None = None,
                    name: str | None = None) -> tuple[int, int]:
        pid, cap = await self._sys.spawn(image, args=args, caps=caps, quota=quota, link=True,
                                         priority=priority, name=name)
        self._children[pid] = cap
        return pid, cap

    async def cancel(self) -> None:
        for cap in list(self._children.values()):
            await self._sys.kill(cap)

    async def __aenter__(self) -> "Nursery":
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if et is not None:
            await self.cancel()
        for pid, cap in list(self._children.items()):
            self.results[pid] = await self._sys.waitpid(cap)
        # drain the Down notices the links left in our mailbox
        mine = set(self._children)
        while await self._sys.recv(timeout=0, match=lambda m: isinstance(m.body, Down) and m.body.pid in mine):
            pass
        self._children.clear()


def open_nursery(sys: Sys) -> Nursery:
    return Nursery(sys)
