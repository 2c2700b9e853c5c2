"""The MMU: a process's context window as a paged address space of segments.

Resident segments are charged to the `mem` resource (in tokens). When a `remember` would
pass the process's `mem` limit, the `Pager` chooses victims (by default the oldest
unpinned segments) and may leave one summary segment in their place; victims go to swap
and come back through `recall`. If pinned segments alone cannot fit, the process is
killed with `quota(mem)` (OOM). The recaller indexes resident and swapped segments alike.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

from ..abi.errors import BadArgument, SyscallError
from ..abi.syscalls import Forget, Pin, Recall, Remember, WorkingSet
from ..abi.types import COST_MAX, Segment, SegmentKind, quota
from . import args as A
from .events import deep, dumps_canonical
from .values import canonical_checked, checked
from .process import PARK
from .recall import KeywordRecaller, Recaller, terms

if TYPE_CHECKING:
    from .kernel import Kernel
    from .process import Process



def kernel_text(what: str, body: Any) -> str:
    """A body as the kernel measures and indexes it: a str as it is, anything else as its
    canonical JSON text. The body is checked for encodability on the way (`BadArgument`),
    and no method of the caller's objects runs again after this."""
    t = type(body)
    if t is str:
        return A.text(what, body)
    if t is int or t is float or t is bool or body is None:
        return str(checked(what, body))
    return deep(dumps_canonical, canonical_checked(what, body))


def estimate_tokens(body: Any) -> int:
    """About four characters a token, never zero: a cheap stand-in for a tokenizer."""
    text = body if isinstance(body, str) else str(body)
    return len(text) // 4 + 1


class Pager(Protocol):
    def victims(self, space: "MemorySpace", need: int) -> list[Segment]:
        """Resident, unpinned segments to evict, oldest first."""
        ...

    def summarize(self, evicted: list[Segment]) -> tuple[Any, int] | None:
        """(body, tokens) of a summary segment to leave behind, or None."""
        ...


class DropOldestPager:
    """Evicts the oldest unpinned segments and leaves a short extractive summary."""

    def __init__(self, summary: bool = True, summary_tokens: int = 16, words_each: int = 4) -> None:
        self.summary = summary
        self.summary_tokens = summary_tokens
        self.words_each = words_each

    def victims(self, space: "MemorySpace", need: int) -> list[Segment]:
        out: list[Segment] = []
        freed = 0
        target = need + (self.summary_tokens if self.summary else 0)
        for seg in space.resident.values():
            if seg.kind is SegmentKind.PINNED:
                continue
            out.append(seg)
            freed += seg.tokens
            if freed >= target:
                break
        return out

    def summarize(self, evicted: list[Segment]) -> tuple[Any, int] | None:
        if not self.summary or not evicted:
            return None
        freed = sum(s.tokens for s in evicted)
        if freed <= self.summary_tokens:
            return None
        parts = [" ".join(terms(s.body)[: self.words_each]) for s in evicted]
        body = f"[summary of {len(evicted)} segments] " + " | ".join(parts)
        return body[: self.summary_tokens * 4 - 4], self.summary_tokens


def _copy(s: Segment) -> Segment:
    """What a process gets back: a copy, so it cannot edit the kernel's accounting."""
    return Segment(s.id, s.body, s.tokens, s.kind, s.created, s.covers)


class MemorySpace:
    __slots__ = ("resident", "swap", "next_id", "recaller", "resident_tokens", "summaries")

    def __init__(self, recaller: Recaller) -> None:
        self.summaries = 0  # summary segments ever made here (recall ranks only if any)
        self.resident: dict[int, Segment] = {}
        self.swap: dict[int, Segment] = {}
        self.next_id = 1
        self.recaller = recaller
        self.resident_tokens = 0


