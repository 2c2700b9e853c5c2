"""agentos: a microkernel operating system for LLM agents.

An agent is a process that reaches the world only through capability-checked, metered,
policy-checked, journaled syscalls. This module re-exports the public API; everything
else is internal. Importing it pulls in no optional dependency.

Importing it also registers the kernel's default extension, the VFS: the kernel package
never imports the layers built on it, so `Kernel()` gets its `/agent` tree from here
(`KernelConfig.extensions` chooses otherwise; see `agentos.kernel.observer`).
"""
from .abi import (
    ABI_VERSION, AgentOSError, BadArgument, BadHandle, Budget, CapError, CapRef, Cost, Decision, Down, Driver,
    DriverError, DriverHost, DriverResult, ExitKind, ExitReason, InternalError, Interrupted, KernelError,
    Message, NameTaken, NoSuchDevice, NondeterminismError, NotSupported, OutOfMemory, Pid, Policy, PolicyDenied,
    ProcState, Quota, QuotaExceeded, RecordingFormatError, Right, Segment, SegmentKind, Signal, SignalMessage, SyscallError,
    ToolError, WaitKind,
)
from .kernel import (
    RECORDING_FORMAT, Kernel, KernelConfig, ProcessImage, RealClock, RunResult, Sys, VirtualClock,
)
from .kernel.decision import AllowAll, NoPolicy
from .kernel.events import Event, digest
from .kernel.history import ProcessHistory
from .kernel.journal import Journal, JournalEntry
from .kernel.memory import DropOldestPager, Pager
from .kernel.observer import BootInfo, Observer
from .kernel.observer import default_extension as _default_extension
from .kernel.recall import Bm25Recaller, KeywordRecaller, Recaller
from .kernel.recall_vector import VectorRecaller, minilm_embed
from .services.bus import extension as _bus_extension
from .services.trust import install as _trust_extension
from .vfs.core import extension as _vfs_extension

_default_extension("vfs", _vfs_extension)
_default_extension("trust", _trust_extension)
_default_extension("bus", _bus_extension)

__version__ = "0.1.0"

__all__ = [
    "ABI_VERSION", "AgentOSError", "AllowAll", "BadArgument", "BadHandle", "Bm25Recaller", "BootInfo", "Budget", "CapError",
    "CapRef", "Cost", "Decision", "Down", "Driver", "DriverError", "DriverHost", "DriverResult",
    "DropOldestPager", "Event", "ExitKind", "ExitReason", "InternalError", "Interrupted", "Journal",
    "JournalEntry", "Kernel", "KernelConfig", "KernelError", "KeywordRecaller", "Message", "NameTaken",
    "NoPolicy", "NoSuchDevice", "NondeterminismError", "NotSupported", "Observer", "OutOfMemory", "Pager", "Pid", "Policy",
    "PolicyDenied", "ProcState", "ProcessHistory", "ProcessImage", "Quota", "QuotaExceeded", "RECORDING_FORMAT", "RealClock",
    "Recaller", "RecordingFormatError", "Right", "RunResult", "Segment", "SegmentKind", "Signal", "SignalMessage", "Sys",
    "SyscallError", "ToolError", "VectorRecaller", "VirtualClock", "WaitKind", "__version__", "digest", "minilm_embed",
]
