"""Values that enter through a syscall: checked for encodability where they enter.

A message body, a log field, spawn args, a device payload, a file's data, a policy
query's args and a remembered body all end up in the event log and the journal. The check
is the canonical encoder's own walk in checking mode (`canon.checked`): the pass that builds
a value's canonical form is the pass that refuses a cycle, nesting deeper than 1,000, a lone
surrogate, an integer too long to print or an object whose conversion raises.
"""
from __future__ import annotations

from .canon import MAX_DEPTH, MAX_INT_BITS, Unencodable, canonical_checked, checked

__all__ = ["MAX_DEPTH", "MAX_INT_BITS", "Unencodable", "canonical_checked", "checked"]
