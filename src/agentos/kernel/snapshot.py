"""Snapshots: a process as a portable description, and restore on any kernel.

A coroutine's frame cannot be serialized, so a snapshot is what a fresh start of the
same image needs to carry on: image (name and import path), args, priority, registered
names, memory segments (resident and swapped), the mailbox, the budget left, the devices
it may open and its capabilities as descriptions, stamped with `ABI_VERSION`. `restore`
starts the image again with that state. A process written as a message loop, keeping its
state in memory segments, migrates exactly when snapshotted while waiting in `recv`;
work in the middle of one message is redone from its start.

Capabilities to processes do not cross kernels (a pid means nothing elsewhere): they are
described in the snapshot and dropped on restore, and caps riding on queued messages are
dropped likewise; names are the portable way back to a peer. Device caps are re-granted
where the new kernel has the device.

Budget is conserved across a restore: what the process had left is carved from a parent
on the restoring kernel (by default its root), all or nothing, and never made from
nothing. A queued message keeps its deadline relative to the snapshot's time, whatever
the restoring kernel's clock reads.
"""
from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from ..abi.errors import ABIMismatch, KernelError
from ..abi.types import ABI_VERSION, POOLED_RESOURCES, Message, Quota, Right, Segment, SegmentKind
from .caps import DEVICE, SPAWN
from .events import canonical
from .process import EXITED, RUNNING, ProcessImage

if TYPE_CHECKING:
    from .kernel import Kernel
    from .process import Process

SNAPSHOT_FORMAT = "agentos.snapshot/1"


def _seg(s: Segment) -> dict[str, Any]:
    return {"id": s.id, "body": canonical(s.body), "tokens": s.tokens, "kind": s.kind.value,
            "created": s.created, "covers": list(s.covers)}


def snapshot(kernel: "Kernel", proc: "Process") -> dict[str, Any]:
    """The portable description of `proc` (JSON-ready)."""
    if proc.state is EXITED:
        raise KernelError(f"snapshot: pid {proc.pid} has exited")
    view = kernel.accounts.view(proc.account)  # type: ignore[arg-type]
    mem = proc.memory
    caps = []
    for ref, cap in sorted(proc.caps.items()):
        d = cap.describe()
        d["ref"] = ref
        caps.append(canonical(d))
    queued = list(proc.mailbox or ())
    if isinstance(proc.resume_value, Message) and proc.state is not RUNNING:
        queued.insert(0, proc.resume_value)  # handed over by recv but not yet seen by the process
    mailbox = [{"sender": m.sender, "body": canonical(m.body), "corr": canonical(m.corr),
                "deadline": m.deadline, "caps": [canonical(proc.caps[r].describe()) if r in proc.caps
                                                 else {"ref": r} for r in m.caps]}
               for m in queued]
    snap = {
        "format": SNAPSHOT_FORMAT, "abi_version": ABI_VERSION, "pid": proc.pid, "name": proc.name,
        "image": proc.image.entry(), "args": canonical(proc.args), "priority": proc.priority,
        "state": "suspended" if proc.stopped else proc.state.value, "taken_at": kernel.clock.now(),
        "names": sorted(proc.names or ()), "devices": sorted(proc.devices or ()),
        "caps": caps, "mailbox": mailbox,
        "memory": None if mem is None else {
            "next_id": mem.next_id, "resident": [_seg(s) for s in mem.resident.values()],
            "swap": [_seg(s) for s in mem.swap.values()]},
        "budget": {"limits": view["limits"], "remaining": view["remaining"], "used": view["used"]},
        "op_index": proc.op_index, "reductions": proc.reductions,
    }
    json.dumps(snap)  # a snapshot is JSON or it is a bug
    return snap


