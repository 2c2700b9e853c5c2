"""Record and replay of everything that enters a run from outside the program.

A run's outside inputs are driver results (journaled by `devices`), policy decisions
(approvals and rate limits depend on people and wall time) and the scheduler tick at
which an asynchronous driver result arrived. Recording wraps the kernel's policy in a
`DecisionRecorder`; replay swaps in a `JournalPolicy` that answers each check from the
journal, and parks a process on a replayed asynchronous op until the recorded tick.

Invariant: with the same seed, image, args and grants under a `VirtualClock`, a replaying
kernel emits the byte-identical event log and never calls a driver. Anything the program
asks that the recorded run did not do raises `NondeterminismError` saying where.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..abi.errors import NondeterminismError
from .events import canonical, dumps_canonical
from .journal import Journal, JournalEntry
from .recording import encode_value

if TYPE_CHECKING:
    from .kernel import Decision, Kernel
    from .process import Process


EVERY_KERNEL_ACTION = frozenset({"spawn", "send", "signal", "vfs"})  # asked about when a policy does not say

_DECISION_JSON = ('{"action":%s,"at":null,"device":"","error_type":null,"index":%d,"ok":%s,'
                  '"op":"policy","pid":%d,"reductions":0,"request":null,"tokens":0,"tool_calls":0,'
                  '"usd":0.0,"value":%s}')  # JournalEntry.to_json's layout, prebuilt: one per policy check


def policy_name(policy: Any) -> str:
    """How a run names the policy it was recorded under: its class's import path."""
    t = type(policy)
    return f"{t.__module__}.{t.__qualname__}"


def constant_of(policy: Any) -> "Decision | None":
    """The allow a policy gives every action, if it declares one (`constant_decision`)."""
    from ..abi.policy import Decision

    d = getattr(type(policy), "constant_decision", None)
    return d if isinstance(d, Decision) and d.allowed and d.effect == "allow" and not d.extra else None


RUN_POLICY = "run_policy"
"""Journal op naming a constant policy whose device-operation allows were not journaled."""


class DecisionRecorder:
    """Wraps a live policy: every answer is journaled as an op "policy" entry, except the
    allow of a device operation under a policy that gives every action the same allow
    (`constant_decision`): the operation's own entry names the action, and one "run_policy"
    entry names the policy, so that replay answers those checks as it did, and refuses to
    replay under another policy."""

    __slots__ = ("inner", "journal", "_count", "_values", "_actions", "constant", "_named", "deferred")

    def __init__(self, inner: Any, journal: Journal) -> None:
        self.inner = inner
        self.journal = journal
        governs = getattr(inner, "governs_kernel", None)  # what the kernel will ask this policy about
        journal.governs = frozenset(governs) if governs is not None else EVERY_KERNEL_ACTION
        self._count: dict[int, int] = {}
        self._values: dict[tuple[Any, ...], tuple[dict[str, Any], str]] = {}
        self._actions: dict[str, str] = {}
        self.constant = constant_of(inner)
        self._named = False
        # pid -> actions of device ops allowed under the constant policy whose entries are
        # not yet journaled: dropped when the op's entry names its action (`carried`), else
        # journaled as decisions (`flush`) so that replay reads them as before
        self.deferred: dict[int, list[str]] = {}

    def check_carried(self, pid: int, action: str, args: Any) -> "Decision":
        """A check whose operation's journal entry should carry the action (a device read or
        write): under a constant policy, its answer, with the decision entry held back."""
        d = self.constant
        if d is None:
            return self.check(pid, action, args)
        if not self._named:  # before the first held-back decision, so every journal has it
            self._named = True
            self.journal.record(JournalEntry(0, 0, RUN_POLICY, "", None, None, True,
                                             {"policy": policy_name(self.inner), "rule": d.rule}))
        q = self.deferred.get(pid)
        if q is None:
            self.deferred[pid] = [action]
        else:
            q.append(action)
        return d

    def carried(self, pid: int) -> None:
        """The oldest held-back decision of `pid` is named by its op's entry: no entry of its own."""
        q = self.deferred.get(pid)
        if q:
            q.pop(0)
            if not q:
                del self.deferred[pid]

    def flush(self, pid: int | None = None) -> None:
        """Journal the held-back decisions of `pid` (None: of every pid), in order."""
        d = self.constant
        assert d is not None
        for p in ([pid] if pid is not None else sorted(self.deferred)):
            for action in self.deferred.pop(p, ()):
                self._record(p, action, d, False)

    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> "Decision":
        if self.deferred and pid in self.deferred:
            self.flush(pid)  # decisions stay in the order they were made
        d = self.inner.check(pid, action, args, dry_run=dry_run)
        self._record(pid, action, d, dry_run)
        return d

    def _record(self, pid: int, action: str, d: "Decision", dry_run: bool) -> None:
        n = self._count.get(pid, 0)
        self._count[pid] = n + 1
        key = (d.rule, d.reason, d.effect, dry_run) if not d.extra else None
        cached = self._values.get(key) if key is not None else None
        if cached is None:
            value = {"dry_run": dry_run, "effect": d.effect, "extra": canonical(d.extra),  # sorted keys:
                     "reason": d.reason, "rule": d.rule}  # stored as a plain JSON object
            cached = (value, dumps_canonical(encode_value(value)))
            if key is not None and len(self._values) < 4096:
                self._values[key] = cached
        aj = self._actions.get(action)
        if aj is None:
            aj = dumps_canonical(canonical(action))
            if len(self._actions) < 4096:
                self._actions[action] = aj
        ok = bool(d.allowed)
        journal = self.journal
        # the prebuilt JSON only matters to a sink (a store); to_json builds the same bytes
        raw = _DECISION_JSON % (aj, n, "true" if ok else "false", pid, cached[1]) if journal.sinks else None
        journal.record(JournalEntry(pid, n, "policy", "", action, None, ok, cached[0], raw=raw))

    def __getattr__(self, name: str) -> Any:  # approvals, rules, ... of the real engine
        return getattr(self.inner, name)


