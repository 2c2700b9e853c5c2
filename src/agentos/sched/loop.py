"""Message-loop images: a process written as `state -> handle(msg) -> state` (gen_server).

A Python coroutine frame cannot be serialized, so the kernel cannot put an arbitrary
process to sleep completely: it can page out its context, but the coroutine stays in
memory. A message loop is different: between messages its whole state is one value
the image declares, so while it waits at the top of its loop the kernel can keep only a
stub, store the state, and build the coroutine again from the image on wake.

    @message_loop(init=setup, idle_ms=30_000)
    async def counter(sys, state, msg):
        return state + 1

`init(sys, args)` (async, optional) returns the first state; without it the state starts as
`args`. `handle(sys, state, msg)` returns the next state, or `loop_exit(value)` to end the
process with `value`. The state must be plain data (what a message body may hold) for the
process to hibernate completely; otherwise only its context is paged out. `idle_ms`: the
kernel hibernates the process after that long without a message (needs hibernation on).

The decorated name is a `ProcessImage` whose `main` carries the handler's module and
qualified name, so recordings, snapshots and exports find it again by import path.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Awaitable, Callable

from ..abi.errors import BadArgument
from ..kernel.process import ProcessImage

Handle = Callable[[Any, Any, Any], Awaitable[Any]]
Init = Callable[[Any, Any], Awaitable[Any]]


class _Resume:
    """What the kernel passes as `args` to rebuild a loop at its top: never a user value.
    Spawn args and message bodies are checked by the canonical encoder, which renders an
    unknown object by `str()`; this one refuses, so a process that builds one and spawns
    a loop with it gets a `BadArgument` instead of skipping the loop's `init` with a state
    of its choosing."""

    __slots__ = ("args", "state")

    def __init__(self, args: Any, state: Any) -> None:
        self.args = args
        self.state = state

    def __str__(self) -> str:
        raise TypeError("a loop's resume marker is made by the kernel only")

    __repr__ = __str__


class LoopExit:
    """Returned by a handler to end the loop (and the process) with `value`."""

    __slots__ = ("value",)

    def __init__(self, value: Any = None) -> None:
        self.value = value


def loop_exit(value: Any = None) -> LoopExit:
    return LoopExit(value)


def _make_main(init: Init | None, handle: Handle) -> Callable[[Any, Any], Awaitable[Any]]:
    async def main(sys: Any, args: Any) -> Any:
        if type(args) is _Resume:            # woken from hibernation: start at the top
            state = args.state
            args = args.args
        elif init is not None:
            state = await init(sys, args)
        else:
            state = args
        while True:
            idle = True                       # read by the kernel: only here can it hibernate us
            msg = await sys.recv()
            idle = False
            state = await handle(sys, state, msg)
            if type(state) is LoopExit:
                return state.value
    return main


LOOP_CODE = _make_main(None, None).__code__  # type: ignore[arg-type]  # every loop's frame runs this


def _idle_ms(v: Any) -> float:
    """`idle_ms` as a plain float, read by value (a subclass's own methods never run)."""
    f = math.nan
    if not isinstance(v, bool) and isinstance(v, (int, float)):
        try:
            f = int.__float__(v) if isinstance(v, int) else float.__float__(v)
        except OverflowError:  # an int too large for a float (10**400)
            f = math.inf
    if not math.isfinite(f) or f <= 0:
        if isinstance(v, int) and not isinstance(v, bool) and int.bit_length(v) > 64:
            shown = f"an integer of {int.bit_length(v)} bits"
        elif type(v) in (int, float, bool) or v is None:
            shown = repr(v)
        else:
            shown = f"a {type(v).__name__}" if not isinstance(v, (int, float)) else repr(float(f))
        raise BadArgument(f"message_loop: idle_ms must be a finite number of ms > 0, got {shown}")
    return f


def message_loop(name: str | None = None, *, init: Init | None = None,
                 idle_ms: float | None = None) -> Callable[[Handle], ProcessImage]:
    """Decorator: the image of a message loop whose handler is the decorated function."""
    if idle_ms is not None:
        idle_ms = _idle_ms(idle_ms)
    if init is not None and not inspect.iscoroutinefunction(init):
        raise BadArgument("message_loop: init must be an async function (sys, args) -> state")

    def wrap(handle: Handle) -> ProcessImage:
        if not inspect.iscoroutinefunction(handle):
            raise BadArgument("message_loop: the handler must be an async function (sys, state, msg)")
        main = _make_main(init, handle)
        main.__module__ = handle.__module__
        main.__qualname__ = handle.__qualname__
        main.__name__ = handle.__name__
        main.__doc__ = handle.__doc__
        main._agentos_idle_ms = None if idle_ms is None else float(idle_ms)  # type: ignore[attr-defined]
        return ProcessImage(name or handle.__name__, main)
    return wrap


def is_loop(coro: Any) -> bool:
    """Whether `coro` is a message loop's coroutine."""
    return getattr(coro, "cr_code", None) is LOOP_CODE


def idle_state(coro: Any) -> tuple[bool, Any]:
    """(at the top of its loop, state) of a suspended loop coroutine."""
    frame = coro.cr_frame
    if frame is None:
        return False, None
    loc = frame.f_locals
    return loc.get("idle") is True, loc.get("state")


def resume(image: ProcessImage, sys: Any, args: Any, state: Any) -> Any:
    """A fresh coroutine of a loop image that starts at the top of its loop with `state`."""
    return image.main(sys, _Resume(args, state))


__all__ = ["LOOP_CODE", "LoopExit", "is_loop", "loop_exit", "message_loop"]
