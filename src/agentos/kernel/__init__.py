"""Ring 0. Users import from `agentos`, not from here.

Nothing under this package imports `agentos.vfs` or `agentos.store` (a test pins it):
those layers plug into a kernel through its hooks (observers, extensions, syscalls).
"""
from ..abi.policy import Decision  # noqa: F401 - importable here for older code; exported by agentos
from .clock import Clock, RealClock, VirtualClock
from .decision import AllowAll, NoPolicy  # noqa: F401 - likewise
from .kernel import Kernel, KernelConfig, RunResult
from .process import ProcessImage
from .recording import RECORDING_FORMAT
from .trap import Sys

__all__ = ["RECORDING_FORMAT", "Clock", "Kernel", "KernelConfig", "ProcessImage", "RealClock", "RunResult", "Sys",
           "VirtualClock"]
