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


class AuditKeyError(AgentOSError):
    """The audit key is missing, too short, or kept where others can read it."""


def _decode(raw: str, where: str) -> bytes:
    raw = raw.strip()
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        key = raw.encode()
    if len(key) < 16:
        raise AuditKeyError(f"audit key from {where} is {len(key)} bytes; at least 16 are needed")
    return key


def load_key(directory: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None,
             create: bool = True) -> bytes:
    env = os.environ if env is None else env
    if env.get(ENV_KEY):
        return _decode(env[ENV_KEY], f"${ENV_KEY}")
    if directory is None:
        raise AuditKeyError(f"no audit key: set ${ENV_KEY} or give a directory for {KEY_FILE}")
    path = Path(directory) / KEY_FILE
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise AuditKeyError(f"{path} has mode {oct(mode)}: an audit key must be readable by its owner "
                                f"only (chmod 600)")
        return _decode(path.read_text(), str(path))
    if not create:
        raise AuditKeyError(f"no audit key: ${ENV_KEY} is unset and {path} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_hex(32).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return _decode(path.read_text(), str(path))
