"""Confinement narrowing and host-directory rules, without starting any child."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agentos.abi.errors import DriverError
from agentos.sandbox import SandboxLimits
from agentos.sandbox.confine import check_params, make_workdir, narrow, release_workdir, trusted

BASE = {"code": "async def main(sys, args): pass"}


def test_trusted_open_takes_what_it_asks_for() -> None:
    c = trusted(check_params({**BASE, "namespaces": False, "fs_view": "host"}, "t"), 7, "t")
    assert not c.namespaces and c.fs_view == "host" and c.root == 7


@pytest.mark.parametrize("params", [
    {"entry": "not an identifier"}, {"fs_view": "everything"}, {"preload": ["os; rm -rf /"]},
    {"preload": "os"}, {"caps": ["1"]}, {"caps": [True]}, {"workdir": ""}, {"workdir": "a\x00b"},
    {"namespaces": "yes"}, {"bogus": 1},
])
def test_bad_open_params_are_driver_errors(params: dict) -> None:
    with pytest.raises(DriverError):
        check_params({**BASE, **params}, "t")
    with pytest.raises(DriverError):
        check_params("not a dict", "t")


def test_narrowing_inherits_and_may_only_tighten() -> None:
    parent = trusted(check_params({**BASE, "limits": SandboxLimits(cpu_s=4, as_bytes=None)}, "t"), 2, "t")
    c = narrow(parent, check_params(dict(BASE), "t"), "t")
    assert c.limits == parent.limits and c.namespaces and c.seccomp and c.root == 2
    c = narrow(parent, {**BASE, "limits": {"cpu_s": 1, "as_bytes": 1 << 20}}, "t")
    assert c.limits.cpu_s == 1 and c.limits.as_bytes == 1 << 20
    with pytest.raises(DriverError, match="cpu_s"):
        narrow(parent, {**BASE, "limits": {"cpu_s": 5}}, "t")
    with pytest.raises(DriverError, match="bad limits"):
        narrow(parent, {**BASE, "limits": {"nproc": -1}}, "t")
    loose = trusted(check_params({**BASE, "seccomp": False, "fs_view": "host"}, "t"), 3, "t")
    assert narrow(loose, {**BASE, "seccomp": True, "fs_view": "minimal"}, "t").seccomp  # narrowing is fine


def test_existing_directory_is_never_chowned(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir(mode=0o755)
    before = os.stat(d)
    if os.geteuid() == 0:
        with pytest.raises(DriverError, match="did not create"):
            make_workdir(str(d), 1, 1_700_000, "t")
    else:
        make_workdir(str(d), 1, None, "t")
    after = os.stat(d)
    assert (after.st_uid, stat.S_IMODE(after.st_mode)) == (before.st_uid, stat.S_IMODE(before.st_mode))


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership changes need root")
def test_created_directory_is_handed_over_and_back(tmp_path: Path) -> None:
    path, created, remove = make_workdir(str(tmp_path / "new"), 1, 1_700_001, "t")
    assert created and not remove and os.stat(path).st_uid == 1_700_001
    release_workdir(path, created, remove)
    assert os.stat(path).st_uid == 0
    tmp, created, remove = make_workdir(None, 1, 1_700_002, "t")
    assert created and remove and os.stat(tmp).st_uid == 1_700_002
    release_workdir(tmp, created, remove)
    assert not os.path.exists(tmp)
