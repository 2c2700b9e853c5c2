"""The errors of the network layer.

Two audiences. A process that sends across nodes sees `SyscallError`s (`NoRoute`,
`LinkBackpressure`; a body that cannot travel is a plain `BadArgument`), raised at its
`dial` or `send` like any refusal. Whoever feeds frames to a kernel (a transport, a test)
sees `EnvelopeRejected` from `verify`, carrying one of `REASONS`; `Kernel.ingress` never
raises it: it counts the drop and goes on.
"""
from __future__ import annotations

from ..abi.errors import AgentOSError, BadArgument, SyscallError

REASONS = ("malformed", "oversize", "forged", "tampered", "stale", "replayed", "misrouted",
           "incarnation", "overload", "attestation")
"""Why an envelope was dropped at ingress:

- malformed: not a frame, or a frame whose fields are of the wrong type or shape;
- oversize: longer than the receiver's frame limit (checked before anything else);
- forged: not sealed under the receiver's key (another key id, or no seal at all);
- tampered: names the receiver's key but its MAC does not match its bytes;
- stale: sent too long ago (or too far in the future) for the nonce guard's window;
- replayed: a nonce the guard has already seen within its window;
- misrouted: addressed to another node;
- incarnation: from an incarnation of its sender the receiver knows to be over;
- overload: verified, but the kernel already holds `max_inbox` deliveries it has not
  applied yet (it is not running, or input outpaces it): memory stays bounded;
- attestation: a send from a node whose key this kernel pins (`kernel.trust.trust_node`)
  without an attestation of its sender, or with one that is forged, tampered or of
  another process (services/trust.py).
"""


class NetError(AgentOSError):
    """Base of the network layer's own errors (not raised into processes)."""


class EnvelopeRejected(NetError):
    """`verify` refused a frame; `reason` is one of `REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class EnvelopeTooLarge(BadArgument):
    """A message whose sealed frame would be longer than the frame limit."""


class NoRoute(SyscallError):
    """`dial` or a remote `send` names a node this kernel has no route to."""


class RemoteRefused(SyscallError):
    """The other node refused a cluster call or did not answer it (no such image, no account
    granted, not a live member, fenced)."""


class LinkBackpressure(SyscallError):
    """The link to a node holds as many unsent frames as it may: the message was not sent."""


__all__ = ["REASONS", "EnvelopeRejected", "EnvelopeTooLarge", "LinkBackpressure", "NetError", "NoRoute",
           "RemoteRefused"]
