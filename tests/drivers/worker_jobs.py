"""Functions the worker tests run in pool processes (module level, so they pickle by name)."""
from __future__ import annotations

import os
import time

STATE = {"touched": False}


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def whoami() -> int:
    return os.getpid()


def touch_global() -> tuple[int, bool]:
    STATE["touched"] = True
    return os.getpid(), STATE["touched"]


def boom(msg: str) -> None:
    raise ValueError(msg)


def die(code: int) -> None:
    os._exit(code)


def spin(path: str, seconds: float) -> str:
    """Announce our pid in `path`, then burn CPU for `seconds` (a job worth cancelling)."""
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1
    return "finished"


def unpicklable_result() -> object:
    return lambda: 1
