"""Capabilities: unforgeable handles whose authority lives only in the kernel.

Each process holds a table `ref → Cap`; a ref means nothing outside its holder's table,
so presenting another process's ref is a `CapError`. Every cap except a root grant has a
parent; `derive`, `attenuate` and passing a cap on a message create children whose rights
are a subset and whose expiry is no later. Revocation walks the children transitively.
When a holder exits its caps become ghosts that stay in the tree only while they still
have live descendants, so revoking an ancestor still reaches them and nothing leaks.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from ..abi.errors import CapError, shown
from ..abi.types import Right

if TYPE_CHECKING:
    from .process import Process

PROC = 0
DEVICE = 1
REMOTE = 2
PIPE = 3  # a typed pipe: target is a PipeEnd (the receiver and its schema), see pipes.py
_KIND_NAMES = ("process", "device", "remote", "pipe")

R_SEND = int(Right.SEND)
R_MONITOR = int(Right.MONITOR)
R_OPEN = int(Right.OPEN)
R_READ = int(Right.READ)
R_WRITE = int(Right.WRITE)
R_SPAWN = int(Right.SPAWN)
R_KILL = int(Right.KILL)
R_ANY = int(Right.ALL)
SPAWN = "spawn"  # the device-kind capability whose `spawn` right lets its holder start processes


class Cap:
    __slots__ = ("ref", "holder", "kind", "target", "rights", "expires", "parent", "children")

    def __init__(self, ref: int, holder: "Process | None", kind: int, target: Any, rights: int,
                 expires: float | None, parent: "Cap | None") -> None:
        self.ref = ref
        self.holder = holder  # None once the holder has exited (a ghost)
        self.kind = kind
        self.target = target
        self.rights = rights
        self.expires = expires
        self.parent = parent
        self.children: set[Cap] | None = None

    def describe(self) -> dict[str, Any]:
        target = self.target
        tname = str(target) if self.kind == REMOTE else getattr(target, "pid", target)
        out = {"kind": _KIND_NAMES[self.kind], "target": tname,
               "rights": rights_text(self.rights), "expires": self.expires}
        if self.kind == PIPE:
            out["schema"] = target.schema.digest  # sha256 of the schema's canonical JSON
        return out


def rights_text(bits: int) -> str:
    names = [(r.name or "").lower() for r in Right if r not in (Right.NONE, Right.ALL) and bits & r]
    return ",".join(names) or "none"


class CapTable:
    """The kernel side of all capabilities. Counts live caps and ghosts for leak checks."""

    __slots__ = ("_rng", "live", "ghosts", "_now")

    def __init__(self, rng: random.Random, now: Any) -> None:
        self._rng = rng
        self._now = now
        self.live = 0
        self.ghosts = 0

    # -- creation -----------------------------------------------------------------
    def grant(self, holder: "Process", kind: int, target: Any, rights: int,
              expires: float | None = None, parent: Cap | None = None) -> Cap:
        table = holder.caps
        getrandbits = self._rng.getrandbits
        ref = getrandbits(62)
        while ref in table or ref == 0:
            ref = getrandbits(62)
        cap = Cap(ref, holder, kind, target, rights, expires, parent)
        if parent is not None:
            if parent.children is None:
                parent.children = {cap}
            else:
                parent.children.add(cap)
        table[ref] = cap
        self.live += 1
        return cap

    def resolve(self, holder: "Process", ref: Any, right: int, what: str) -> Cap:
        """The held cap behind `ref`, if it carries `right` and has not expired."""
        cap = _held(holder, ref, what)
        if cap is None:
            raise CapError(f"{what}: capability {_fmt(ref)} is not held by pid {holder.pid} "
                           f"(never granted, revoked, or another process's ref)")
        if not cap.rights & right and right != R_ANY:
            raise CapError(f"{what}: capability {_fmt(ref)} lacks the {rights_text(right)} right "
                           f"(it has {rights_text(cap.rights)})")
        if cap.expires is not None and self._now() >= cap.expires:
            raise CapError(f"{what}: capability {_fmt(ref)} expired at {cap.expires:.3f} ms")
        return cap

    def derive(self, holder: "Process", ref: Any, rights: int | None,
               expires_in: float | None = None) -> Cap:
        src = _held(holder, ref, "derive")
        if src is None:
            raise CapError(f"derive: capability {_fmt(ref)} is not held by pid {holder.pid}")
        if src.expires is not None and self._now() >= src.expires:
            raise CapError(f"derive: capability {_fmt(ref)} has expired")
        if rights is None:
            rights = src.rights
        if rights & ~src.rights:
            raise CapError(f"derive cannot add rights: the source has {rights_text(src.rights)}, "
                           f"asked for {rights_text(rights)}")
        expires = src.expires
        if expires_in is not None:
            if expires_in < 0:
                raise CapError(f"attenuate: expires_in must be >= 0 ms, got {expires_in}")
            mine = self._now() + expires_in
            expires = mine if expires is None else min(expires, mine)
        return self.grant(holder, src.kind, src.target, rights, expires, src)

    def transfer(self, src: Cap, receiver: "Process") -> Cap:
        """A copy of `src` in the receiver's table; revoking `src` revokes the copy."""
        return self.grant(receiver, src.kind, src.target, src.rights, src.expires, src)

    # -- removal ------------------------------------------------------------------
    def revoke(self, holder: "Process", ref: Any) -> int:
        cap = _held(holder, ref, "revoke")
        if cap is None:
            raise CapError(f"revoke: capability {_fmt(ref)} is not held by pid {holder.pid}")
        return self._revoke_tree(cap)

    def _revoke_tree(self, root: Cap) -> int:
        count = 0
        stack = [root]
        while stack:
            cap = stack.pop()
            if cap.children:
                stack.extend(cap.children)
                cap.children = None
            if cap.holder is not None:
                del cap.holder.caps[cap.ref]
                cap.holder = None
                self.live -= 1
            else:
                self.ghosts -= 1
            count += 1
        self._unlink(root)
        return count

    def _unlink(self, cap: Cap) -> None:
        """Detach `cap` from its parent, pruning ghost ancestors left without children."""
        parent = cap.parent
        cap.parent = None
        while parent is not None:
            kids = parent.children
            if kids is not None:
                kids.discard(cap)
                if not kids:
                    parent.children = None
            if parent.holder is not None or parent.children:
                return
            # a ghost with no descendants left: it can go too
            self.ghosts -= 1
            cap, parent = parent, parent.parent
            cap.parent = None

    def drop_all(self, holder: "Process") -> None:
        """The holder is exiting: its caps become ghosts, or vanish if nothing derives from them."""
        table = holder.caps
        holder.caps = {}
        for cap in table.values():
            cap.holder = None
            self.live -= 1
            if cap.children:
                self.ghosts += 1
            else:
                self._unlink(cap)


def _fmt(ref: Any) -> str:
    return f"{ref:#x}" if isinstance(ref, int) and not isinstance(ref, bool) else shown(ref)


def _held(holder: "Process", ref: Any, what: str) -> "Cap | None":
    """The cap `holder` holds under `ref`; a ref that is not even hashable is a CapError."""
    try:
        return holder.caps.get(ref)
    except TypeError:
        raise CapError(f"{what}: {type(ref).__name__} is not a capability ref (refs are ints)") from None
