"""The agentos ABI: types, errors, the driver protocol and the syscall table. No logic."""
from .driver import Driver, DriverHandle, DriverHost, DriverResult
from .errors import (
    ABIMismatch, AgentOSError, AttestationError, BadArgument, BadHandle, BadRequest, CapError, DriverError, DriverTimeout,
    InternalError, Interrupted, KernelError, MailboxFull, NameTaken, NoSuchDevice,
    NondeterminismError, NotSupported, OutOfMemory, PolicyDenied, QuotaExceeded, RateLimited,
    RecordingFormatError, SchemaViolation, SyscallError, ToolError, TrustDenied, UpstreamError,
)
from .policy import Decision, Policy
from .syscalls import SYSCALLS, SyscallSpec
from .types import (
    ABI_VERSION, KERNEL_PID, USD_SCALE, Budget, CapRef, Cost, Down, ExitKind, ExitReason, Message, Pid,
    ProcState, Quota, Right, Segment, SegmentKind, Signal, SignalMessage, WaitKind,
)

__all__ = [
    "ABI_VERSION", "KERNEL_PID", "USD_SCALE", "ABIMismatch", "AgentOSError", "AttestationError", "BadArgument", "BadHandle", "BadRequest", "Budget",
    "CapError", "CapRef", "Cost", "Decision", "Down", "Driver", "DriverError", "DriverHandle", "DriverHost",
    "DriverResult",
    "DriverTimeout", "ExitKind",
    "ExitReason", "InternalError", "Interrupted", "KernelError", "MailboxFull", "Message",
    "NameTaken", "NoSuchDevice", "NondeterminismError", "NotSupported", "OutOfMemory", "Pid", "Policy", "PolicyDenied",
    "ProcState", "Quota", "QuotaExceeded", "RateLimited", "RecordingFormatError", "Right", "SchemaViolation", "SYSCALLS", "Segment", "SegmentKind", "Signal",
    "SignalMessage", "SyscallError", "SyscallSpec", "ToolError", "TrustDenied", "UpstreamError", "WaitKind",
]
