"""An agent as one portable file: export a hibernated message loop, import it elsewhere.

The file (canonical JSON, `AGENT_FORMAT`, stamped with `ABI_VERSION`) holds the image's
name and import path, the loop's state and args, its context (memory segments), its
queued messages, its budget and its capabilities as descriptions. Export copies: the
agent stays where it was.

Import is an attack surface: the file comes from elsewhere. It is read within a size
bound (`MAX_FILE_BYTES`), a nesting bound and bounds on its queued messages (the
importer's `max_mailbox`, else `MAX_QUEUED`), names and capabilities; non-finite numbers
(a bare NaN, 1e400, or a tagged "@float" anywhere in a value), integers too large for a
number, lone surrogates, unknown tags and wrong types are refused with an
`AgentFileError` (a `BadArgument`) that says what was wrong, before anything is created.
Values are decoded by the record codec (`sched/plain.py`), so they are what they were.
Every queued message arrives as sent by the importer (a pid in the file means nothing
here); a queued Down or SignalMessage is refused (only this kernel sends those), and
export leaves such messages out. The file never chooses code: the image is the
importing kernel's registered image of that name (or the one the caller passes), never
an import path read from the file. Its budget is carved from the importing parent, all or
nothing (`QuotaExceeded`), never made from nothing; a device capability is granted only
where the importer holds that device, with at most the importer's rights and as a child
of the importer's capability (revoking the importer's revokes it); capabilities to
processes and those riding on queued messages are dropped (a pid means nothing here).
"""
from __future__ import annotations

import json
import math
import re
from collections import deque
from typing import TYPE_CHECKING, Any

from ..abi.errors import ABIMismatch, BadArgument, KernelError
from ..abi.types import ABI_VERSION, POOLED_RESOURCES, USD_SCALE, Message, Quota, Right, Segment, SegmentKind
from ..kernel.caps import DEVICE
from ..kernel.events import dumps_canonical
from ..kernel.memory import kernel_text
from ..kernel.process import EXITED, ProcessImage
from ..kernel.values import checked
from . import loop as L
from . import plain
from .config import _shown
from .hibernate import HIBERNATED, _checked_record, _key

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel

AGENT_FORMAT = "agentos.agent/1"
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_NESTING = 200
MAX_SEGMENTS = 100_000
MAX_QUEUED = 10_000   # queued messages a file may hold when the importer has no max_mailbox
MAX_NAMES = 256
MAX_CAPS = 1024
FILE_KEYS = ("format", "abi_version", "image", "name", "priority", "state", "args", "context", "budget", "names",
             "mailbox", "caps")   # exactly what export writes
_RIGHTS = {(r.name or "").lower(): int(r) for r in Right if r not in (Right.NONE, Right.ALL)}


class AgentFileError(BadArgument):
    """An agent file that cannot be imported: malformed, too large, too deep, hostile."""


def export_agent(kernel: "Kernel", pid: int) -> bytes:
    """The agent file of process `pid`, a message loop (hibernated first if it is not)."""
    hib = kernel.hibernation
    if hib is None:
        raise KernelError("export: hibernation is off (KernelConfig.hibernation)")
    proc = kernel._hib_proc(pid, "export")
    if proc.state is not HIBERNATED:
        try:
            kernel.hibernate(pid)
        except KernelError as e:  # says why it cannot hibernate; the caller asked for an export
            raise KernelError(f"export: {e}") from None
    if proc.state is not HIBERNATED:
        raise KernelError(f"export: pid {pid} could not be hibernated (the store refused: see hibernate_error)")
    blob = hib.store.get(_key(pid))
    if blob is None:
        raise KernelError(f"export: pid {pid}'s record is not in the store")
    _checked_record(proc, blob)  # HibernationRecordError if it is malformed
    rec = plain.loads(blob)
    lp = rec.get("loop")
    if lp is None:
        raise KernelError(f"export: pid {pid} ({proc.name}) is not a message loop at the top of its loop: "
                          f"only its context is stored, and a coroutine frame cannot be exported")
    budget: dict[str, Any] = {}
    acct = proc.account
    if acct is not None:  # limits of its own: what it has left travels with it
        view = kernel.accounts.view(acct)
        budget = {r: view["remaining"][r] for r in POOLED_RESOURCES
                  if view["limits"][r] is not None and r != "children"}
    doc = {"format": AGENT_FORMAT, "abi_version": ABI_VERSION, "image": proc.image.entry(),
           "name": proc.name, "priority": proc.priority, "state": lp["state"], "args": lp["args"],
           "context": rec["memory"], "budget": budget, "names": rec["names"] or [],
           "mailbox": [[m[0], m[1], m[3], m[4]] for m in rec["mailbox"] if not _kernel_made(m[1])],
           "caps": [{k: v for k, v in c.items() if k != "ref"} for c in rec["caps"]]}
    return dumps_canonical(doc).encode()


