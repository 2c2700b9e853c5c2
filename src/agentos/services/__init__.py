"""Ring-1 services built on the kernel's syscalls and extension points.

The message bus (`bus.py`): topics with wildcards, priority lanes, backpressure, dead
letters and durable topics; `attach_bus(kernel, store=...)` readies it, processes call
the `bus_*` functions with a bus capability.
"""
from __future__ import annotations

from .bus import (Bus, BusDevice, BusMessage, BusScope, DeadReason, Overflow, bus_declare, bus_narrow,
                  bus_publish, bus_recv, bus_reject, bus_subscribe, bus_unsubscribe)
from .bus import attach as attach_bus

__all__ = ["Bus", "BusDevice", "BusMessage", "BusScope", "DeadReason", "Overflow", "attach_bus", "bus_declare",
           "bus_narrow", "bus_publish", "bus_recv", "bus_reject", "bus_subscribe", "bus_unsubscribe"]
