"""Process sandbox: untrusted agent code in a child OS process behind a reference monitor.

    from agentos.sandbox import install, sandbox, SandboxLimits
    install(kernel)                                   # registers the `sandbox` device
    img = sandbox(code, limits=SandboxLimits(cpu_s=2))
    pid, cap = await sys.spawn(img, caps=["sandbox", ...])

See `monitor.py` (the kernel side of each syscall) and `_child.py` (what the child does
to itself before running any of the untrusted code).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .driver import SandboxDriver, SandboxLimits, describe_status
from .monitor import DEFAULT_ALLOW, SandboxViolation, sandbox, to_wire

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel


def install(kernel: "Kernel", name: str = "sandbox") -> SandboxDriver:
    """Register the device that starts sandboxed children on `kernel`."""
    driver = SandboxDriver(name)
    kernel.register_driver(driver)
    return driver


__all__ = ["DEFAULT_ALLOW", "SandboxDriver", "SandboxLimits", "SandboxViolation", "describe_status",
           "install", "sandbox", "to_wire"]
