"""Observers and extensions: the one way code outside the kernel plugs into a kernel.

An `Observer` (in the spirit of curio's `Activation`) watches a kernel: it is told when
it is attached, when the kernel boots, when a process is spawned or exits, when SIGUSR1
asks for a checkpoint, and it may receive the event log and the journal as they are
written. The run recorder (`agentos.store.record_run`), the VFS's checkpoint files and
tracers are observers. Register one with `Kernel.add_observer(obs)`; override only the
methods you need. A hook the observer does not override costs the kernel nothing: the
kernel keeps a list of overriding callables per hook, and an empty list is one truth
test on the spawn and exit paths and nothing at all on the syscall path.

An *extension* is a callable `install(kernel)` run at the end of `Kernel.__init__`.
`KernelConfig.extensions` lists them; left at None, a kernel runs the default ones,
which the `agentos` package registers with `default_extension` (the VFS is one). The
kernel itself imports none of them, so the kernel package never depends on what is
built on top of it. What an extension installs is kept in `kernel.extensions[name]`.

Invariants: hooks run on the kernel's thread, inside the dispatch loop; they must not
block. An exception from `spawned`, `exited` or `checkpoint` is recorded as an
`observer_error` event and never breaks the kernel's bookkeeping; one from `booted`
(or `attached`) propagates to whoever called `boot`/`add_observer`: the run is refused
before any process ran.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..abi.types import ExitReason, Quota

if TYPE_CHECKING:
    from .events import Event
    from .journal import JournalEntry
    from .kernel import Kernel
    from .process import Process


@dataclass(frozen=True)
class BootInfo:
    """How `Kernel.boot` was called: what a recorder needs to boot the same run again."""

    args: Any
    grant: tuple[str, ...]
    quota: Quota | None
    name: str | None
    priority: int | None


class Observer:
    """Watches a kernel. Every method here does nothing; override what you need."""

    def attached(self, kernel: "Kernel") -> None:
        """`kernel.add_observer(self)` was called (before any other hook)."""

    def booted(self, kernel: "Kernel", init: "Process", boot: BootInfo) -> None:
        """`init` exists with its grants and budget and has not run yet."""

    def spawned(self, proc: "Process") -> None:
        """`proc` was created (init included) and is ready to run."""

    def exited(self, proc: "Process", reason: ExitReason) -> None:
        """`proc` ended and every resource it held was returned."""

    def checkpoint(self, proc: "Process") -> str | None:
        """SIGUSR1 asked for a checkpoint of `proc`: take it. The kernel then writes one
        `checkpoint` event; its data is the first label an observer returns (None if none)."""
        return None

    def flushed(self, batch: "list[Event]") -> None:
        """A batch of events reached the log (stamped with their sequence numbers)."""

    def journaled(self, entry: "JournalEntry") -> None:
        """A journal entry was recorded (live mode only; a replaying kernel reads its journal)."""


HOOKS = ("spawned", "exited", "checkpoint", "flushed", "journaled")
"""The hooks a kernel wires only when an observer overrides them."""


def overrides(obs: Observer, hook: str) -> bool:
    """Whether `obs` does something on `hook` (a plain `Observer` method does nothing)."""
    mine = getattr(type(obs), hook, None)
    return mine is not None and mine is not getattr(Observer, hook)


Extension = Callable[["Kernel"], Any]
"""`install(kernel)`: run at the end of `Kernel.__init__`; its return value is kept in
`kernel.extensions` under the extension's name."""

_DEFAULTS: dict[str, Extension] = {}


def default_extension(name: str, install: Extension) -> None:
    """Run `install(kernel)` in every kernel built with `KernelConfig.extensions=None`.

    Registering a name again replaces the earlier installer (so re-imports are harmless)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an extension needs a non-empty name, got {name!r}")
    if not callable(install):
        raise TypeError(f"extension {name!r}: install must be callable, got {type(install).__name__}")
    _DEFAULTS[name] = install


def default_extensions() -> dict[str, Extension]:
    """The extensions a kernel built with `extensions=None` runs, by name, in order."""
    return dict(_DEFAULTS)


__all__ = ["BootInfo", "Extension", "HOOKS", "Observer", "default_extension", "default_extensions",
           "overrides"]
