"""PROV-O export of recorded runs: `export(run, format="turtle"|"jsonld")`.

`run` is a `ReplayManifest` (steps may be a generator) or a `(store, run_id)` pair.
Output streams: pass `out` (a path or a text stream) to write in constant memory;
without it the document is returned as a string. The vocabulary ships as `vocab.ttl`.
"""
from __future__ import annotations

import io
import os
from importlib import resources
from typing import Any, TextIO

from .model import STEP_TYPES, InteractionRecord, LessonRecord, ReplayManifest, manifest_from_store
from .writer import AOS, PROV, lesson_iri, run_iri, write


def vocabulary() -> str:
    """The agentos provenance vocabulary, in Turtle."""
    return resources.files(__package__).joinpath("vocab.ttl").read_text(encoding="utf-8")


def export(run: Any, format: str = "turtle", out: str | os.PathLike[str] | TextIO | None = None) -> str | int:
    """Export `run` as PROV-O. Returns the text, or (with `out`) the number of steps written."""
    if isinstance(run, tuple) and len(run) == 2:
        run = manifest_from_store(*run)
    if not isinstance(run, ReplayManifest):
        raise TypeError(f"export needs a ReplayManifest or (store, run_id), got {type(run).__name__}")
    if out is None:
        buf = io.StringIO()
        write(run, buf, format)
        return buf.getvalue()
    if isinstance(out, (str, os.PathLike)):
        with open(out, "w", encoding="utf-8", buffering=1 << 16) as f:
            return write(run, f, format)
    return write(run, out, format)


__all__ = ["AOS", "PROV", "STEP_TYPES", "InteractionRecord", "LessonRecord", "ReplayManifest", "export",
           "lesson_iri", "manifest_from_store", "run_iri", "vocabulary"]
