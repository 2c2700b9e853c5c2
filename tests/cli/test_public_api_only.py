"""agentctl is written against the public API: no kernel internals, no private attributes.

What the CLI needs and the API lacked was added to the API (`Kernel.add_observer`,
`Kernel.grant_process`, `Kernel.restore(parent=)`, `ProcessImage.from_entry`,
`ProcessHistory.attach`), so that any other tool can do what agentctl does."""
from __future__ import annotations

import ast
from pathlib import Path

import agentos

CLI_DIR = Path(agentos.__file__).parent / "cli"

# attributes of a Kernel that are its internals: tables, subsystems, the old hook slots
KERNEL_INTERNALS = {"caps", "boot_hooks", "checkpointer", "send_other", "procs", "runq", "timers",
                    "accounts", "ipc", "signals", "memory", "names", "journal", "replay_io",
                    "metrics_folder", "devices", "recording"}


def violations(source: str, filename: str = "<cli>") -> list[str]:
    tree = ast.parse(source, filename)
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            absolute = mod if node.level == 0 else "agentos." + mod if node.level == 2 else mod
            if node.level == 2 and (mod == "kernel" or mod.startswith("kernel.")):
                bad.append(f"{filename}:{node.lineno}: imports agentos.{mod} (use `agentos`)")
            elif node.level == 0 and absolute.startswith("agentos.kernel"):
                bad.append(f"{filename}:{node.lineno}: imports {absolute} (use `agentos`)")
            elif node.level == 2 and not mod:
                for a in node.names:
                    if a.name == "kernel":
                        bad.append(f"{filename}:{node.lineno}: imports agentos.kernel (use `agentos`)")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("agentos.kernel"):
                    bad.append(f"{filename}:{node.lineno}: imports {a.name} (use `agentos`)")
        elif isinstance(node, ast.Attribute):
            attr = node.attr
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue  # a CLI class's own state
            if attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__")):
                bad.append(f"{filename}:{node.lineno}: private attribute .{attr}")
            elif attr in KERNEL_INTERNALS:
                bad.append(f"{filename}:{node.lineno}: kernel internal .{attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                "getattr", "setattr", "hasattr") and len(node.args) >= 2:
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str) and (
                    name.value.startswith("_") or name.value in KERNEL_INTERNALS):
                bad.append(f"{filename}:{node.lineno}: {node.func.id}(..., {name.value!r})")
    return bad


def test_cli_uses_public_api_only():
    bad = []
    for path in sorted(CLI_DIR.glob("*.py")):
        bad += violations(path.read_text(), path.name)
    assert bad == []


def test_the_scan_catches_what_the_cli_used_to_do():
    old = '''
def restore():
    from ..kernel.caps import PROC, R_KILL, R_MONITOR
    from ..kernel.kernel import AllowAll, Kernel
    from ..kernel import Kernel
    from .. import kernel
    import agentos.kernel.snapshot
    k = Kernel()
    k.boot_hooks.append(on_boot)
    cap = k.caps.grant(init, PROC, k.procs[pid], R_MONITOR | R_KILL).ref
    k._create(None)
    getattr(k, "_table")
'''
    bad = violations(old)
    for needle in ("agentos.kernel.caps", "agentos.kernel.kernel", "imports agentos.kernel (use",
                   "agentos.kernel.snapshot", ".boot_hooks", ".caps", ".procs", "._create", "'_table'"):
        assert any(needle in b for b in bad), needle
    assert violations("from .. import AllowAll, Kernel\nk.add_observer(x)\nk.grant_process(1, 2)\n"
                      "self.names = {}\nself._streaming = True\n") == []
