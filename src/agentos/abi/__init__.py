"""The agentos ABI: types, errors, the driver protocol and the syscall table. No logic."""
from .driver import Driver, DriverHandle, DriverResult
from .errors import (
    ABIMismatch, AgentOSError, BadArgument, BadHandle, BadRequest, CapError, DriverError, DriverTimeout,
    InternalError, Interrupted, KernelError, MailboxFull, NameTaken, NoSuchDevice,
    NondeterminismError, NotSupported, OutOfMemory, PolicyDenied, QuotaExceeded, RateLimited,
    RecordingFormatError, SyscallError, ToolError, UpstreamError,
)
from .syscalls import SYSCALLS, SyscallSpec
from .types import (
    ABI_VERSION, KERNEL_PID, Budget, CapRef, Cost, Down, ExitKind, ExitReason, Message, Pid,
    ProcState, Quota, Right, Segment, SegmentKind, Signal, SignalMessage, WaitKind,
)

__all__ = [
    "ABI_VERSION", "KERNEL_PID", "ABIMismatch", "AgentOSError", "BadArgument", "BadHandle", "BadRequest", "Budget",
    "CapError", "CapRef", "Cost", "Down", "Driver", "DriverError", "DriverHandle", "DriverResult",
    "DriverTimeout", "ExitKind",
    "ExitReason", "InternalError", "Interrupted", "KernelError", "MailboxFull", "Message",
    "NameTaken", "NoSuchDevice", "NondeterminismError", "NotSupported", "OutOfMemory", "Pid", "PolicyDenied",
    "ProcState", "Quota", "QuotaExceeded", "RateLimited", "RecordingFormatError", "Right", "SYSCALLS", "Segment",
    "SegmentKind", "Signal", "SignalMessage", "SyscallError", "SyscallSpec", "ToolError", "UpstreamError", "WaitKind",
]
