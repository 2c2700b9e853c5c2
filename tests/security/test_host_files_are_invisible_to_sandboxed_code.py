"""Sandboxed code sees a minimal root: system directories and its own, not the host's
home directories, project trees, temp files or process table."""
import os

from sbx import run_sandboxed

PEEK = '''
import os
async def main(sys, args):
    out = {}
    for path in args:
        try:
            with open(path, "rb") as f:
                out[path] = "read:" + f.read(20).decode("latin-1")
        except OSError as e:
            out[path] = type(e).__name__
    out["ls /"] = sorted(os.listdir("/"))
    await sys.log("info", "result", **out)
'''


def test_host_files_outside_the_minimal_root_are_invisible(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    secret.chmod(0o644)  # world-readable on the host: only the view hides it
    project = os.path.abspath(__file__)
    out = run_sandboxed(PEEK, args=[str(secret), project, "/proc/1/cmdline", "/etc/hostname"])
    assert out.reason == "normal", out.reason
    r = out.result
    assert r[str(secret)] == "FileNotFoundError", r
    assert r[project] == "FileNotFoundError", r
    assert r["/proc/1/cmdline"] == "FileNotFoundError", r
    assert not {"root", "home", "work", "proc", "var"} & set(r["ls /"]), r["ls /"]


def test_host_view_is_available_explicitly_and_still_read_only(tmp_path):
    secret = tmp_path / "visible.txt"
    secret.write_text("visible")
    secret.chmod(0o644)
    tmp_path.chmod(0o755)
    out = run_sandboxed(PEEK, args=[str(secret)], fs_view="host")
    assert out.result[str(secret)].startswith(("read:visible", "PermissionError")), out.result
