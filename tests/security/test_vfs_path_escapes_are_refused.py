"""No spelling of a path reaches past a mount or into another process's tree."""
import os

import pytest

from agentos import AllowAll, Kernel
from agentos.vfs import HostDirBackend, MemoryBackend, VfsError, install

ATTEMPTS = ["/agent/1/../2/mem/working", "//agent//1/.//..//2", "/agent/1/mem/../../2",
            "/shared/../agent/2", "/shared/./../../agent/2", "/host/../shared/x", "/host/../../etc/passwd",
            "/agent/../agent/2", "/..", "/shared/..", "agent/2", "/agent/2/mem/working",
            "/agent/2\x00/x", "/host/in/../../../etc/passwd"]


@pytest.mark.parametrize("path", ATTEMPTS)
def test_vfs_path_escape_is_refused(tmp_path, path):
    k = Kernel(policy=AllowAll(), deterministic=True)
    install(k, mounts={"/shared": MemoryBackend(), "/host": HostDirBackend(str(tmp_path))})

    async def other(sys, _):
        await sys.remember("pid 2's secret")
        await sys.recv()

    async def init(sys, _):
        _p, cap = await sys.spawn(other)   # init holds a cap to 2, but gives it to no one
        await sys.sleep(1)

        async def attacker(sys, args):
            for op in (sys.vfs_read, sys.vfs_list):
                try:
                    out = await op(args)
                except VfsError as e:
                    continue
                if "secret" in repr(out) or "root:" in repr(out):
                    await sys.log("info", "outcome", v="leaked")
                    return
            await sys.log("info", "outcome", v="refused")
        _a, acap = await sys.spawn(attacker, args=path, caps=["vfs:/shared", "vfs:/host"])
        await sys.waitpid(acap)
        await sys.kill(cap)
    k.run(init, grant=["vfs:/shared", "vfs:/host"])
    outcome = [e.data[2]["v"] for e in k.events.events(kind="log") if e.data[1] == "outcome"]
    assert outcome == ["refused"]


def test_vfs_host_symlinks_out_of_the_mount_are_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside / "secret.txt", root / "file-link")
    os.symlink(outside, root / "dir-link")
    os.mkfifo(root / "fifo")

    async def body(sys, _):
        out = []
        for p in ("/host/file-link", "/host/dir-link/secret.txt", "/host/fifo"):
            try:
                out.append(await sys.vfs_read(p))
            except VfsError as e:
                out.append(type(e).__name__)
        for p in ("/host/file-link", "/host/dir-link/new.txt"):
            try:
                await sys.vfs_write(p, "overwritten")
                out.append("written")
            except VfsError as e:
                out.append(type(e).__name__)
        return out
    k = Kernel(policy=AllowAll(), deterministic=True)
    install(k, mounts={"/host": HostDirBackend(str(root), writable=True)})
    res = k.run(body, grant=["vfs:/host"])
    assert res.value == ["EscapeError", "EscapeError", "VfsError", "EscapeError", "EscapeError"], res
    assert (outside / "secret.txt").read_text() == "secret"
    assert not (outside / "new.txt").exists()
