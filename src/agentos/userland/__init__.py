"""Ring 2: libraries built on syscalls only (supervisors, nurseries, rpc, agents)."""
from .nursery import Nursery, open_nursery
from .rpc import CallTimeout, call, reply
from .supervisor import ChildSpec, SupervisorSpec, supervisor, which_children

__all__ = ["CallTimeout", "ChildSpec", "Nursery", "SupervisorSpec", "call", "open_nursery", "reply",
           "supervisor", "which_children"]
