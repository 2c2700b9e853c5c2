"""VFS errors: raised in the calling process, which may catch them; the kernel goes on."""
from __future__ import annotations

from ..abi.errors import SyscallError


class VfsError(SyscallError):
    """Base of every VFS refusal; the message names the path and what was wrong."""


class BadPath(VfsError):
    """Not an absolute, well-formed path (relative, NUL byte, too long, not a str)."""


class EscapeError(VfsError):
    """A `..` that climbs out of a mount or a process's tree, or a symlink that leads out."""


class NotFound(VfsError):
    """Nothing at that path."""


class ReadOnly(VfsError):
    """The path is a read-only view or mount."""


class AccessDenied(VfsError):
    """The caller holds no capability that reaches the path."""


class TooLarge(VfsError):
    """A write over the backend's per-file or total size cap."""