class JournalPolicy:
    """Answers policy checks in replay from the recorded decisions, pid by pid, in order."""

    __slots__ = ("journal", "_next", "inner", "_constant")

    def __init__(self, journal: Journal, inner: Any = None) -> None:
        self.journal = journal
        self.inner = inner
        self._next: dict[int, int] = {}
        self._constant: "Decision | None" = None

    def check_carried(self, pid: int, action: str, args: Any) -> "Decision":
        """A device operation's check: from the recorded constant policy when the live run
        journaled none for it (refused if this replay runs under another policy), else from
        the recorded decisions."""
        named = self.journal.run_policy
        if named is None:
            return self.check(pid, action, args)
        d = self._constant
        if d is None:
            mine = policy_name(self.inner) if self.inner is not None else "no policy"
            d = constant_of(self.inner) if self.inner is not None else None
            if mine != named.get("policy") or d is None or d.rule != named.get("rule"):
                raise NondeterminismError(
                    f"replay refused: the run was recorded under policy {named.get('policy')!r}, whose "
                    f"allows of device operations were not journaled; this replay runs under {mine!r}. "
                    f"Replay it under {named.get('policy')!r}")
            self._constant = d
        return d

    def peek_action(self, pid: int, ahead: int = 0) -> str | None:
        """The action of the `ahead`-th decision still to come for `pid` (None: no more)."""
        rows = self.journal.decisions.get(pid, ())
        i = self._next.get(pid, 0) + ahead
        return rows[i].action if i < len(rows) else None

    @property
    def governs_kernel(self) -> frozenset[str]:
        """The kernel actions the recorded run asked policy about, so replay asks the same:
        as recorded, or (a journal that does not say) inferred from its decisions. Inference
        can be fooled: a device whose actions are named "vfs.*" looks like a governed VFS."""
        if self.journal.governs is not None:
            return self.journal.governs
        out: set[str] = set()
        for rows in self.journal.decisions.values():
            for e in rows:
                a = e.action if isinstance(e.action, str) else ""
                if a in ("spawn", "send"):
                    out.add(a)
                elif a.startswith(("signal.", "vfs.")):
                    out.add(a.split(".", 1)[0])
        return frozenset(out)

    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> "Decision":
        from .kernel import Decision

        rows = self.journal.decisions.get(pid, ())
        i = self._next.get(pid, 0)
        if i >= len(rows):
            raise NondeterminismError(
                f"replay diverged at pid {pid} policy check #{i}: the program asked about "
                f"{action!r}, but the recorded run made no further policy check for this pid")
        e = rows[i]
        v = e.value if isinstance(e.value, dict) else {}
        if e.action != action or bool(v.get("dry_run")) != bool(dry_run):
            raise NondeterminismError(
                f"replay diverged at pid {pid} policy check #{i}: recorded {e.action!r} "
                f"(dry_run={bool(v.get('dry_run'))}), replay asked about {action!r} (dry_run={dry_run})")
        self._next[pid] = i + 1
        return Decision(bool(e.ok), v.get("rule", "default"), v.get("reason", ""),
                        v.get("effect", "allow"), dict(v.get("extra") or {}))

    def __getattr__(self, name: str) -> Any:
        if self.inner is None:
            raise AttributeError(name)
        return getattr(self.inner, name)


