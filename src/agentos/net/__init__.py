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
from .gateway import GatewayDriver, SecureGatewayDriver
from .node import Loopback, NetNode, Transport


_LAZY = {"TcpLink": ".tcp", "TcpListener": ".tcp", "TcpNode": ".tcp", "tcp_node": ".tcp",
         "Cluster": ".cluster", "ClusterConfig": ".cluster"}  # the NATS cluster: on first use too


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is not None:  # asyncio streams: imported on first use
        import importlib
        return getattr(importlib.import_module(where, __name__), name)
    raise AttributeError(f"module 'agentos.net' has no attribute {name!r}")


__all__ = ["Cluster", "ClusterConfig", "MAX_FRAME", "REASONS", "REMOTE_SENDER", "Envelope", "EnvelopeRejected", "EnvelopeTooLarge",
           "GatewayDriver", "LinkBackpressure", "SecureGatewayDriver", "Loopback", "NetError", "NetNode", "NoRoute", "NonceGuard", "RemoteAddr",
           "RemoteRefused", "TcpLink", "TcpListener", "TcpNode", "Transport", "fresh_nonce", "key_id", "seal", "tcp_node", "verify"]
