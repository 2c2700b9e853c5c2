"""Mount backends: kernel memory, a key-value store, a host directory.

A backend sees only paths relative to its mount, already normalised (a tuple of names
with no `.`/`..`). Each has a narrow interface: `read`, `write`, `list`; `world` says
whether it touches the world outside the kernel (then policy is asked before reads too).

`StoreBackend` speaks to any object with `get(key) -> bytes | None`, `put(key, bytes)` and
`keys(prefix) -> iterable of str`: `MemoryKV` here, and the durable stores behind the same
three calls. `HostDirBackend` walks the host path one component at a time with
`O_NOFOLLOW` relative to the directory it has open, so no symlink (planted before or
during the call) can lead it outside its root: there is no check-then-use window.
"""
from __future__ import annotations

import copy
import json
import os
import stat
from typing import Any, Iterable, Protocol

from .errors import EscapeError, NotFound, ReadOnly, TooLarge, VfsError

Rel = tuple[str, ...]


class Backend(Protocol):
    world: bool
    writable: bool

    def read(self, rel: Rel) -> Any: ...
    def write(self, rel: Rel, data: Any) -> None: ...
    def list(self, rel: Rel) -> list[str]: ...


def _size(data: Any) -> int:
    if isinstance(data, (bytes, bytearray, str)):
        return len(data)
    try:
        return len(json.dumps(data, default=str))
    except (TypeError, ValueError):
        return len(repr(data))


class MemoryBackend:
    """Files held in kernel memory. Values are any Python value; sizes are capped."""

    world = False

    def __init__(self, *, writable: bool = True, max_file: int = 1 << 20, max_total: int = 64 << 20) -> None:
        self.writable = writable
        self.max_file = max_file
        self.max_total = max_total
        self.files: dict[Rel, Any] = {}
        self.sizes: dict[Rel, int] = {}
        self.total = 0

    def read(self, rel: Rel) -> Any:
        if rel in self.files:
            return _private(self.files[rel])
        if self._is_dir(rel):
            return self.list(rel)
        raise NotFound(f"no file {'/'.join(rel) or '/'}")

    def _is_dir(self, rel: Rel) -> bool:
        n = len(rel)
        return n == 0 or any(k[:n] == rel and len(k) > n for k in self.files)

    def write(self, rel: Rel, data: Any) -> None:
        if not self.writable:
            raise ReadOnly("this mount is read-only")
        if not rel:
            raise VfsError("cannot write to a mount's root directory")
        if self._is_dir(rel):
            raise VfsError(f"{'/'.join(rel)} is a directory")
        for i in range(1, len(rel)):
            if rel[:i] in self.files:
                raise VfsError(f"{'/'.join(rel[:i])} is a file, not a directory")
        size = _size(data)
        if size > self.max_file:
            raise TooLarge(f"{size} bytes is over this mount's {self.max_file}-byte file cap")
        new_total = self.total - self.sizes.get(rel, 0) + size
        if new_total > self.max_total:
            raise TooLarge(f"this mount is full ({self.max_total}-byte cap)")
        self.files[rel] = _private(data)  # a reader's or writer's later mutation never leaks in
        self.sizes[rel] = size
        self.total = new_total

    def list(self, rel: Rel) -> list[str]:
        n = len(rel)
        if rel in self.files:
            raise VfsError(f"{'/'.join(rel)} is a file, not a directory")
        names = {k[n] for k in self.files if len(k) > n and k[:n] == rel}
        if not names and n:
            raise NotFound(f"no directory {'/'.join(rel)}")
        return sorted(names)


def _private(v: Any) -> Any:
    return v if isinstance(v, (bytes, str, int, float, bool, type(None), frozenset)) else copy.deepcopy(v)


class KVStore(Protocol):
    """The narrow interface a durable store offers the VFS."""

    def get(self, key: str) -> bytes | None: ...
    def put(self, key: str, value: bytes) -> None: ...
    def keys(self, prefix: str) -> Iterable[str]: ...


