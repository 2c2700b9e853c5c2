"""The daemon's policy, narrowed per submission.

Every action is checked by the daemon's own policy first. A submitted program may bring
its own (`POLICY`): then its process and every descendant are also checked by that one,
and the stricter answer wins. A submission can therefore only narrow what the daemon
allows, never widen it.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from ..abi.policy import Decision
from ..kernel.decision import NoPolicy
from ..kernel.observer import Observer


class SubmissionPolicy(Observer):
    """Base policy plus per-subtree narrowing. An observer of the kernel (spawn/exit) so
    that a submission's descendants inherit its extra policy."""

    def __init__(self, base: Any = None) -> None:
        self.base = base if base is not None else NoPolicy()
        self.extra: dict[int, list[Any]] = {}
        # decisions by (allowed, effect): what /metrics reports (the event log has no effect)
        self.decisions: Counter[tuple[bool, str]] = Counter()
        gov = getattr(self.base, "governs_kernel", None)
        if gov is not None:
            self.governs_kernel = frozenset(gov)

    # What a kernel reads of its policy besides `check`: the base policy's, so a daemon
    # served with a policy file runs by its `scheduling:` and `trust:` sections and its
    # ontology, as `agentctl run` with the same file does.
    @property
    def scheduling(self) -> Any:
        """The base policy's `scheduling:` section (a SchedConfig), or None."""
        return getattr(self.base, "scheduling", None)

    @property
    def trust_settings(self) -> Any:
        """The base policy's `trust:` section (TrustSettings), or None."""
        return getattr(self.base, "trust_settings", None)

    @property
    def ontology(self) -> Any:
        """The base policy's ontology (class rules, discovery by class), or None."""
        return getattr(self.base, "ontology", None)

    def attach(self, kernel: Any) -> None:
        attach = getattr(self.base, "attach", None)
        if attach is not None:
            attach(kernel)

    def check_driver(self, name: str, driver: Any) -> None:
        check = getattr(self.base, "check_driver", None)
        if check is not None:
            check(name, driver)

    def watch(self, kernel: Any) -> None:
        kernel.add_observer(self)

    def narrow(self, pid: int, policy: Any) -> None:
        """Check `pid` (and the children it will have) against `policy` too."""
        if not callable(getattr(policy, "check", None)):
            raise TypeError(f"a program's POLICY must have check(pid, action, args), got {type(policy).__name__}")
        self.extra.setdefault(pid, []).append(policy)

    def spawned(self, proc: Any) -> None:
        parent = proc.parent
        if parent is not None and parent.pid in self.extra:
            self.extra[proc.pid] = list(self.extra[parent.pid])

    def exited(self, proc: Any, reason: Any) -> None:
        self.extra.pop(proc.pid, None)

    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
        d = self._check(pid, action, args, dry_run)
        eff = d.effect if isinstance(d.effect, str) and d.effect in EFFECTS else "other"
        self.decisions[(bool(d.allowed), eff)] += 1
        return d

    def _check(self, pid: int, action: str, args: Any, dry_run: bool) -> Decision:
        d: Decision = self.base.check(pid, action, args, dry_run=dry_run)
        if not d.allowed:
            return d
        for pol in self.extra.get(pid, ()):
            d2: Decision = pol.check(pid, action, args, dry_run=dry_run)
            if not d2.allowed:
                return d2
        return d


EFFECTS = frozenset({"allow", "log", "kill", "raise", "approve"})
"""A decision's effects (abi.policy.Decision): a closed label set for /metrics."""


__all__ = ["SubmissionPolicy"]
