"""The kernel's audit key: from AGENTOS_AUDIT_KEY, or a key file only its owner can read.

A key file is created once with mode 0600 (O_EXCL, so two kernels never race to two
keys); an existing one readable by group or others is refused rather than trusted.
"""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Mapping

from ..abi.errors import AgentOSError

ENV_KEY = "AGENTOS_AUDIT_KEY"
KEY_FILE = "audit.key"
MIN_KEY_BYTES = 16       # every key, from the environment, a key file or a caller


class AuditKeyError(AgentOSError):
    """The audit key is missing, too short, or kept where others can read it."""


def check_key(key: object, where: str = "key") -> bytes:
    """A caller's audit key as immutable bytes, held to the minimum a loaded key is: a key
    that is not bytes, or too short to be a secret (b"" would MAC every record with nothing),
    is refused here rather than by every record later. The message never shows the key."""
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise AuditKeyError(f"{where} must be bytes (at least {MIN_KEY_BYTES}), got {type(key).__name__}")
    try:
        k = bytes(key)   # a copy: a bytearray changed later must not change the chain's key
    except (TypeError, ValueError) as e:  # a released memoryview
        raise AuditKeyError(f"{where} cannot be read as bytes ({type(e).__name__})") from None
    if len(k) < MIN_KEY_BYTES:
        raise AuditKeyError(f"{where} is {len(k)} bytes; at least {MIN_KEY_BYTES} are needed")
    return k


def _decode(raw: str, where: str) -> bytes:
    raw = raw.strip()
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        try:
            key = raw.encode()
        except UnicodeEncodeError:  # lone surrogates: bytes of the environment that were not UTF-8
            raise AuditKeyError(f"audit key from {where} is not UTF-8 text (hex digits or a passphrase)") from None
    if len(key) < MIN_KEY_BYTES:
        raise AuditKeyError(f"audit key from {where} is {len(key)} bytes; at least {MIN_KEY_BYTES} are needed")
    return key


def _read(path: Path) -> str:
    """The key file's text: one that cannot be read, or is not UTF-8, is an AuditKeyError."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AuditKeyError(f"{path} cannot be read: {type(e).__name__}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AuditKeyError(f"{path} is not UTF-8 text (byte {e.start} is not): an audit key file holds hex "
                            f"digits or a passphrase") from None


def load_key(directory: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None,
             create: bool = True) -> bytes:
    env = os.environ if env is None else env
    if env.get(ENV_KEY):
        return _decode(env[ENV_KEY], f"${ENV_KEY}")
    if directory is None:
        raise AuditKeyError(f"no audit key: set ${ENV_KEY} or give a directory for {KEY_FILE}")
    path = Path(directory) / KEY_FILE
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as e:
        raise AuditKeyError(f"{path} cannot be read: {type(e).__name__}: {e.strerror or e}") from None
    if st is not None:
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise AuditKeyError(f"{path} has mode {oct(mode)}: an audit key must be readable by its owner "
                                f"only (chmod 600)")
        return _decode(_read(path), str(path))
    if not create:
        raise AuditKeyError(f"no audit key: ${ENV_KEY} is unset and {path} does not exist")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except FileExistsError:
        if path.parent.exists() and not path.parent.is_dir():
            raise AuditKeyError(f"cannot create {path}: {path.parent} is not a directory") from None
        raise AuditKeyError(f"cannot create {path}: it appeared meanwhile (another kernel made it?)") from None
    except OSError as e:
        raise AuditKeyError(f"cannot create {path}: {type(e).__name__}: {e.strerror or e}") from None
    return _decode(_read(path), str(path))
