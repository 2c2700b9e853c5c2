"""Path normalisation for the VFS, with escape detection.

`split(path, boundaries)` returns the normalised components. `.` and empty components
vanish; `..` pops one component, but never above a *boundary*: the root, a mount point,
or a process's own tree `/agent/<pid>`. Popping a boundary is an `EscapeError`, not a
silent clamp, so `/shared/../agent/7` is refused rather than quietly reaching pid 7.
"""
from __future__ import annotations

from typing import Callable

from .errors import BadPath, EscapeError

MAX_PATH = 4096
MAX_NAME = 255


def split(path: object, is_boundary: Callable[[tuple[str, ...]], bool]) -> tuple[str, ...]:
    if not isinstance(path, str):
        raise BadPath(f"vfs: a path is a str, got {type(path).__name__}")
    if "\x00" in path:
        raise BadPath(f"vfs: path {path!r} contains a NUL byte")
    if len(path) > MAX_PATH:
        raise BadPath(f"vfs: path is {len(path)} characters; the limit is {MAX_PATH}")
    if not path.startswith("/"):
        raise BadPath(f"vfs: path {path!r} is relative; VFS paths start with '/'")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not out or is_boundary(tuple(out)):
                where = "/" + "/".join(out)
                raise EscapeError(f"vfs: {path!r} climbs out of {where} with '..'")
            out.pop()
            continue
        if len(part) > MAX_NAME:
            raise BadPath(f"vfs: a name in {path!r} is over {MAX_NAME} characters")
        out.append(part)
    return tuple(out)


def join(parts: tuple[str, ...]) -> str:
    return "/" + "/".join(parts)
