"""Ring 1 multi-agent services built on the kernel's syscalls and drivers.

- inter-agent trust (`TrustService`, `verify_attestation`): kernel-issued identities,
  trust scores, `min_trust` and kernel-raised SIGTRUST;
- the tool registry (`ToolRegistry`, `install_registry`): tool manifests, discovery
  filtered to what the caller may call, and execution in the tier a tool's risk requires;
- the message bus (`bus.py`): topics with wildcards, priority lanes, backpressure, dead
  letters and durable topics; `attach_bus(kernel, store=...)` readies it, processes call
  the `bus_*` functions with a bus capability.

Each service installs itself into a kernel as an extension and imports its optional
libraries lazily, so `import agentos` stays light.
"""
from __future__ import annotations

from .bus import (Bus, BusDevice, BusMessage, BusScope, DeadReason, Overflow, bus_declare, bus_narrow,
                  bus_publish, bus_recv, bus_reject, bus_subscribe, bus_unsubscribe)
from .bus import attach as attach_bus
from .manifest import Effect, ManifestError, Origin, Risk, Tier, ToolManifest, parse_manifest
from .registry import HostTool, ToolRegistry
from .registry import install as install_registry
from .trust import ATTESTATION_VERSION, TrustService, verify_attestation

__all__ = ["ATTESTATION_VERSION", "Bus", "BusDevice", "BusMessage", "BusScope", "DeadReason", "Effect",
           "HostTool", "ManifestError", "Origin", "Overflow", "Risk", "Tier", "ToolManifest", "ToolRegistry",
           "TrustService", "attach_bus", "bus_declare", "bus_narrow", "bus_publish", "bus_recv", "bus_reject",
           "bus_subscribe", "bus_unsubscribe", "install_registry", "parse_manifest", "verify_attestation"]
