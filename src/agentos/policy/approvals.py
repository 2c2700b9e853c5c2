"""The kernel's approval channel: a person (or a trusted callback) says yes or no.

A call that policy says `requires_approval` parks its process (state waiting, wait
"approval") and becomes a pending request with a kernel-side random id. The answer comes
only from outside the process: a callback given to the kernel, an interactive prompt
(agentctl), or the loopback HTTP endpoint (approval.py's `ApprovalServer`, which wants a
bearer token the processes never see). Nothing the process passes (arguments, messages,
check_policy) reaches this object. No answer before the timeout (kernel clock) denies.

An approval is a one-shot grant for exactly that (pid, action, canonical arguments):
the kernel reruns the parked syscall, which re-checks capabilities and policy, and the
grant is consumed there. Changed arguments need a new approval. The kernel loop never
waits on a person: a callback that returns an awaitable runs as a task, like device I/O.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import json
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..abi.errors import PolicyDenied
from ..kernel.events import canonical
from ..abi.types import WaitKind
from ..kernel.process import EXITED

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel
    from ..kernel.process import Process

DEFAULT_TIMEOUT_MS = 30_000.0


def args_key(action: str, args: Any) -> str:
    return action + "\x00" + json.dumps(canonical(args), sort_keys=True, separators=(",", ":"))


@dataclass
class ApprovalRequest:
    id: str
    pid: int
    name: str
    action: str
    args: Any
    rule: str
    reason: str
    deadline: float                       # kernel clock ms
    key: str = field(repr=False, default="")
    req: Any = field(repr=False, default=None)
    decision: Any = field(repr=False, default=None)
    timer: Any = field(repr=False, default=None)
    outside: bool = field(repr=False, default=False)
    timeout_ms: float = 0.0

    def view(self, now: float) -> dict[str, Any]:
        return {"id": self.id, "pid": self.pid, "process": self.name, "action": self.action,
                "args": self.args, "rule": self.rule, "reason": self.reason,
                "expires_in_ms": max(0.0, self.deadline - now)}


Callback = Callable[[ApprovalRequest], Any]


class ApprovalChannel:
    """Pending approvals and the ways they are answered. Give it to `Kernel(approvals=...)`."""

    def __init__(self, callback: Callback | None = None, *, timeout_ms: float = DEFAULT_TIMEOUT_MS) -> None:
        self.callback = callback
        self.timeout_ms = timeout_ms
        self.pending: dict[str, ApprovalRequest] = {}
        self.grants: dict[int, list[str]] = {}
        self.outside = 0                  # live outside channels (HTTP servers, prompts)
        self.k: Kernel | None = None
        self.answered = 0

    def attach(self, kernel: "Kernel") -> None:
        self.k = kernel

    # -- called by the kernel's chokepoint ------------------------------------------------
    def ask(self, proc: "Process", action: str, args: Any, decision: Any, req: Any) -> bool:
        """True: approved (a grant was waiting, or the callback said yes at once); False:
        the process is parked until an answer. A refusal raises PolicyDenied."""
        k = self.k
        assert k is not None, "ApprovalChannel.attach(kernel) was not called"
        key = args_key(action, args)
        granted = self.grants.get(proc.pid)
        if granted and key in granted:
            granted.remove(key)
            if not granted:
                del self.grants[proc.pid]
            consume = getattr(k.policy, "consume", None)
            if consume is not None:
                consume(proc.pid, decision)
            return True
        if type(req).__name__ == "ReadAll":
            raise PolicyDenied(decision.rule, f"{action} requires approval, which read_all cannot wait "
                                              f"for: issue it with read")
        now = k.clock.now()
        timeout = (decision.extra or {}).get("timeout_ms") or self.timeout_ms
        # seeded in deterministic kernels so the event log replays byte for byte
        rid = f"{k.rng.getrandbits(96):024x}" if k.config.deterministic else secrets.token_hex(12)
        # the person sees a snapshot: the caller's live objects may change while it waits,
        # and then the rerun's arguments no longer match the grant
        r = ApprovalRequest(rid, proc.pid, proc.name, action, canonical(args), decision.rule, decision.reason,
                            now + timeout, key, req, decision, timeout_ms=timeout)
        self._audit(proc.pid, "approval_request", {"id": rid, "action": action, "args": args,
                                                   "rule": decision.rule, "timeout_ms": timeout})
        answer: Any = None
        if self.callback is not None:
            try:
                answer = self.callback(r)
            except Exception as e:
                self._audit(proc.pid, "approval", {"id": rid, "approved": False, "by": "callback",
                                                   "why": f"callback raised {type(e).__name__}: {e}"})
                raise PolicyDenied(decision.rule, f"{action}: the approval callback failed: {e}") from None
        if answer is True or answer is False:
            self._audit(proc.pid, "approval", {"id": rid, "approved": answer, "by": "callback"})
            self.answered += 1
            if answer:
                consume = getattr(k.policy, "consume", None)
                if consume is not None:
                    consume(proc.pid, decision)
                return True
            raise PolicyDenied(decision.rule, f"{action}: approval refused (callback)")
        # park: wait for an awaitable callback, an outside channel, or the timeout
        self.pending[rid] = r
        r.timer = k.timers.add(r.deadline, self._timed_out, rid)
        if inspect.isawaitable(answer):
            r.outside = True
            task = asyncio.ensure_future(answer)
            task.add_done_callback(functools.partial(self._callback_done, rid))
        elif self.outside:
            r.outside = True     # a person may answer: the kernel loop keeps listening
        k.park(proc, WaitKind.APPROVAL, functools.partial(self._withdraw, rid), held=r.outside)
        return False

    # -- answers ----------------------------------------------------------------------
    def answer(self, rid: str, approved: bool, by: str = "operator") -> bool:
        """Answer a pending request. False if there is no such request (already answered)."""
        r = self.pending.pop(rid, None)
        if r is None:
            return False
        k = self.k
        assert k is not None
        k.timers.cancel(r.timer)
        self.answered += 1
        self._audit(r.pid, "approval", {"id": rid, "approved": bool(approved), "by": by})
        proc = k.procs.get(r.pid)
        if proc is None or proc.state is EXITED or proc.wait_kind is not WaitKind.APPROVAL:
            return True
        if approved is True:
            self.grants.setdefault(r.pid, []).append(r.key)
            if proc.stopped:  # SIGSTOP: the approved action runs at SIGCONT, not now
                k.hold_until_continued(proc, WaitKind.APPROVAL,
                                       functools.partial(k.retry_syscall, proc, r.req),
                                       functools.partial(self._drop_grant, r.pid, r.key))
                return True
            k.retry_syscall(proc, r.req)
        else:
            k.wake(proc, None, PolicyDenied(r.rule, f"{r.action}: approval refused by {by}"))
        return True

    def _timed_out(self, rid: str) -> None:
        r = self.pending.get(rid)
        if r is None:
            return
        r.timer = None
        k = self.k
        assert k is not None
        self.pending.pop(rid, None)
        self._audit(r.pid, "approval", {"id": rid, "approved": False, "by": "timeout"})
        proc = k.procs.get(r.pid)
        if proc is not None and proc.state is not EXITED and proc.wait_kind is WaitKind.APPROVAL:
            k.wake(proc, None, PolicyDenied(r.rule, f"{r.action}: no approval within "
                                            f"{r.timeout_ms:.0f} ms; denied"))

    def _callback_done(self, rid: str, task: "asyncio.Future[Any]") -> None:
        if rid not in self.pending:
            return
        if task.cancelled() or task.exception() is not None:
            self.answer(rid, False, "callback (failed)")
            return
        self.answer(rid, task.result() is True, "callback")

    def _withdraw(self, rid: str, proc: Any) -> bool:
        """The abort of an approval wait: the process ended or was interrupted."""
        r = self.pending.pop(rid, None)
        if r is None or self.k is None:
            return True
        self.k.timers.cancel(r.timer)
        why = "process ended" if proc.state is EXITED else "process interrupted"
        self._audit(r.pid, "approval", {"id": rid, "approved": False, "by": why})
        self.grants.pop(r.pid, None)
        return True

    def _drop_grant(self, pid: int, key: Any, proc: Any) -> bool:
        """An approved action held for a stopped process that ended first: the grant lapses."""
        keys = self.grants.get(pid)
        if keys and key in keys:
            keys.remove(key)
            if not keys:
                del self.grants[pid]
        return True

    def list(self) -> list[dict[str, Any]]:
        now = self.k.clock.now() if self.k is not None else 0.0
        return [r.view(now) for r in self.pending.values()]

    def _audit(self, pid: int, kind: str, data: dict[str, Any]) -> None:
        k = self.k
        if k is None:
            return
        k.events.emit(pid, kind, (data.get("id"), data.get("approved"), data.get("by")))
        audit = getattr(k, "audit", None)
        if audit is not None:
            audit.append(pid, kind, data)
