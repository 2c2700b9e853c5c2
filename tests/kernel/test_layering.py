"""The kernel stands on its own: it imports no layer built on it, and those layers plug in
through its hooks (extensions, observers) instead."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import agentos
from agentos import AllowAll, Kernel, KernelConfig, NotSupported

KERNEL_DIR = Path(agentos.__file__).parent / "kernel"
FORBIDDEN = ("agentos.vfs", "agentos.store")


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute name an ImportFrom in `module` (a module of agentos.kernel) imports."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")[: -node.level]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """Every module `path` imports, wherever the import sits (module level, inside a
    function, under TYPE_CHECKING) and however it is spelled (relative, importlib)."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((node.lineno, arg.value))
    return found


def forbidden_imports(root: Path = KERNEL_DIR) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        module = "agentos.kernel." + ".".join(path.relative_to(root).with_suffix("").parts)
        for line, name in imported_modules(path, module):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                bad.append(f"{path.name}:{line} imports {name}")
    return bad


def test_kernel_imports_neither_vfs_nor_store():
    assert forbidden_imports() == []


def test_the_scan_sees_lazy_relative_and_importlib_imports(tmp_path):
    """The scan would fail on each way the kernel could reach those layers."""
    pkg = tmp_path / "kernel"
    pkg.mkdir()
    (pkg / "a.py").write_text("def f():\n    from ..vfs import install\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from agentos.store.recorder import Recording\n")
    (pkg / "c.py").write_text("import importlib\nstore = importlib.import_module('agentos.store')\n")
    (pkg / "d.py").write_text("from .. import vfs\n")
    (pkg / "e.py").write_text("from ..vfsx import y\nfrom .store import z\n")  # look-alikes are fine
    bad = forbidden_imports(pkg)
    assert sorted({b.split(":")[0] for b in bad}) == ["a.py", "b.py", "c.py", "d.py"]


def test_importing_the_kernel_loads_no_store():
    code = ("import sys, agentos.kernel.kernel as kk; "
            "print(sorted(m for m in sys.modules if m.startswith(('agentos.store',))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_default_kernel_has_a_vfs_installed_by_the_package():
    async def body(sys, _):
        return await sys.vfs_list("/")

    k = Kernel(policy=AllowAll(), deterministic=True)
    assert set(k.extensions) == {"vfs", "trust", "bus"}
    assert k.run(body).value == ["agent"]


def test_a_kernel_built_without_extensions_has_no_vfs():
    async def body(sys, _):
        try:
            await sys.vfs_list("/")
        except NotSupported as e:
            return str(e)
        return "listed"

    k = Kernel(KernelConfig(extensions={}), policy=AllowAll(), deterministic=True)
    assert k.extensions == {}
    assert "vfs" in k.run(body).value


def test_extensions_run_in_order_and_their_results_are_kept():
    seen = []

    def first(kernel):
        seen.append(("first", kernel.extensions.copy()))
        return "one"

    def second(kernel):
        seen.append(("second", kernel.extensions.copy()))
        return "two"

    k = Kernel(extensions={"first": first, "second": second})
    assert k.extensions == {"first": "one", "second": "two"}
    assert seen == [("first", {}), ("second", {"first": "one"})]


def test_a_vfs_extension_can_be_chosen_explicitly():
    from agentos.vfs import Vfs, extension

    k = Kernel(extensions={"vfs": extension})
    assert isinstance(k.extensions["vfs"], Vfs)


def test_an_unknown_kernel_option_is_refused():
    with pytest.raises(agentos.KernelError, match="unknown kernel option"):
        Kernel(extension={})


def test_snapshot_needs_no_store():
    """A snapshot names its image by import path without the store layer."""
    async def body(sys, _):
        await sys.recv(timeout=5)

    async def init(sys, _):
        pid, cap = await sys.spawn(body)
        await sys.sleep(1)
        return pid

    k = Kernel(policy=AllowAll(), deterministic=True)
    taken = {}

    class Snap(agentos.Observer):
        def spawned(self, proc):
            if proc.pid == 2:
                taken["snap"] = k.snapshot(2)

    k.add_observer(Snap())
    k.run(init)
    img = taken["snap"]["image"]
    assert img["qualname"].endswith("body") and img["module"] == __name__
