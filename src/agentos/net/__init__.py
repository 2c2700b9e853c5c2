"""Kernels as nodes: sealed envelopes, the node a kernel is on, and transports.

`seal`/`verify` put a message in an HMAC-SHA256 envelope and take it out, `NonceGuard`
drops replays and stale frames, `NetNode` is a kernel's identity and routes (made by
`Kernel.connect`), `Loopback` joins two kernels in one process, `TcpLink` (in
`agentos.net.tcp`, imported on first use) joins two over TCP. The `gateway` drivers give
a process a device to exchange sealed envelopes through the kernel's checks.
`Cluster`/`ClusterConfig` (in `agentos.net.cluster`, imported on first use) make a kernel a
node of a NATS cluster: leases, failure detection, fencing, spawn_remote, durable sends.
Importing this package pulls in only the standard library.
"""
from typing import Any

from ..kernel.remote import REMOTE_SENDER, RemoteAddr
from .envelope import MAX_FRAME, Envelope, NonceGuard, fresh_nonce, key_id, seal, verify
from .errors import (
    REASONS, EnvelopeRejected, EnvelopeTooLarge, LinkBackpressure, NetError, NoRoute, RemoteRefused,
)
from .node import Loopback, NetNode, Transport


def __getattr__(name: str) -> Any:
    if name == "TcpLink":  # asyncio streams: imported on first use
        import importlib
        return importlib.import_module(".tcp", __name__).TcpLink
    if name in ("Cluster", "ClusterConfig"):  # the NATS cluster: imported on first use
        import importlib
        return getattr(importlib.import_module(".cluster", __name__), name)
    raise AttributeError(f"module 'agentos.net' has no attribute {name!r}")


__all__ = ["Cluster", "ClusterConfig", "MAX_FRAME", "REASONS", "REMOTE_SENDER", "Envelope", "EnvelopeRejected",
           "EnvelopeTooLarge", "LinkBackpressure", "Loopback", "NetError", "NetNode", "NoRoute", "NonceGuard",
           "RemoteAddr", "RemoteRefused", "Transport", "fresh_nonce", "key_id", "seal", "verify"]
