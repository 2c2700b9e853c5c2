"""The per-process virtual file system: `/agent/<pid>/...` views and mounted backends.

    from agentos.vfs import install, MemoryBackend, HostDirBackend
    vfs = install(kernel, mounts={"/shared": MemoryBackend(), "/data": HostDirBackend(path)})
    # a process needs the device `vfs:/shared` (read and/or write right) to use /shared

Every kernel built with the default extensions already has a VFS (`extension` is what
`agentos` registers); `install` returns it, adding mounts and, unless told otherwise,
filing SIGUSR1 checkpoints under /agent/<pid>/state/checkpoints.

See `core.py` for the layout and the access rules, `paths.py` for normalisation.
"""
from __future__ import annotations

from .backends import Backend, HostDirBackend, KVStore, MemoryBackend, MemoryKV, StoreBackend
from .core import MountDriver, Vfs, extension, install
from .errors import AccessDenied, BadPath, EscapeError, NotFound, ReadOnly, TooLarge, VfsError

__all__ = ["AccessDenied", "Backend", "BadPath", "EscapeError", "HostDirBackend", "KVStore",
           "MemoryBackend", "MemoryKV", "MountDriver", "NotFound", "ReadOnly", "StoreBackend",
           "TooLarge", "Vfs", "VfsError", "extension", "install"]
