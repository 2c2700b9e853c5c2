"""A sandboxed agent writes only inside its own directory."""
import os

from sbx import run_sandboxed

WRITER = '''
import os
async def main(sys, args):
    out = {}
    for path in args + ["inside.txt"]:
        try:
            with open(path, "w") as f:
                f.write("x")
            out[path] = "written"
        except OSError as e:
            out[path] = type(e).__name__
    await sys.log("info", "result", **out)
'''


def test_write_outside_workdir_is_refused(tmp_path):
    targets = [str(tmp_path / "outside.txt"), "/tmp/agentos-sbx-escape.txt", "../escape.txt",
               "/root/escape.txt", os.path.join(os.getcwd(), "escape.txt")]
    out = run_sandboxed(WRITER, args=targets)
    assert out.reason == "normal", out.reason
    assert out.result.pop("inside.txt") == "written"
    # OSError: EROFS (read-only mount); FileNotFoundError: not in its minimal root at all
    assert set(out.result.values()) <= {"PermissionError", "OSError", "FileNotFoundError"}, out.result
    for t in targets:
        assert not os.path.exists(t), t


def test_given_workdir_is_the_only_writable_place(tmp_path):
    box = tmp_path / "box"  # does not exist yet: the kernel creates it for the sandbox
    out = run_sandboxed(WRITER, args=[str(tmp_path / "sibling.txt")], workdir=str(box))
    assert out.result["inside.txt"] == "written"
    assert out.result[str(tmp_path / "sibling.txt")] in ("OSError", "PermissionError", "FileNotFoundError")
    assert (box / "inside.txt").read_text() == "x"


def test_write_outside_workdir_is_refused_with_the_host_view_too(tmp_path):
    target = str(tmp_path / "outside.txt")
    out = run_sandboxed(WRITER, args=[target, "/tmp/agentos-sbx-escape2.txt"], fs_view="host")
    assert out.result["inside.txt"] == "written", out.result
    assert out.result["/tmp/agentos-sbx-escape2.txt"] == "OSError", out.result  # EROFS: /tmp is 1777 on the host
    assert out.result[target] in ("OSError", "PermissionError"), out.result
    assert not os.path.exists(target) and not os.path.exists("/tmp/agentos-sbx-escape2.txt")
