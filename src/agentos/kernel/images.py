"""Where an image's code lives, and finding it again: what recordings and snapshots keep.

A coroutine cannot be serialized, so a recorded run or a snapshot names its image by
import path (module, qualified name, source file); replay and restore import it again.
An image defined inside a function has no such path and cannot be found again.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys as _sys
from typing import Any

from ..abi.errors import KernelError
from .process import ProcessImage


def image_entry(img: ProcessImage) -> dict[str, Any]:
    """Where to find an image's code again: module, qualified name and source file."""
    fn = img.main
    try:
        src = inspect.getsourcefile(fn)
    except TypeError:
        src = None
    return {"name": img.name, "module": getattr(fn, "__module__", None),
            "qualname": getattr(fn, "__qualname__", None), "file": src}


def load_image(entry: dict[str, Any]) -> ProcessImage:
    """Find an image's code again from its recorded module, qualname and file."""
    if not isinstance(entry, dict):
        raise KernelError(f"an image record must be a JSON object, got {type(entry).__name__}")
    mod_name, qual, path = entry.get("module"), entry.get("qualname"), entry.get("file")
    for label, v in (("module", mod_name), ("qualname", qual), ("file", path), ("name", entry.get("name"))):
        if v is not None and type(v) is not str:
            raise KernelError(f"image record's {label} must be a string, got {type(v).__name__}")
    if not qual or "<locals>" in qual:
        raise KernelError(f"image {entry.get('name')!r} ({qual}) was defined inside a function and "
                          f"cannot be found again: pass images={{name: image}} to replay_from")
    mod = None
    if mod_name and mod_name != "__main__":
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:
            mod = None
    if mod is None and path:
        spec = importlib.util.spec_from_file_location(f"_agentos_replay_{abs(hash(path))}", path)
        if spec is None or spec.loader is None:
            raise KernelError(f"cannot load image {entry.get('name')!r} from {path}")
        mod = importlib.util.module_from_spec(spec)
        _sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    if mod is None:
        raise KernelError(f"cannot import module {mod_name!r} of image {entry.get('name')!r}")
    obj: Any = mod
    for part in qual.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise KernelError(f"image {entry.get('name')!r}: {mod_name or path} has no {qual}") from None
    return obj if isinstance(obj, ProcessImage) else ProcessImage(entry.get("name") or qual, obj)


__all__ = ["image_entry", "load_image"]