def import_agent(kernel: "Kernel", data: bytes | str, *, parent: int, image: Any = None,
                 max_bytes: int = MAX_FILE_BYTES) -> int:
    """Start the agent a file describes under `parent`; returns its pid."""
    if type(max_bytes) is not int or not 1 <= max_bytes <= MAX_FILE_BYTES * 16:
        raise AgentFileError(f"import: max_bytes must be an int in 1..{MAX_FILE_BYTES * 16}, "
                             f"got {_shown(max_bytes)}")
    doc = _parse(data, max_bytes)
    par = kernel.procs.get(parent) if type(parent) is int else None
    if par is None or par.state is EXITED or par.state is HIBERNATED:
        raise KernelError(f"import: no live, resident parent process {parent!r}")
    want = _text(_get(doc, "image", dict).get("name"), "image.name")
    if image is None:
        img = kernel.images.get(want)
    elif isinstance(image, str):  # a registered image by name
        img = kernel.images.get(str.__str__(image))
        if img is None:
            raise AgentFileError(f"import: no image is registered as {_shown(image)}")
    else:
        try:
            img = ProcessImage.of(image)
        except TypeError as e:
            raise AgentFileError(f"import: image: {e}") from None
    if img is None:
        raise AgentFileError(f"import: the file is of image {want!r}, which this kernel has not registered "
                             f"(the file never chooses code: register the image or pass it)")
    if img.name != want:
        raise AgentFileError(f"import: the file is of image {want!r}, not {img.name!r}")
    if getattr(img.main, "__code__", None) is not L.LOOP_CODE:
        raise AgentFileError(f"import: image {want!r} is not a message loop")
    name = _text(_get(doc, "name", str), "name", 256)
    prio = _get(doc, "priority", int)
    if not 0 <= prio <= par.priority:  # the file never raises itself above the one who imports it
        raise AgentFileError(f"import: priority must be an int in 0..{par.priority} (the importer's), "
                             f"got {_shown(prio)}")
    state = _value(doc.get("state"), "state")
    args = _value(doc.get("args"), "args")
    quota = _quota(_get(doc, "budget", dict))
    segs, next_id = _context(doc.get("context"))
    limit = par.max_mailbox if par.max_mailbox is not None else MAX_QUEUED
    msgs = _mailbox(_get(doc, "mailbox", list), par.pid, limit)
    caps = _get(doc, "caps", list)
    if len(caps) > MAX_CAPS:
        raise AgentFileError(f"import: the file describes {len(caps)} capabilities, more than {MAX_CAPS}")
    grants = _grants(kernel, par, caps)
    names_in = _get(doc, "names", list)
    if len(names_in) > MAX_NAMES:
        raise AgentFileError(f"import: the file registers {len(names_in)} names, more than {MAX_NAMES}")
    names = [_text(n, "names[]", 256) for n in names_in]
    # all checked: now carve (QuotaExceeded leaves nothing behind) and build
    proc = kernel._create(par, img, args, (), quota, False, prio, None, name)
    try:
        proc.coro.close()
        proc.coro = L.resume(img, proc.sys, args, state)  # starts at the top of its loop
        for kind, target, rights, src in grants:
            cap = kernel.caps.grant(proc, kind, target, rights, src.expires, src)
            if proc.devices is None:
                proc.devices = {}
            proc.devices.setdefault(target, cap.ref)
        if segs:
            sp = kernel.memory.space(proc)
            sp.next_id = next_id
            for where, seg in segs:
                (sp.resident if where == "resident" else sp.swap)[seg.id] = seg
                b = seg.body
                sp.recaller.add(seg.id, b if type(b) is str else kernel_text("import", b))
                if where == "resident":
                    if not kernel.accounts.mem_take(proc.account, seg.tokens):  # type: ignore[arg-type]
                        raise AgentFileError("import: the agent's context does not fit the importer's mem budget")
                    sp.resident_tokens += seg.tokens
        if msgs:
            proc.mailbox = deque(msgs)
    except BaseException:
        from ..abi.types import fault

        kernel.terminate(proc, fault("import failed"))
        raise
    for n in names:
        holder = kernel.names.get(n)
        if holder is None or holder.state is EXITED:
            kernel.names[n] = proc
            if proc.names is None:
                proc.names = set()
            proc.names.add(n)
    kernel.events.emit(proc.pid, "import", (img.name, len(msgs), len(grants)))
    return proc.pid


