"""A WASI module cannot leave its one preopened directory, nor write to a read-only one."""
from __future__ import annotations

import os

import pytest

pytest.importorskip("wasmtime")

from agentos import AllowAll, Kernel
from agentos.drivers.wasm import WasmDriver

import wasm_modules as W

ENOENT, EPERM, ENOTCAPABLE = 44, 63, 76


def attempt(tmp_path, func: str, path: str, writable: bool = False) -> int:
    box = tmp_path / "box"
    box.mkdir(exist_ok=True)
    (tmp_path / "secret.txt").write_text("secret")
    if not (box / "link").exists():
        os.symlink(tmp_path / "secret.txt", box / "link")
    (box / "ok.txt").write_text("ok")

    async def body(sys, _):
        h = await sys.open("wasm", {"wat": W.WASI_FS})
        return await sys.read(h, {"call": func, "input": path})
    k = Kernel(policy=AllowAll())
    k.register_driver(WasmDriver(wasi_dir=str(box), wasi_writable=writable))
    return k.run(body, grant=["wasm"]).value


@pytest.mark.parametrize("path", ["../secret.txt", "/../secret.txt", "a/../../secret.txt",
                                  "link", str("/etc/passwd")])
def test_wasi_dotdot_absolute_and_symlink_escapes_are_refused(tmp_path, path):
    errno = attempt(tmp_path, "open", path)
    assert errno not in (0,), f"{path} opened outside the preopen"


def test_wasi_control_inside_preopen_opens(tmp_path):
    assert attempt(tmp_path, "open", "ok.txt") == 0


def test_wasi_write_to_read_only_preopen_is_refused(tmp_path):
    assert attempt(tmp_path, "create", "new.txt") != 0
    assert not (tmp_path / "box" / "new.txt").exists()


def test_wasi_write_allowed_only_when_device_grants_it(tmp_path):
    assert attempt(tmp_path, "create", "new.txt", writable=True) == 0
    assert (tmp_path / "box" / "new.txt").read_bytes() == b"hi"
    assert attempt(tmp_path, "create", "../escape.txt", writable=True) != 0
    assert not (tmp_path / "escape.txt").exists()
