"""Work done for a caller, in a process whose budget is carved from the caller's account.

`run_job(sys, image, ...)` spawns `image` with `quota` (carved from the caller all or
nothing: a quota the caller cannot cover is a `QuotaExceeded` raised here and nothing
runs), hands it the capabilities it needs plus a reply capability, waits for its one
answer or its exit, and returns `(answer, None)` or `(None, exit reason)`. The job finds
the reply capability at `sys.caps[args["reply_index"]]` and answers with
`sys.send(cap, body, corr=args["corr"])`.

Invariant: whatever the job does, it cannot spend more of the caller's account than
`quota`; a job that ends without answering is reported, never waited on forever (the
caller monitors it); only the job can answer, and only the kernel can say it ended (a
message carrying its correlation id, or a `Down` naming it, from any other sender is left
in the mailbox).
"""
from __future__ import annotations

from typing import Any, Sequence

from ..abi.types import KERNEL_PID, Down, Quota
from ..kernel.trap import Sys


async def run_job(sys: Sys, image: Any, *, args: dict[str, Any], caps: Sequence[Any], quota: Quota,
                  name: str, spawn: bool = True) -> tuple[Any, Any]:
    """Run one job to its answer. `spawn=True` passes the caller's spawn right on (a job
    that runs helpers of its own needs it)."""
    if not isinstance(quota, Quota):
        raise TypeError(f"a job's quota must be a Quota, got {type(quota).__name__}")
    me = await sys.self_cap()
    corr = (name, await sys.pid(), sys.next_corr())
    all_caps = [*caps, me] + (["spawn"] if spawn else [])
    pid, cap = await sys.spawn(image, name=name, quota=quota, caps=all_caps,
                               args={**args, "corr": corr, "reply_index": len(caps)})
    await sys.monitor(cap)
    # the answer must come from the job itself: a correlation id is guessable (a name, the
    # caller's pid, a counter), and anyone who can message the caller could answer first
    msg = await sys.recv(match=lambda m: (m.corr == corr and m.sender == pid) or _down(m, pid))
    assert msg is not None
    if isinstance(msg.body, Down):
        return None, msg.body.reason
    await sys.recv(match=lambda m: _down(m, pid))  # it ends after answering
    return msg.body, None


def _down(m: Any, pid: int) -> bool:
    """The kernel's notice that `pid` ended. A `Down` is a plain value any process can put
    in a message body: only one the kernel sent (sender pid 0) says the job is gone."""
    return isinstance(m.body, Down) and m.sender == KERNEL_PID and m.body.pid == pid


__all__ = ["run_job"]
