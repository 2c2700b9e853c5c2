"""Ring 1 multi-agent services built on the kernel's syscalls: inter-agent trust (`trust`).

Each service installs itself into a kernel as an extension (see `kernel/observer.py`) and
imports its optional libraries lazily, so `import agentos` stays light.
"""
from .trust import ATTESTATION_VERSION, TrustService, verify_attestation

__all__ = ["ATTESTATION_VERSION", "TrustService", "verify_attestation"]