def wrap_policy(kernel: "Kernel", policy: Any) -> Any:
    """The object the kernel consults: recorded in live mode, answered from the journal in replay."""
    if isinstance(policy, (DecisionRecorder, JournalPolicy)):
        return policy
    if kernel.replaying:
        assert kernel.journal is not None
        return JournalPolicy(kernel.journal, policy)
    if kernel.journal is not None:
        return DecisionRecorder(policy, kernel.journal)
    return policy


class ReplayPending:
    """Stands in for the asyncio task(s) of an op whose recorded result arrived later."""

    __slots__ = ("proc", "entries", "many", "at", "cancelled")

    def __init__(self, proc: "Process", entries: list[JournalEntry], many: bool, at: int) -> None:
        self.proc = proc
        self.entries = entries
        self.many = many
        self.at = at
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True  # `Devices._abandon` frees the in-flight slot


class ReplayIO:
    """Delivers replayed asynchronous results at the kernel I/O tick they were recorded at."""

    def __init__(self, kernel: "Kernel") -> None:
        self.k = kernel
        self.pending: dict[int, list[ReplayPending]] = {}
        assert kernel.journal is not None
        self.order = {id(e): i for i, e in enumerate(kernel.journal.entries)}
        self.jumps = dict(kernel.journal.jumps)  # I/O tick -> virtual time (autojump), consumed

    def schedule(self, proc: "Process", entries: list[JournalEntry], many: bool) -> ReplayPending:
        """Hold these recorded results until the I/O tick the live run applied them at;
        the caller parks on the returned stand-in (see ReplayDevices)."""
        at = max(e.at for e in entries if e.at is not None)
        if at <= self.k.io_tick:
            raise NondeterminismError(
                f"replay diverged at pid {proc.pid} op #{entries[0].index}: its result arrived at "
                f"I/O tick {at}, but the replay is already at tick {self.k.io_tick}")
        p = ReplayPending(proc, entries, many, at)
        self.pending.setdefault(at, []).append(p)
        return p

    def tick(self, tick: int, idle: bool) -> None:
        """Apply, in recorded order, the completions the live run saw at this tick."""
        items = self.pending.pop(tick, None)
        stale = [t for t in self.pending if t < tick]
        if stale:
            raise NondeterminismError(f"replay diverged: results recorded at I/O tick {min(stale)} "
                                      f"were never delivered (the replay is at tick {tick})")
        jumps = self.jumps
        if jumps:
            late = [t for t in jumps if t < tick]
            if late:
                raise NondeterminismError(f"replay diverged: virtual time jumped at I/O tick "
                                          f"{min(late)} in the recorded run, the replay passed "
                                          f"that tick without waiting (it is at tick {tick})")
            if tick in jumps:
                if items or not idle:
                    raise NondeterminismError(
                        f"replay diverged at I/O tick {tick}: the recorded run waited on I/O "
                        f"there until virtual time jumped, the replay "
                        f"{'got results' if items else 'had processes to run'}")
                self.k.apply_clock_jump(jumps.pop(tick))
                return
        if not items:
            if idle and not self.pending:
                raise NondeterminismError(f"replay diverged at I/O tick {tick}: the replay waits for "
                                          f"I/O that the recorded run never completed")
            return
        order = self.order  # live order is the order results were journaled
        for item in sorted(items, key=lambda p: order.get(id(p.entries[0]), 0)):
            self.k.devices.replay_done(item)  # type: ignore[attr-defined]  # ReplayDevices


__all__ = ["RUN_POLICY", "DecisionRecorder", "JournalPolicy", "ReplayIO", "ReplayPending", "constant_of",
           "policy_name", "wrap_policy"]
