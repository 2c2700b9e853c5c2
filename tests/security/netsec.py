"""Shared helpers for the envelope attacks: a receiving node whose clock the test sets, and
a program that reports what reached it."""
from __future__ import annotations

from typing import Any

from agentos import AllowAll, Kernel
from agentos.net import Envelope, fresh_nonce, seal

KEY = b"the-cluster-key-for-these-tests!"
OTHER_KEY = b"a-key-the-receiver-never-shared!"
NOW = 1_800_000_000.0


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Sink:
    """A transport that keeps what it is given (the receiver never answers here)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return True


def receiver(**options: Any) -> tuple[Kernel, Clock]:
    clock = Clock()
    k = Kernel(deterministic=True, policy=AllowAll())
    k.connect("a", Sink(), node="b", key=KEY, wall=clock, **options)
    return k, clock


def envelope(body: Any = "hello", *, to_pid: int = 1, at: float = NOW, nonce: str | None = None,
             to_node: str = "b", **kw: Any) -> Envelope:
    return Envelope("a", 1, to_node, to_pid, at, nonce or fresh_nonce(), body, **kw)


def frame(body: Any = "hello", key: bytes = KEY, **kw: Any) -> bytes:
    return seal(key, envelope(body, **kw))


async def collect(sys: Any, args: Any) -> list[Any]:
    """Receive until a quiet spell; the bodies that arrived, in order."""
    got = []
    while (msg := await sys.recv(timeout=10)) is not None:
        got.append(msg.body)
    return got