def restore(kernel: "Kernel", snap: dict[str, Any], image: Any, *, parent: "Process | None" = None,
            register_names: bool = True) -> int:
    """Start `image` again on `kernel` with the state in `snap`; returns the new pid."""
    if not isinstance(snap, dict) or snap.get("format") != SNAPSHOT_FORMAT:
        raise KernelError(f"restore: not an agentos snapshot (format {snap.get('format') if isinstance(snap, dict) else type(snap).__name__!r})")
    v = snap.get("abi_version")
    if v != ABI_VERSION:
        raise ABIMismatch(f"restore: the snapshot was taken under ABI version {v}, this kernel "
                          f"speaks version {ABI_VERSION}; restore it on a kernel of that version")
    img = ProcessImage.of(image)
    want = (snap.get("image") or {}).get("name")
    if want and img.name != want:
        raise KernelError(f"restore: the snapshot is of image {want!r}, not {img.name!r}")
    budget = snap.get("budget") or {}
    rem = budget.get("remaining") or {}
    lim = budget.get("limits") or {}
    if not isinstance(rem, dict) or not isinstance(lim, dict):
        raise KernelError("restore: the snapshot's budget is not a mapping of resources")
    # what the process had left is carved from the new parent: a resource it drew on with
    # no limit of its own is capped at what remained in the bank it drew from
    q: dict[str, Any] = {}
    for r in POOLED_RESOURCES:
        v = rem.get(r)
        if v is None:
            continue
        q[r] = _amount(r, v)
    segs = _segments(snap.get("memory"))
    resident = sum(seg.tokens for where, seg in segs if where == "resident")
    if "mem" in q or lim.get("mem") is not None:
        # the restored segments are charged again below: room for them and what was left
        q["mem"] = resident + q.get("mem", 0)
    taken_at = snap.get("taken_at")
    if not _finite(taken_at):
        raise KernelError(f"restore: the snapshot's taken_at must be a finite time in ms, got {taken_at!r}")
    msgs = _messages(snap.get("mailbox"), kernel.clock.now() - float(taken_at))  # type: ignore[arg-type]
    if parent is None:
        # the budget comes from a parent, never from nothing: by default the kernel's root
        init = kernel.init
        if init is None or init.state is EXITED:
            raise KernelError("restore: the kernel is not running (no root process to carve "
                              "the snapshot's budget from); restore into a booted kernel")
        parent = init
    try:
        quota_ = Quota(**q) if q else None
    except (TypeError, ValueError) as e:
        raise KernelError(f"restore: the snapshot's budget is not a valid quota: {e}") from None
    # all or nothing: a parent that cannot pay is QuotaExceeded and nothing was created
    proc = kernel._create(parent, img, snap.get("args"), (), quota_, False,
                          snap.get("priority"), None, snap.get("name"))
    try:
        _fill(kernel, proc, snap, segs, msgs)
    except BaseException:
        from ..abi.types import fault
        kernel.terminate(proc, fault("restore failed"))
        raise
    if register_names:
        for n in snap.get("names") or ():
            holder = kernel.names.get(n)
            if holder is None or holder.state is EXITED:
                kernel.names[n] = proc
                if proc.names is None:
                    proc.names = set()
                proc.names.add(n)
    dropped = sum(1 for c in snap.get("caps") or () if c.get("kind") != "device")
    kernel.events.emit(proc.pid, "restore", (snap.get("pid"), img.name, len(msgs), dropped))
    return proc.pid


def _fill(kernel: "Kernel", proc: "Process", snap: dict[str, Any],
          segs: list[tuple[str, Segment]], msgs: list[Message]) -> None:
    """Devices, memory and mailbox of a freshly created restored process."""
    for dev in snap.get("devices") or ():
        if dev == SPAWN:
            kernel.grant_device(proc, dev, Right.SPAWN)
        elif dev in kernel.drivers or kernel.replaying:
            kernel.grant_device(proc, dev)
    mem = snap.get("memory")
    if mem:
        sp = kernel.memory.space(proc)
        sp.next_id = int(mem["next_id"])
        for where, seg in segs:
            (sp.resident if where == "resident" else sp.swap)[seg.id] = seg
            sp.recaller.add(seg.id, seg.body)
            if where == "resident":
                if not kernel.accounts.mem_take(proc.account, seg.tokens):  # type: ignore[arg-type]
                    raise KernelError("restore: the snapshot's resident memory does not fit "
                                      "its own mem quota")
                sp.resident_tokens += seg.tokens
    for m in msgs:
        kernel.ipc.deliver(proc, m)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _amount(resource: str, v: Any) -> Any:
    if not _finite(v) or v < 0:
        raise KernelError(f"restore: the snapshot's remaining {resource} must be a finite "
                          f"number >= 0, got {v!r}")
    return v if resource == "usd" else int(v)


def _segments(mem: Any) -> list[tuple[str, Segment]]:
    """The snapshot's memory segments, checked before anything is allocated."""
    if not mem:
        return []
    try:
        int(mem["next_id"])
        out = []
        for where in ("resident", "swap"):
            for s in mem[where]:
                tokens = s["tokens"]
                if not _finite(tokens) or tokens < 0:
                    raise ValueError(f"segment tokens {tokens!r}")
                out.append((where, Segment(s["id"], s["body"], int(tokens), SegmentKind(s["kind"]),
                                           s["created"], tuple(s.get("covers") or ()))))
        return out
    except (KeyError, TypeError, ValueError) as e:
        raise KernelError(f"restore: the snapshot's memory is malformed: {e!r}") from None


def _messages(mailbox: Any, shift: float) -> list[Message]:
    """Queued messages; a deadline keeps its distance from the snapshot's time."""
    out = []
    try:
        for m in mailbox or ():
            d = m.get("deadline")
            if d is not None:
                if not _finite(d):
                    raise ValueError(f"deadline {d!r}")
                d = float(d) + shift
            out.append(Message(m["sender"], m["body"], (), m.get("corr"), d))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise KernelError(f"restore: the snapshot's mailbox is malformed: {e!r}") from None
    return out


__all__ = ["SNAPSHOT_FORMAT", "restore", "snapshot"]
