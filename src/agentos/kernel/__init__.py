"""Ring 0. Users import from `agentos`, not from here."""
from .clock import Clock, RealClock, VirtualClock
from .kernel import AllowAll, Decision, Kernel, KernelConfig, NoPolicy, RunResult
from .process import ProcessImage
from .recording import RECORDING_FORMAT
from .trap import Sys

__all__ = ["RECORDING_FORMAT", "AllowAll", "Clock", "Decision", "Kernel", "KernelConfig", "NoPolicy",
           "ProcessImage", "RealClock", "RunResult", "Sys", "VirtualClock"]
