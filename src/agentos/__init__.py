"""agentos: a microkernel operating system for LLM agents.

An agent is a process that reaches the world only through capability-checked, metered,
policy-checked, journaled syscalls. This module re-exports the public API; everything
else is internal. Importing it pulls in no optional dependency.
"""
from .abi import (
    ABI_VERSION, AgentOSError, BadArgument, BadHandle, Budget, CapError, CapRef, Cost, Down, Driver, DriverError,
    DriverResult, ExitKind, ExitReason, InternalError, Interrupted, KernelError, Message,
    NameTaken, NoSuchDevice, NondeterminismError, NotSupported, OutOfMemory, Pid, PolicyDenied, ProcState,
    Quota, QuotaExceeded, RecordingFormatError, Right, Segment, SegmentKind, Signal, SignalMessage,
    SyscallError, ToolError, WaitKind,
)
from .kernel import (
    RECORDING_FORMAT, AllowAll, Decision, Kernel, KernelConfig, NoPolicy, ProcessImage, RealClock,
    RunResult, Sys, VirtualClock,
)
from .kernel.journal import Journal, JournalEntry

__version__ = "0.1.0"

__all__ = [
    "ABI_VERSION", "AgentOSError", "AllowAll", "BadArgument", "BadHandle", "Budget", "CapError", "CapRef", "Cost", "Decision", "Down",
    "Driver", "DriverError", "DriverResult", "ExitKind", "ExitReason", "InternalError",
    "Interrupted", "Journal", "JournalEntry", "Kernel", "KernelConfig", "KernelError", "Message", "NameTaken",
    "NoPolicy", "NoSuchDevice", "NondeterminismError", "NotSupported", "OutOfMemory", "Pid", "PolicyDenied",
    "ProcState", "ProcessImage", "Quota", "QuotaExceeded", "RECORDING_FORMAT", "RealClock", "RecordingFormatError",
    "Right", "RunResult", "Segment",
    "SegmentKind", "Signal", "SignalMessage", "Sys", "SyscallError", "ToolError",
    "VirtualClock", "WaitKind", "__version__",
]