class MemoryKV:
    """A `KVStore` in memory: the default until a durable store is plugged in."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.data[key] = bytes(value)

    def keys(self, prefix: str) -> Iterable[str]:
        return [k for k in self.data if k.startswith(prefix)]


class StoreBackend:
    """Files as JSON values in a `KVStore`, under `prefix/`. Survives the process that wrote
    them (and, with a durable store, the kernel)."""

    world = False

    def __init__(self, kv: KVStore | None = None, prefix: str = "vfs", *, writable: bool = True,
                 max_file: int = 1 << 20) -> None:
        self.kv: KVStore = kv if kv is not None else MemoryKV()
        self.prefix = prefix.strip("/")
        self.writable = writable
        self.max_file = max_file

    def _key(self, rel: Rel) -> str:
        return self.prefix + "/" + "/".join(rel)

    def read(self, rel: Rel) -> Any:
        raw = self.kv.get(self._key(rel)) if rel else None
        if raw is None:
            names = self.list(rel)  # a directory reads as its listing
            return names
        return _decode(raw)

    def write(self, rel: Rel, data: Any) -> None:
        if not self.writable:
            raise ReadOnly("this mount is read-only")
        if not rel:
            raise VfsError("cannot write to a mount's root directory")
        raw = _encode(data)
        if len(raw) > self.max_file:
            raise TooLarge(f"{len(raw)} bytes is over this mount's {self.max_file}-byte file cap")
        self.kv.put(self._key(rel), raw)

    def list(self, rel: Rel) -> list[str]:
        base = self._key(rel).rstrip("/") + "/"
        names = {k[len(base):].split("/", 1)[0] for k in self.kv.keys(base)}
        names.discard("")
        if not names and rel:
            raise NotFound(f"no file or directory {'/'.join(rel)}")
        return sorted(names)


def _encode(data: Any) -> bytes:
    if isinstance(data, (bytes, bytearray)):
        return b"b" + bytes(data)
    try:
        return b"j" + json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    except (TypeError, ValueError) as e:
        raise VfsError(f"a store-backed file holds bytes or JSON values: {e}") from None


def _decode(raw: bytes) -> Any:
    return raw[1:] if raw[:1] == b"b" else json.loads(raw[1:])


class HostDirBackend:
    """A host directory. Reads return bytes; writes take bytes or str. Read-only unless
    `writable`. Symlinks are refused at every component."""

    world = True

    def __init__(self, root: str, *, writable: bool = False, max_file: int = 16 << 20) -> None:
        if not os.path.isdir(root):
            raise ValueError(f"vfs: host directory {root!r} does not exist")
        self.root = os.path.realpath(root)
        self.writable = writable
        self.max_file = max_file

    def _walk(self, rel: Rel) -> int:
        """An fd for the directory `rel` (components followed with O_NOFOLLOW)."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name in rel:
                try:
                    nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    raise NotFound(f"no directory {'/'.join(rel)}") from None
                except OSError as e:
                    raise self._why(name, fd, e) from None
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _why(name: str, dfd: int, e: OSError) -> VfsError:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                return EscapeError(f"{name} is a symlink; the VFS does not follow links out of a mount")
        except OSError:
            pass
        return VfsError(f"{name}: {e.strerror}")

    def read(self, rel: Rel) -> Any:
        if not rel:
            return self.list(rel)
        dfd = self._walk(rel[:-1])
        try:
            try:  # O_NONBLOCK: a planted FIFO must not hang the kernel
                fd = os.open(rel[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
            except FileNotFoundError:
                raise NotFound(f"no file {'/'.join(rel)}") from None
            except OSError as e:
                raise self._why(rel[-1], dfd, e) from None
            with os.fdopen(fd, "rb") as f:
                mode = os.fstat(f.fileno()).st_mode
                if stat.S_ISDIR(mode):
                    return sorted(os.listdir(f.fileno()))
                if not stat.S_ISREG(mode):
                    raise VfsError(f"{'/'.join(rel)} is not a regular file")
                data = f.read(self.max_file + 1)
            if len(data) > self.max_file:
                raise TooLarge(f"{'/'.join(rel)} is over the {self.max_file}-byte read cap")
            return data
        finally:
            os.close(dfd)

    def write(self, rel: Rel, data: Any) -> None:
        if not self.writable:
            raise ReadOnly("this host directory is mounted read-only")
        if not rel:
            raise VfsError("cannot write to a mount's root directory")
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, (bytes, bytearray)):
            raise VfsError(f"a host file takes bytes or str, got {type(data).__name__}")
        if len(data) > self.max_file:
            raise TooLarge(f"{len(data)} bytes is over this mount's {self.max_file}-byte file cap")
        dfd = self._walk(rel[:-1])
        try:
            try:
                fd = os.open(rel[-1], os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644,
                             dir_fd=dfd)
            except OSError as e:
                raise self._why(rel[-1], dfd, e) from None
            with os.fdopen(fd, "wb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise VfsError(f"{'/'.join(rel)} is not a regular file")
                f.truncate(0)
                f.write(data)
        finally:
            os.close(dfd)

    def list(self, rel: Rel) -> list[str]:
        fd = self._walk(rel)
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)


__all__ = ["Backend", "HostDirBackend", "KVStore", "MemoryBackend", "MemoryKV", "StoreBackend"]
