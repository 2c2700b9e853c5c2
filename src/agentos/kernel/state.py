"""The kernel's state, declared once for the type checker.

`Kernel` is assembled from mixins (lifecycle, handlers, introspection) that share this
state; each mixin inherits these declarations so that its `self.x` is typed. Nothing here
exists at run time but the annotations: `Kernel.__init__` creates every attribute.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .accounts import Accounts
    from .caps import CapTable
    from .clock import Clock
    from .devices import Devices
    from .events import EventLog
    from .ipc import IPC
    from .journal import Journal
    from .observer import Observer
    from .kernel import KernelConfig
    from .memory import MemoryManager
    from .metrics import Metrics
    from .process import Process, ProcessImage
    from .scheduler import RunQueue, Timers


class KernelState:
    config: "KernelConfig"
    clock: "Clock"
    events: "EventLog"
    caps: "CapTable"
    accounts: "Accounts"
    runq: "RunQueue"
    timers: "Timers"
    _on_abort_timer: "Callable[[Process], bool]"
    procs: "dict[int, Process]"
    names: "dict[str, Process]"
    images: "dict[str, ProcessImage]"
    _image_cache: "dict[Any, ProcessImage]"
    ipc: "IPC"
    devices: "Devices"
    memory: "MemoryManager"
    metrics_folder: "Metrics"
    audit: Any
    trust: Any
    policy: Any
    governs: frozenset[str]
    police_spawn: bool
    police_send: bool
    police_signal: bool
    message_events: bool
    authorize: Callable[..., bool]
    next_pid: int
    _dying: "list[tuple[Process, Any, Any]]"
    _draining: bool
    _append: Callable[[tuple[Any, ...]], None]
    _now: Callable[[], float]
    _push: "Callable[[Process], None]"
    journal: "Journal | None"
    observers: "list[Observer]"
    _on_spawn: "list[Callable[[Process], None]]"   # observer hooks (observer.py)
    _on_exit: "list[Callable[..., None]]"
    _on_checkpoint: "list[Callable[[Process], str | None]]"
    _senders: "dict[int, Callable[[Process, Any, Any], Any]]"
    # implemented by Kernel or another mixin
    wake: Callable[..., None]
    park: Callable[..., Any]
    _unpark: Callable[..., None]
    _abort_wait: Callable[..., None]
    requeue: Callable[..., None]
    relevel: "Callable[[Process], None]"
    terminate: Callable[..., None]
    _create: Callable[..., Any]
    _arm_deadline: Callable[..., None]
    metrics: Callable[[], dict[str, Any]]
