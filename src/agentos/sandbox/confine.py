"""What confines a sandbox, and the rule that a sandbox can only narrow it.

A `Confinement` is everything an `open` of the sandbox device decides about the child's
cage: namespaces, seccomp, a private pid namespace, the file-system view, rlimits and the
modules imported before the uid drop. The first sandbox a kernel process opens is set by
trusted code (the `sandbox(...)` image); from then on that process stands for sandboxed
code, and so does every process below it. Any later open by one of them is *nested*:
`narrow` checks it against the confinement it inherits and refuses anything wider, and it
never takes a host path (`workdir`): sandboxed code does not choose where on the host it
writes.

Host directories: the kernel changes the owner or mode only of a directory it created
itself (`make_workdir`), checked through a descriptor opened with O_NOFOLLOW, so no
symlink or swapped path can turn a chown onto something else.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..abi.errors import DriverError

FS_VIEWS = ("minimal", "host")   # narrowest first
OPEN_KEYS = frozenset({"code", "entry", "args", "limits", "workdir", "namespaces", "seccomp", "fs_view",
                       "pid_namespace", "preload", "caps"})
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Confinement:
    """The cage of one sandbox; `root` is the pid of the outermost sandboxed process."""

    namespaces: bool
    seccomp: bool
    pid_namespace: bool
    fs_view: str
    limits: Any            # SandboxLimits
    preload: frozenset[str]
    root: int


def _flag(params: dict[str, Any], key: str, default: bool, where: str) -> bool:
    v = params.get(key, default)
    if not isinstance(v, bool):
        raise DriverError(f"{where}: {key} must be true or false, got {type(v).__name__}")
    return v


def check_params(params: Any, where: str) -> dict[str, Any]:
    """Types of every open parameter, whoever opens (the kernel trusts no caller's shapes)."""
    if not isinstance(params, dict) or not isinstance(params.get("code"), str):
        raise DriverError(f"{where}: open params are {{'code': str, 'limits': SandboxLimits, ...}}")
    unknown = set(params) - OPEN_KEYS
    if unknown:
        raise DriverError(f"{where}: unknown open params {sorted(map(str, unknown))[:8]}")
    entry = params.get("entry", "main")
    if not isinstance(entry, str) or not entry.isidentifier():
        raise DriverError(f"{where}: entry must be a Python identifier")
    fs = params.get("fs_view", "minimal")
    if fs not in FS_VIEWS:
        raise DriverError(f"{where}: fs_view is 'minimal' or 'host', got {str(fs)[:40]!r}")
    pre = params.get("preload", ())
    if not isinstance(pre, (list, tuple)) or not all(isinstance(m, str) and _MODULE.match(m) for m in pre):
        raise DriverError(f"{where}: preload must be a list of module names")
    caps = params.get("caps", ())
    if not isinstance(caps, (list, tuple)) or not all(type(c) is int for c in caps):
        raise DriverError(f"{where}: caps must be a list of capability refs (ints)")
    wd = params.get("workdir")
    if wd is not None and (not isinstance(wd, str) or not wd or "\x00" in wd):
        raise DriverError(f"{where}: workdir must be a path")
    for key in ("namespaces", "seccomp", "pid_namespace"):
        _flag(params, key, True, where)
    return params


def limits_of(value: Any, default: Any, where: str) -> Any:
    from .driver import SandboxLimits

    if value is None:
        return default
    if isinstance(value, SandboxLimits):
        return value
    if isinstance(value, dict):  # what crosses the pipe from sandboxed code: changes to `default`
        try:
            return replace(default, **value)
        except (TypeError, ValueError) as e:
            raise DriverError(f"{where}: bad limits: {e}") from None
    raise DriverError(f"{where}: limits must be a SandboxLimits, got {type(value).__name__}")


def trusted(params: dict[str, Any], owner: int, where: str) -> Confinement:
    """The confinement a trusted open asks for."""
    from .driver import SandboxLimits

    return Confinement(_flag(params, "namespaces", True, where), _flag(params, "seccomp", True, where),
                       _flag(params, "pid_namespace", True, where), params.get("fs_view", "minimal"),
                       limits_of(params.get("limits"), SandboxLimits(), where),
                       frozenset(params.get("preload", ())), owner)


def narrow(parent: Confinement, params: dict[str, Any], where: str) -> Confinement:
    """The confinement of a nested open: inherited, narrowed where asked, never widened."""
    if params.get("workdir") is not None:
        raise DriverError(f"{where}: a sandboxed process cannot choose a host directory (workdir) "
                          f"for a sandbox it opens; it gets a fresh private one")
    flags = {}
    for key in ("namespaces", "seccomp", "pid_namespace"):
        mine = getattr(parent, key)
        v = _flag(params, key, mine, where)
        if mine and not v:
            raise DriverError(f"{where}: a sandboxed process cannot open a sandbox with {key} off "
                              f"(its own has it on; a nested sandbox can only narrow)")
        flags[key] = v
    fs = params.get("fs_view", parent.fs_view)
    if FS_VIEWS.index(fs) > FS_VIEWS.index(parent.fs_view):
        raise DriverError(f"{where}: a sandboxed process cannot open a sandbox with fs_view={fs!r}; "
                          f"its own is {parent.fs_view!r}")
    limits = limits_of(params.get("limits"), parent.limits, where)
    for f in fields(limits):
        mine, v = getattr(parent.limits, f.name), getattr(limits, f.name)
        if mine is not None and (v is None or v > mine):
            raise DriverError(f"{where}: a sandboxed process cannot raise limit {f.name} to {v} "
                              f"(its own is {mine})")
    pre = frozenset(params.get("preload", parent.preload))
    extra = pre - parent.preload
    if extra:
        raise DriverError(f"{where}: a sandboxed process cannot preload {sorted(extra)[:4]} "
                          f"(modules its own sandbox did not)")
    return Confinement(flags["namespaces"], flags["seccomp"], flags["pid_namespace"], fs, limits, pre,
                       parent.root)


def limits_dict(limits: Any) -> dict[str, Any]:
    return {k: v for k, v in asdict(limits).items() if k not in ("max_line", "nested")}


# -- host directories -------------------------------------------------------------------
def _own(path: str, uid: int, where: str) -> None:
    """chown/chmod a directory this kernel just created, through an O_NOFOLLOW descriptor,
    after checking it is still the empty directory it made (owned by us, private)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077 or os.listdir(fd):
            raise DriverError(f"{where}: the directory created at {path!r} changed before it was "
                              f"handed to the sandbox; refusing it")
        os.fchown(fd, uid, uid)
        os.fchmod(fd, 0o700)
        _MADE[path] = (st.st_dev, st.st_ino)
    finally:
        os.close(fd)


_MADE: dict[str, tuple[int, int]] = {}
"""path → (device, inode) of each directory this kernel created and handed to a sandbox
uid: what `release_workdir` may give back, and nothing put in its place since."""


def make_workdir(given: str | None, owner: int, uid: int | None, where: str) -> tuple[str, bool, bool]:
    """The sandbox's writable directory: (path, created by the kernel, removed at close).

    None: a fresh private directory, removed at close. A path that does not exist yet: the
    kernel creates it (and so may hand it to the sandbox's uid); it stays after close. An
    existing directory: used as it is; its owner and mode are never changed, so under a
    separate sandbox uid it must already be writable by others (e.g. mode 1777)."""
    if given is None:
        path = os.path.realpath(tempfile.mkdtemp(prefix=f"agentos-sbx-{owner}-"))
        created, remove = True, True
    else:
        path = os.path.abspath(given)
        try:
            os.mkdir(path, 0o700)
            created, remove = True, False
        except FileExistsError:
            created, remove = False, False
        except OSError as e:
            raise DriverError(f"{where}: cannot create workdir {path!r}: {e.strerror}") from None
        path = os.path.realpath(path)
    if not os.path.isdir(path):
        raise DriverError(f"{where}: workdir {path!r} is not a directory")
    if created and uid is not None:
        try:
            _own(path, uid, where)
        except BaseException:
            if remove:
                os.rmdir(path)
            raise
    elif not created and uid is not None:
        st = os.stat(path)
        if not st.st_mode & stat.S_IWOTH:
            raise DriverError(f"{where}: workdir {path!r} exists and the sandbox's own uid cannot write "
                              f"it; the kernel does not change the owner or mode of a directory it did "
                              f"not create: name a path that does not exist yet, and the kernel creates it")
    return path, created, remove


def release_workdir(path: str, created: bool, remove: bool) -> None:
    """At close: remove a private directory; give one created at a named path back to the
    kernel's uid (its files stay as the sandbox wrote them)."""
    import shutil

    made = _MADE.pop(path, None)
    if remove:
        shutil.rmtree(path, ignore_errors=True)
    elif created and os.geteuid() == 0:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            return
        try:
            st = os.fstat(fd)
            if made == (st.st_dev, st.st_ino):  # the very directory it made, not one swapped in
                os.fchown(fd, os.geteuid(), os.getegid())
        finally:
            os.close(fd)


__all__ = ["Confinement", "FS_VIEWS", "check_params", "make_workdir", "narrow", "release_workdir", "trusted"]