# -- checks: everything before anything is created --------------------------------------
def _parse(data: Any, max_bytes: int) -> dict[str, Any]:
    if isinstance(data, str):
        if str.__len__(data) > max_bytes:  # at least one byte a character: refused before encoding
            raise AgentFileError(f"import: the file is {str.__len__(data)} characters, more than the "
                                 f"{max_bytes} bytes allowed")
        try:
            data = str.encode(data, "utf-8")  # the base method: a subclass's own encode never runs
        except UnicodeEncodeError:
            raise AgentFileError("import: the file is not valid UTF-8 text (a lone surrogate?)") from None
    if not isinstance(data, (bytes, bytearray)):
        raise AgentFileError(f"import: an agent file is bytes, got {type(data).__name__}")
    size = memoryview(data).nbytes  # the buffer's size: a subclass's own __len__ never runs
    if size > max_bytes:
        raise AgentFileError(f"import: the file is {size} bytes, more than the {max_bytes} allowed")
    data = memoryview(data).tobytes()  # plain bytes from here on
    depth = best = 0
    for b in _structure(data):
        depth += 1 if b in (0x5B, 0x7B) else -1
        if depth > best:
            best = depth
            if best > MAX_NESTING:
                raise AgentFileError(f"import: the file nests deeper than {MAX_NESTING} levels")
    try:
        doc = json.loads(bytes(data).decode("utf-8"), parse_constant=_no_constant)
    except AgentFileError:
        raise
    except (ValueError, RecursionError) as e:
        raise AgentFileError(f"import: the file is not JSON: {str(e)[:200]}") from None
    if not isinstance(doc, dict):
        raise AgentFileError(f"import: an agent file is a JSON object, got {type(doc).__name__}")
    if doc.get("format") != AGENT_FORMAT:
        raise AgentFileError(f"import: not an agent file (format {str(doc.get('format'))[:60]!r}, "
                             f"expected {AGENT_FORMAT!r})")
    if doc.get("abi_version") != ABI_VERSION:
        raise ABIMismatch(f"import: the file was written under ABI version {str(doc.get('abi_version'))[:20]}, "
                          f"this kernel speaks {ABI_VERSION}")
    missing = [k for k in FILE_KEYS if k not in doc]
    if missing:  # a missing key is never read as a default (a loop started with no state)
        raise AgentFileError(f"import: the file has no {', '.join(missing)}")
    unknown = [k for k in doc if k not in FILE_KEYS]
    if unknown:
        raise AgentFileError(f"import: the file has unknown key(s) {', '.join(repr(k[:40]) for k in unknown[:5])}")
    return doc


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")


def _structure(data: bytes | bytearray) -> bytes:
    """The brackets of `data` outside strings (for the nesting bound, before parsing)."""
    return _NOT_BRACKET.sub(b"", _STRING.sub(b"", bytes(data)))


def _no_constant(name: str) -> Any:
    raise AgentFileError(f"import: the file holds {name}, which is not a finite number")


def _get(doc: dict[str, Any], key: str, typ: type) -> Any:
    v = doc.get(key)
    if type(v) is not typ:
        raise AgentFileError(f"import: {key} must be a {typ.__name__}, got {type(v).__name__}")
    return v


def _text(v: Any, what: str, max_len: int = 1024) -> str:
    if type(v) is not str or not v or len(v) > max_len:
        raise AgentFileError(f"import: {what} must be a non-empty string of at most {max_len} characters")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise AgentFileError(f"import: {what} holds a lone surrogate") from None
    return v


def _value(enc: Any, what: str) -> Any:
    """A value of the file, decoded by the record codec with every float finite (a tagged
    NaN or infinity is refused too) and checked as a message body is."""
    try:
        v = plain.decode(enc, f"import: {what}", finite=True)
        checked(f"import: {what}", v)
    except plain.Malformed as e:
        raise AgentFileError(str(e)) from None
    except BadArgument as e:
        raise AgentFileError(str(e)) from None
    except (TypeError, ValueError, AttributeError, RecursionError) as e:
        raise AgentFileError(f"import: {what} is malformed: {type(e).__name__}") from None
    return v


def _finite(v: Any) -> bool:
    """A finite number that fits a double: no bool, no 10**400 (which `math.isfinite` cannot take)."""
    return (type(v) is int and -(1 << 53) <= v <= 1 << 53) or (type(v) is float and math.isfinite(v))


