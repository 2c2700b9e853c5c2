"""The error classes a process, a driver or a kernel user can see.

Each error says what was wrong in its message; the kernel raises them into the one
process at fault and keeps running.
"""
from __future__ import annotations

import re
from typing import Any

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def shown(value: Any, limit: int = 80) -> str:
    """A caller's value as an error message shows it: its repr, bounded, and never with a
    memory address (error messages land in the event log, which a replay reproduces)."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        value = value[:limit]
    try:
        text = _ADDRESS.sub("", repr(value))
    except Exception:  # a repr that raises, or recurses 10,000 deep
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class AgentOSError(Exception):
    """Base of every error agentos raises on purpose."""


class KernelError(AgentOSError):
    """Misuse of the kernel API, or a process that broke the syscall contract."""


class InternalError(KernelError):
    """Something escaped the kernel's dispatch loop. This is a bug in agentos."""


class SyscallError(AgentOSError):
    """A syscall was refused; raised inside the calling process, which may catch it."""


class BadArgument(SyscallError):
    """A syscall argument has the wrong type or is out of range (NaN, negative, unhashable...)."""


class SchemaViolation(BadArgument):
    """A message sent through a typed pipe does not match the pipe's schema (or costs too
    much to check). `path` is a JSON pointer into the message, `schema_path` one into the
    schema at the keyword that failed; the message says both and why."""

    def __init__(self, message: str, path: str = "", schema_path: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.schema_path = schema_path


class NotSupported(SyscallError):
    """The syscall is registered but this kernel does not provide it (no such subsystem)."""


class CapError(SyscallError):
    """A capability is not held, lacks a right, has expired or was revoked."""


class QuotaExceeded(SyscallError):
    """A charge would overdraw an account. Normally the kernel kills instead of raising."""

    def __init__(self, resource: str, message: str) -> None:
        super().__init__(message)
        self.resource = resource


class NoSuchDevice(SyscallError):
    """The device name is not registered with this kernel."""


class BadHandle(SyscallError):
    """The handle is not open in this process."""


class DriverError(SyscallError):
    """A driver operation failed; the message is the driver's own description."""

    usage_unknown: bool = False
    """True when the operation may have consumed anything up to its reservation: the request
    went out and what it used cannot be known (a timeout, an answer that breaks the reply
    contract). The kernel then charges the full reservation; otherwise a failed call is
    charged what it reports, at least the call itself."""


class ToolError(DriverError):
    """A tool call failed: unknown tool, bad arguments, or the tool raised."""


class ManifestError(ToolError, BadArgument):
    """A tool manifest the registry refuses; `field` names the part at fault, and so does
    the message ("tool manifest field 'schema.$ref': ..."), which is all a journal keeps."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        if field is None:
            head = "tool manifest field '"
            field = message[len(head):].split("'", 1)[0] if message.startswith(head) else ""
        self.field = field


class PolicyDenied(SyscallError):
    """Policy refused an action (permissive kernels raise this instead of killing)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class TrustDenied(PolicyDenied):
    """A policy rule's `min_trust` (or `target_min_trust`) refused the call: the trust score
    the kernel keeps for the caller (or the send's target) is below the rule's minimum."""


class AttestationError(SyscallError):
    """An attestation did not verify. `reason` says how: malformed (not an attestation's
    shape), forged (not signed by the key it must be signed by), tampered (a claim changed
    after signing), unknown_node (no published key for the node it names)."""

    REASONS = ("malformed", "forged", "tampered", "unknown_node")

    def __init__(self, reason: str, message: str) -> None:
        if reason not in self.REASONS:
            reason = "malformed"
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class Interrupted(SyscallError):
    """SIGINT arrived: raised at the process's pending or next syscall."""


class NameTaken(SyscallError):
    """`register(name)` for a name another live process holds."""


class MailboxFull(SyscallError):
    """Only for `send_nowait`-style callers; `send` itself parks instead."""


class NondeterminismError(KernelError):
    """A replayed run asked for something the recorded run did not do."""


class ABIMismatch(KernelError):
    """A snapshot from a kernel with another ABI_VERSION was offered for restore."""


class RecordingFormatError(KernelError):
    """A stored run's recording format is one this kernel cannot replay; the message names
    both versions (`recorded`: the run's, None when unreadable; `current`: this kernel's)."""

    def __init__(self, message: str, *, recorded: int | None = None, current: int | None = None) -> None:
        super().__init__(message)
        self.recorded = recorded
        self.current = current


class OutOfMemory(SyscallError):
    """Pinned segments alone exceed the `mem` quota."""


class DriverTimeout(DriverError):
    """A driver operation ran past its time limit (after any retries the driver makes)."""

    usage_unknown = True


class UpstreamError(DriverError):
    """The remote service behind a driver failed (5xx, connection lost) after retries."""


class RateLimited(UpstreamError):
    """The remote service kept refusing for rate or capacity (HTTP 429) after retries."""


class BadRequest(UpstreamError):
    """The remote service refused the request itself (HTTP 4xx: bad model, too long, auth)."""
