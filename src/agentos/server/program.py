"""Loading a program file for `run` and `submit`: one clear message when it cannot load.

A program file defines `async def init(sys, args)`; optionally `setup(kernel)` to register
drivers, `GRANT` (device names), `QUOTA`, `ARGS`, `POLICY`, `NAME`. A file that fails to
import is reported as one line naming the file, line and error, not as a traceback.
"""
from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from typing import Any


class ProgramError(Exception):
    """The program file cannot be used; the message is one line for a person."""


def load_program(path: Path) -> Any:
    """Import the program at `path` and check it defines `async def init(sys, args)`."""
    path = Path(path)
    try:
        is_file = path.is_file()
    except (OSError, ValueError) as e:  # a name too long, a NUL, a lone surrogate
        raise ProgramError(f"cannot use {str(path)[:200]!r} as a program: {type(e).__name__}: {e}"[:400]) from None
    if not is_file:
        raise ProgramError(f"{str(path)[:200]} does not exist or is not a file")
    spec = importlib.util.spec_from_file_location(f"agentos_program_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ProgramError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # noqa: BLE001 - a program's import error is the user's to read
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        sys.modules.pop(spec.name, None)
        raise ProgramError(f"{path} failed to import: {where(e, str(path))}{type(e).__name__}: {e}") from None
    init = getattr(module, "init", None)
    if init is None or not inspect.iscoroutinefunction(init):
        raise ProgramError(f"{path} must define `async def init(sys, args)`")
    return module


def where(e: BaseException, filename: str | None = None) -> str:
    """`file:line: ` of the innermost frame of `e` (in `filename` when given), or ''."""
    frames = traceback.extract_tb(e.__traceback__)
    if isinstance(e, SyntaxError) and e.filename:
        return f"{e.filename}:{e.lineno}: "
    pick = [f for f in frames if filename is None or f.filename == filename] or frames
    if not pick:
        return ""
    f = pick[-1]
    return f"{f.filename}:{f.lineno}: "


__all__ = ["ProgramError", "load_program", "where"]