def _kernel_made(body: Any) -> bool:
    """A queued Down or SignalMessage (encoded): the kernel's word about pids of this kernel."""
    return type(body) is dict and len(body) == 1 and ("@down" in body or "@signal" in body)


def _quota(budget: dict[str, Any]) -> Quota | None:
    q: dict[str, Any] = {}
    for r, v in budget.items():
        if r not in POOLED_RESOURCES or r == "children":
            raise AgentFileError(f"import: budget names {str(r)[:40]!r}, not a pooled resource")
        if not _finite(v) or v < 0 or (r != "usd" and v != int(v)) or (r == "usd" and v * USD_SCALE > 2**62):
            raise AgentFileError(f"import: budget {r} must be a finite number >= 0, got {str(v)[:40]}")
        q[r] = v if r == "usd" else int(v)
    try:
        return Quota(**q) if q else None
    except (TypeError, ValueError) as e:
        raise AgentFileError(f"import: the budget is not a valid quota: {e}") from None


def _context(ctx: Any) -> tuple[list[tuple[str, Segment]], int]:
    if ctx is None:
        return [], 1
    if type(ctx) is not dict:
        raise AgentFileError("import: context must be an object or null")
    try:
        next_id = ctx["next_id"]
        if type(next_id) is not int or not 1 <= next_id < 2**53:
            raise ValueError("next_id")
        out: list[tuple[str, Segment]] = []
        seen: set[int] = set()
        for where in ("resident", "swap"):
            rows = ctx[where]
            if type(rows) is not list or len(rows) > MAX_SEGMENTS:
                raise ValueError(where)
            for sid, body, tokens, kind, created, covers in rows:
                if type(sid) is not int or not 1 <= sid < next_id or sid in seen:
                    raise ValueError(f"segment id {str(sid)[:20]}")
                seen.add(sid)
                if type(tokens) is not int or not 0 < tokens < 2**40:
                    raise ValueError(f"segment tokens {str(tokens)[:20]}")
                if not _finite(created) or type(covers) is not list or not all(type(c) is int for c in covers):
                    raise ValueError("segment created/covers")
                out.append((where, Segment(sid, _value(body, "context body"), tokens, SegmentKind(kind),
                                           float(created), tuple(covers))))
        return out, next_id
    except AgentFileError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise AgentFileError(f"import: the context is malformed ({str(e)[:80]})") from None


def _mailbox(rows: list[Any], importer: int, limit: int) -> list[Message]:
    """The queued messages, each sent by the importer: a pid in the file means nothing here,
    and a Down or SignalMessage from another kernel would be a forged kernel message."""
    if len(rows) > limit:
        raise AgentFileError(f"import: the file queues {len(rows)} messages, more than the {limit} "
                             f"the importer's mailbox limit allows")
    out = []
    for row in rows:
        if type(row) is not list or len(row) != 4:
            raise AgentFileError("import: a queued message is [sender, body, corr, deadline]")
        sender, body, corr, deadline = row
        if type(sender) is not int or deadline is not None:
            raise AgentFileError("import: a queued message needs an int sender and no deadline")
        if _kernel_made(body):
            raise AgentFileError("import: a queued message is a Down or a SignalMessage, which only "
                                 "this kernel may send")
        out.append(Message(importer, _value(body, "message body"), (), _value(corr, "message corr")))
    return out


def _grants(kernel: "Kernel", par: Any, caps: list[Any]) -> list[tuple[int, str, int, Any]]:
    """Device caps the importer can vouch for: (kind, device, rights, importer's cap)."""
    out = []
    for c in caps:
        if type(c) is not dict:
            raise AgentFileError("import: a capability is described by an object")
        if c.get("kind") != "device":
            continue  # a process capability means nothing on another kernel: dropped
        dev = _text(c.get("target"), "caps[].target", 256)
        want = 0
        for r in _text(c.get("rights"), "caps[].rights", 256).split(","):
            if r not in _RIGHTS:
                raise AgentFileError(f"import: unknown right {r[:20]!r}")
            want |= _RIGHTS[r]
        ref = (par.devices or {}).get(dev)
        src = par.caps.get(ref) if ref is not None else None
        if src is None:
            continue  # the importer holds no such device: nothing is granted
        rights = want & src.rights
        if rights:
            out.append((DEVICE, dev, rights, src))
    return out


__all__ = ["AGENT_FORMAT", "AgentFileError", "MAX_FILE_BYTES", "export_agent", "import_agent"]
