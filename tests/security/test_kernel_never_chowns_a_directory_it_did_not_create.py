"""The kernel (as root) hands a directory to a sandbox's uid only when it created that
directory itself. An existing directory, or a symlink planted where the workdir should be,
keeps its owner and mode; a path that does not exist yet is created, given to the sandbox,
and given back to the kernel's uid when the sandbox ends."""
import os
import stat

import pytest

from sbx import ROOT, run_sandboxed

WRITER = '''
async def main(sys, args):
    with open("out.txt", "w") as f:
        f.write("hi")
    return "wrote"
'''

pytestmark = pytest.mark.skipif(not ROOT, reason="ownership changes happen only when the kernel runs as root")


def _owner_mode(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def test_an_existing_directory_is_refused_not_chowned(tmp_path):
    box = tmp_path / "existing"
    box.mkdir(mode=0o755)
    before = _owner_mode(box)
    out = run_sandboxed(WRITER, workdir=str(box))
    assert "does not change the owner or mode of a directory it did not create" in out.reason, out.reason
    assert _owner_mode(box) == before
    assert not (box / "out.txt").exists()


def test_a_symlink_planted_at_the_workdir_path_is_not_followed_into_a_chown(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o750)
    link = tmp_path / "box"
    link.symlink_to(victim)
    before = _owner_mode(victim)
    out = run_sandboxed(WRITER, workdir=str(link))
    assert out.reason != "normal"
    assert _owner_mode(victim) == before


def test_a_world_writable_directory_is_used_as_it_is(tmp_path):
    box = tmp_path / "shared"
    box.mkdir()
    os.chmod(box, 0o1777)
    before = _owner_mode(box)
    out = run_sandboxed(WRITER, workdir=str(box))
    assert out.reason == "normal", out.reason
    assert (box / "out.txt").read_text() == "hi"
    assert _owner_mode(box) == before


def test_a_new_path_is_created_for_the_sandbox_and_given_back_afterwards(tmp_path):
    box = tmp_path / "fresh"
    out = run_sandboxed(WRITER, workdir=str(box))
    assert out.reason == "normal", out.reason
    assert (box / "out.txt").read_text() == "hi"
    assert (box / "out.txt").stat().st_uid == out.uid        # what the sandbox wrote is its own
    uid, _gid, mode = _owner_mode(box)
    assert uid == os.geteuid() and mode == 0o700              # the directory is the kernel's again


def test_a_directory_swapped_in_while_the_sandbox_ran_is_not_given_back(tmp_path):
    from agentos.sandbox import confine

    path, created, remove = confine.make_workdir(str(tmp_path / "named"), 7, 1_654_321, "sandbox")
    assert created and not remove and _owner_mode(path)[0] == 1_654_321
    os.rename(path, str(tmp_path / "moved"))     # someone puts another directory in its place
    os.mkdir(path, 0o755)
    os.chown(path, 1_700_000, 1_700_000)
    confine.release_workdir(path, created, remove)
    assert _owner_mode(path) == (1_700_000, 1_700_000, 0o755)   # not the kernel's to change
    assert path not in confine._MADE
