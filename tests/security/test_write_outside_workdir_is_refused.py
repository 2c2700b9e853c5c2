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
    assert set(out.result.values()) <= {"PermissionError", "OSError"}, out.result
    for t in targets:
        assert not os.path.exists(t), t


def test_given_workdir_is_the_only_writable_place(tmp_path):
    box = tmp_path / "box"
    box.mkdir()
    out = run_sandboxed(WRITER, args=[str(tmp_path / "sibling.txt")], workdir=str(box))
    assert out.result == {str(tmp_path / "sibling.txt"): "OSError", "inside.txt": "written"} or \
        out.result[str(tmp_path / "sibling.txt")] == "PermissionError", out.result
    assert (box / "inside.txt").read_text() == "x"
