"""Request/reply over mailboxes: `call` sends with a reply cap and a fresh `corr`, then
waits only for the message carrying that `corr`, so other traffic stays queued."""
from __future__ import annotations

from typing import Any

from ..abi.errors import SyscallError
from ..kernel.trap import Sys


class CallTimeout(SyscallError):
    """No reply arrived within the timeout."""


async def call(sys: Sys, cap: int, body: Any, *, timeout: float | None = None) -> Any:
    corr = ("call", sys.next_corr())
    me = await sys.self_cap()
    await sys.send(cap, body, caps=(me,), corr=corr)
    reply = await sys.recv(timeout=timeout, match=lambda m: m.corr == corr)
    if reply is None:
        raise CallTimeout(f"no reply to {body!r:.60} within {timeout} ms")
    return reply.body


async def reply(sys: Sys, request: Any, body: Any) -> None:
    """Answer a message received from `call`."""
    if not request.caps:
        raise SyscallError("reply: the request carried no reply capability")
    await sys.send(request.caps[0], body, corr=request.corr)
