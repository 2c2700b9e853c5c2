"""The recorder's encoding: the canonical encoder's audit dialect (kernel/canon.py).

Whatever reaches the flight recorder (a tool argument, a decision's reason, sandboxed
code's request) becomes canonical JSON text that can always be stored and MACed: `encode`
never raises for any value. Lone surrogates are escaped (`\\ud800`), so the text is pure
ASCII; NaN and infinities, integers too long to print, bytes, sets, dict keys that are not
strings, cycles and objects whose `repr` raises all have a tagged form. Dict keys that start
with "$" get one more "$", so a tag can never be forged by a value. Nesting past
`MAX_DEPTH`, more than `MAX_NODES` values, strings or bytes past `MAX_STR`, and a record past
`MAX_TEXT` are cut, each cut leaving a SHA-256 of what it replaced where that is cheap.
"""
from __future__ import annotations

from ..kernel.canon import AUDIT_MAX_DEPTH as MAX_DEPTH
from ..kernel.canon import AUDIT_MAX_INT_BITS as MAX_INT_BITS
from ..kernel.canon import AUDIT_MAX_NODES as MAX_NODES
from ..kernel.canon import AUDIT_MAX_STR as MAX_STR
from ..kernel.canon import AUDIT_MAX_TEXT as MAX_TEXT
from ..kernel.canon import audit_encode as encode
from ..kernel.canon import audit_tree as to_tree
from ..kernel.canon import dumps_ascii as _dumps  # noqa: F401 - compact ASCII JSON (chain.py)

__all__ = ["MAX_DEPTH", "MAX_INT_BITS", "MAX_NODES", "MAX_STR", "MAX_TEXT", "encode", "to_tree"]