class MemoryManager:
    """Syscall handlers for the memory group."""

    def __init__(self, kernel: "Kernel", pager: Pager | None = None,
                 recaller_factory: Callable[[], Recaller] | None = None) -> None:
        self.k = kernel
        self.pager: Pager = pager or DropOldestPager()
        self.recaller_factory: Callable[[], Recaller] = recaller_factory or KeywordRecaller
        self.evictions = 0

    def handlers(self) -> dict[type, Callable[..., Any]]:
        return {Remember: self.sys_remember, WorkingSet: self.sys_working_set,
                Recall: self.sys_recall, Forget: self.sys_forget, Pin: self.sys_pin}

    def space(self, proc: "Process") -> MemorySpace:
        sp = proc.memory
        if sp is None:
            sp = proc.memory = MemorySpace(self.recaller_factory())
        return sp

    # -- handlers -------------------------------------------------------------------
    def sys_remember(self, proc: "Process", req: Remember) -> Any:
        # The kernel counts a segment's size itself; a caller's count may only raise it, so
        # a megabyte claimed to be 0 tokens is still charged as a megabyte.
        body = req.body
        t = type(body)
        if t is str and body.isascii():
            text = body
        elif t is int and -(1 << 62) < body < (1 << 62):
            text = str(body)
        else:
            text = kernel_text("remember: body", body)
        tokens = len(text) // 4 + 1
        claimed = req.tokens
        if claimed is not None:
            if type(claimed) is not int or not 0 <= claimed <= COST_MAX:
                claimed = A.integer("remember: tokens", claimed, minimum=0, maximum=COST_MAX)
            if claimed > tokens:
                tokens = claimed
        if req.pin is not False and req.pin is not True:
            A.flag("remember: pin", req.pin)
        sp = self.space(proc)
        sid = sp.next_id
        sp.next_id = sid + 1
        seg = Segment(sid, req.body, tokens, SegmentKind.PINNED if req.pin else SegmentKind.TOKENS,
                      self.k.clock.now())
        if not self._make_room(proc, sp, tokens):
            return self._oom(proc, sp, tokens)
        sp.resident[sid] = seg
        sp.resident_tokens += tokens
        sp.recaller.add(sid, text if type(req.body) is not str else req.body)
        return sid

    def sys_working_set(self, proc: "Process", req: WorkingSet) -> list[Segment]:
        sp = proc.memory
        if sp is None:
            return []
        return [_copy(s) for s in sp.resident.values()]

    def sys_recall(self, proc: "Process", req: Recall) -> list[Segment]:
        k = A.integer("recall: k", req.k, maximum=1_000_000)
        query = req.query if type(req.query) is str and req.query.isascii() else \
            kernel_text("recall: query", req.query)
        sp = proc.memory
        if sp is None or k <= 0:
            return []
        if sp.summaries:
            ids = self._rank(sp, sp.recaller.search(query, 2 * k + 4), k)
        else:
            ids = sp.recaller.search(query, k)
        out: list[Segment] = []
        wanted = set(ids)
        for sid in ids:
            seg = sp.resident.get(sid)
            if seg is None:
                seg = sp.swap.get(sid)
                if seg is None:
                    continue
                if self._make_room(proc, sp, seg.tokens, keep=wanted):
                    del sp.swap[sid]
                    sp.resident[sid] = seg
                    sp.resident_tokens += seg.tokens
                    self.k.events.emit(proc.pid, "page_in", (sid, seg.tokens))
            out.append(_copy(seg))
        return out

    @staticmethod
    def _rank(sp: MemorySpace, ids: list[int], k: int) -> list[int]:
        """Originals before summaries: a summary is a lossy stand-in for what recall can fetch."""
        def is_summary(sid: int) -> bool:
            seg = sp.resident.get(sid) or sp.swap.get(sid)
            return seg is not None and seg.kind is SegmentKind.SUMMARY
        return sorted(ids, key=is_summary)[:k]

    def sys_forget(self, proc: "Process", req: Forget) -> bool:
        sp = proc.memory
        sid = A.integer("forget: segment id", req.segment_id, minimum=0, maximum=1 << 62)
        if sp is None:
            raise SyscallError(f"forget: pid {proc.pid} has no segment {sid}")
        seg = sp.resident.pop(sid, None)
        if seg is not None:
            sp.resident_tokens -= seg.tokens
            self.k.accounts.mem_give(proc.account, seg.tokens)  # type: ignore[arg-type]
        elif sp.swap.pop(sid, None) is None:
            raise SyscallError(f"forget: pid {proc.pid} has no segment {sid}")
        sp.recaller.remove(sid)
        return True

    def sys_pin(self, proc: "Process", req: Pin) -> bool:
        sp = proc.memory
        on = A.flag("pin: on", req.on)
        sid = A.integer("pin: segment id", req.segment_id, minimum=0, maximum=1 << 62)
        seg = sp.resident.get(sid) if sp is not None else None
        if seg is None:
            raise SyscallError(f"pin: segment {sid} is not resident in pid {proc.pid} "
                               f"(recall it first)")
        seg.kind = SegmentKind.PINNED if on else SegmentKind.TOKENS
        return True

    # -- paging ---------------------------------------------------------------------
    def _make_room(self, proc: "Process", sp: MemorySpace, tokens: int,
                   keep: set[int] | None = None) -> bool:
        accounts = self.k.accounts
        acct = proc.account
        if accounts.mem_take(acct, tokens):  # type: ignore[arg-type]
            return True
        for _ in range(64):
            victims = self.pager.victims(sp, tokens)
            if keep:
                victims = [v for v in victims if v.id not in keep]
            if not victims:
                return False
            self._evict(proc, sp, victims)
            if accounts.mem_take(acct, tokens):  # type: ignore[arg-type]
                return True
        return False

    def _evict(self, proc: "Process", sp: MemorySpace, victims: list[Segment]) -> None:
        accounts = self.k.accounts
        acct = proc.account
        freed = 0
        for seg in victims:
            del sp.resident[seg.id]
            sp.swap[seg.id] = seg
            freed += seg.tokens
        sp.resident_tokens -= freed
        accounts.mem_give(acct, freed)  # type: ignore[arg-type]
        self.evictions += len(victims)
        summary = self.pager.summarize(victims)
        covered = tuple(v.id for v in victims)
        self.k.events.emit(proc.pid, "page_out", (covered, freed))
        if summary is not None:
            body, stokens = summary
            if accounts.mem_take(acct, stokens):  # type: ignore[arg-type]
                sid = sp.next_id
                sp.next_id = sid + 1
                seg = Segment(sid, body, stokens, SegmentKind.SUMMARY, self.k.clock.now(), covered)
                sp.summaries += 1
                sp.resident[sid] = seg
                sp.resident_tokens += stokens
                sp.recaller.add(sid, body)

    def _oom(self, proc: "Process", sp: MemorySpace, tokens: int) -> Any:
        pinned = sum(s.tokens for s in sp.resident.values() if s.kind is SegmentKind.PINNED)
        self.k.events.emit(proc.pid, "oom", (pinned, tokens))
        self.k.terminate(proc, quota("mem"))
        return PARK

    def release(self, proc: "Process") -> None:
        """The process is exiting: give its resident tokens back."""
        sp = proc.memory
        if sp is None:
            return
        if sp.resident_tokens:
            self.k.accounts.mem_give(proc.account, sp.resident_tokens)  # type: ignore[arg-type]
        proc.memory = None
