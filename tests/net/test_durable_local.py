"""`send(..., durable=True)` to a process on the same kernel is a plain send: a bare kernel
(no cluster) delivers it once, in order with other sends, and records it as its own call."""
from __future__ import annotations

from typing import Any

from agentos import Kernel


async def child(sys: Any, args: Any) -> None:
    got = [(await sys.recv()).body for _ in range(3)]
    await sys.send(sys.caps[0], got)


def test_a_durable_send_to_a_local_process_is_delivered_like_any_send() -> None:
    async def init(sys: Any, args: Any) -> Any:
        _, c = await sys.spawn(child, caps=[await sys.self_cap()])
        await sys.send(c, 1)
        await sys.send(c, 2, durable=True)
        await sys.send(c, 3)
        return (await sys.recv()).body, str(await sys.waitpid(c))

    k = Kernel(deterministic=True)
    res = k.run(init)
    assert res.value == ([1, 2, 3], "normal")
    ends = [e.data for e in k.events.events(kind="exit") if e.pid == 2]
    assert ends == ["normal"]
    kinds = [type(e.data).__name__ for e in k.events.events(kind="sys") if e.pid == 1]
    assert kinds.count("SendDurable") == 1 and kinds.count("Send") == 2
