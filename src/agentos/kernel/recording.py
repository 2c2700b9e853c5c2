"""The format of a recorded run, and its version: `RECORDING_FORMAT`.

A recorded run is three things a store keeps: the run row's metadata (how the kernel was
built and booted), the journal (every input from outside the program) and the event log
as canonical bytes. Replay feeds the journal back and compares the events byte for byte,
so a change to what is journaled, to how an entry or an event is encoded, or to how
replay reads them changes what an old recording means. The recorder stores
`RECORDING_FORMAT` in the run's metadata; replay reads it first and either replays the
run with its version's semantics or refuses it with a `RecordingFormatError` that names
both versions. A run stored before the version existed has none and is version 1.

How to bump (any change of the kind above):
  1. Raise RECORDING_FORMAT and add a line to the log below: what changed and why.
  2. Decide whether runs of the previous version still replay. They can when this kernel
     still reproduces their events byte for byte, typically when the new version only
     adds entries old runs never had. Then keep the old version in REPLAYABLE with a note
     of what replay does differently for it, let the subsystem that differs branch on
     `journal.format` (the version the journal being replayed was recorded in), and, if
     the entry fields changed, add ENTRY_UPGRADES[old] to turn an old entry into the new
     shape. Otherwise drop it from REPLAYABLE: its runs are then refused, clearly.
  3. Record goldens of the new version (`python tests/golden/make_golden.py` writes
     tests/golden/v<N>/) and keep every older version's: the golden test replays each one,
     or checks that it is refused, according to REPLAYABLE.

Format log:
  1  The first format. Journal entry fields: pid, index, op (open, read, write; policy:
     one per policy check, numbered per pid in `index`; io_cancel: `value` ops from
     `index` on were started but never completed), device, action, request, ok, value
     (the result, or the error message), error_type, tokens, tool_calls, usd, reductions,
     at (the kernel I/O tick an asynchronous completion was applied at; null: inline).
     Events: canonical JSON `[seq, time, pid, kind, data]` (`events.encode_event`).
  2  An entry's `value` (what the program is handed) keeps its Python type through a
     store: tuples, bytes, dicts with keys that are not strings (or start with "@", or are
     not in sorted order, as stored text sorts them) and non-finite floats are tagged
     (`encode_value`). In format 1 a stored run handed a
     replayed program a list where the live one had a tuple, and {"bytes": hex} for
     bytes, so a program that looked at the type behaved differently under replay.
  3  ABI 2: init holds a spawn capability from boot, so every capability ref drawn after
     it differs from a format 1 or 2 run with the same seed, and spawn, send, signals and
     VFS operations are journaled policy checks wherever a rule names them; the run row
     records which of those actions the policy governed (`governs`), so a replay asks
     policy about the same ones. This kernel cannot reproduce the events of an ABI 1 run,
     so formats 1 and 2 are refused.
  4  Hard budgets: an entry of a bounded driver's operation carries `reserve` (tokens,
     tool_calls, usd_nano set aside before the driver ran), a reservation the budget
     could not hold is journaled as a refusal, and replay reserves and kills from them.
     A format 3 run has no `reserve` anywhere: replay sets nothing aside, as it did.
  5  Time and messages: under a virtual clock the kernel may jump to the next timer while
     driver I/O hangs; each jump is a "clock_jump" entry at its I/O tick, applied at that
     tick on replay. A recording kernel writes a `recv` event naming the sender and the
     seq of its send (`message_events`, recorded in the run row), which provenance follows
     across messages. A format 3 or 4 run has neither: replay applies no jump and writes
     no `recv` event, as its kernel did.
  6  Network input: a kernel on a network journals, at the turn of its dispatch loop they
     were applied at (`at`), each verified remote delivery ("net.in", the envelope's fields),
     the frames dropped at ingress since the last turn ("net.drop", counts by reason) and
     the start of its network source ("net.sources"); `dial` and a `send` on a remote
     capability journal their outcome ("net.dial", "net.send", keyed by the process's op
     index). Events `remote_send`, `remote_recv`, `net_drop`, `net_undeliverable`. A format
     5 run has none of these: replay applies none, as its kernel never received any.
     Cheap recording: under a policy that gives every action the same allow
     (`constant_decision`, e.g. AllowAll) a device read or write journals no "policy"
     entry (its own entry names the action); one "run_policy" entry names the policy (its
     import path and rule), and replay answers those checks from it, refusing to replay
     under another policy. Journal entries are written by a fixed layout with the same
     bytes as before. A format 3, 4 or 5 run has every decision in its journal:
     replay reads them all, as it did.
  7  Hibernation: a kernel booted with `KernelConfig.hibernation` records its settings
     (watermarks, low water, idle timeouts) in the run row under "hibernation", and replay
     builds its kernel with them (and a store of its own), so the same processes hibernate
     and wake at the same events (`hibernate`, `wake`, `hibernate_error` events); a store
     call that failed is journaled (pid 0, op "hibernate.store_error") and fails again in
     the replay. A format
     6 run has no such key: replay hibernates nothing, as its kernel did.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from ..abi.errors import RecordingFormatError
from .events import canonical

RECORDING_FORMAT = 7

FORMAT_KEY = "recording_format"   # where the version lives in a run's metadata

# version -> what replay does differently for runs of that version ("" for the current one)
REPLAYABLE: dict[int, str] = {
    3: "no reservation was recorded (no `reserve` on any entry): replay sets nothing aside",
    4: "no clock jump or recv event was recorded: replay applies none and writes none",
    5: "no network input and no run_policy entry were recorded: replay applies no network input, and reads every policy decision from the journal",
    6: "no hibernation settings were recorded: replay hibernates nothing",
    7: "",
}
# (Format 1 replayed, until format 3, with its values as the plain JSON they were stored as:
# ENTRY_UPGRADES[1], which still reads a format 1 journal for anything else that reads it.)


def _plain_json_value(fields: dict[str, Any]) -> dict[str, Any]:
    """Format 1 -> 2: a value stored as plain JSON, tagged so that reading it gives that JSON
    (the value a format 1 replay handed the program)."""
    return {**fields, "value": encode_value(fields.get("value"))}


# version v -> a function turning a journal entry's fields as stored in v into v + 1's
ENTRY_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _plain_json_value}

_TAGS = ("@tuple", "@bytes", "@dict", "@float")


def encode_value(obj: Any) -> Any:
    """A journaled value as JSON that `decode_value` turns back into the same Python value:
    JSON types as they are; tuples, bytes, dicts whose keys are not plain strings in sorted
    order, and non-finite floats tagged. Anything else (dataclasses, named tuples, other objects) is
    stored in its canonical event form, which replay hands back as that form."""
    t = type(obj)
    if obj is None or t is str or t is int or t is bool:
        return obj
    if t is float:
        return obj if math.isfinite(obj) else {"@float": repr(obj)}
    if t is list:
        return [encode_value(x) for x in obj]
    if t is dict:  # stored text sorts keys: a dict in any other order keeps it as pairs
        ks = list(obj)
        if all(type(k) is str and not k.startswith("@") for k in ks) and ks == sorted(ks):
            return {k: encode_value(v) for k, v in obj.items()}
        return {"@dict": [[encode_value(k), encode_value(v)] for k, v in obj.items()]}
    if t is tuple:
        return {"@tuple": [encode_value(x) for x in obj]}
    if t is bytes:
        return {"@bytes": obj.hex()}
    return encode_value(canonical(obj))  # JSON types only: this escapes its "@" keys


def decode_value(obj: Any) -> Any:
    """The inverse of `encode_value`."""
    t = type(obj)
    if t is list:
        return [decode_value(x) for x in obj]
    if t is not dict:
        return obj
    if len(obj) == 1:
        (tag, body), = obj.items()
        if tag in _TAGS:
            if tag == "@tuple":
                return tuple(decode_value(x) for x in body)
            if tag == "@bytes":
                return bytes.fromhex(body)
            if tag == "@float":
                return float(body)
            return {_hashable(decode_value(k)): decode_value(v) for k, v in body}
    return {k: decode_value(v) for k, v in obj.items()}


def _hashable(key: Any) -> Any:
    return key if not isinstance(key, (list, dict)) else repr(key)  # a forged key: keep it usable


def recorded_format(meta: Mapping[str, Any], run_id: str = "?") -> int:
    """The version a run was recorded in (1 when it predates the field)."""
    v = meta.get(FORMAT_KEY, 1)
    if type(v) is not int or v < 1:
        raise RecordingFormatError(
            f"run {run_id} has an invalid recording format {_short(v)} (expected a positive integer); "
            f"this kernel records format {RECORDING_FORMAT}", recorded=None, current=RECORDING_FORMAT)
    return v


def check_replayable(meta: Mapping[str, Any], run_id: str = "?") -> int:
    """The run's version if this kernel can replay it; else a `RecordingFormatError`."""
    v = recorded_format(meta, run_id)
    if v in REPLAYABLE:
        return v
    known = ", ".join(str(n) for n in sorted(REPLAYABLE)) or "none"
    if v > RECORDING_FORMAT:
        why = (f"run {run_id} was recorded in format {v}, newer than this kernel's format "
               f"{RECORDING_FORMAT}: replay it with the newer agentos that recorded it")
    else:
        why = (f"run {run_id} was recorded in format {v}, which this kernel (format {RECORDING_FORMAT}) "
               f"no longer replays (it replays formats {known})")
    raise RecordingFormatError(why, recorded=v, current=RECORDING_FORMAT)


def upgrade_entry(fields: dict[str, Any], version: int) -> dict[str, Any]:
    """A journal entry's fields as stored in `version`, in the current format's shape."""
    for v in range(version, RECORDING_FORMAT):
        step = ENTRY_UPGRADES.get(v)
        if step is not None:
            fields = step(fields)
    return fields


def _short(value: Any, limit: int = 60) -> str:
    """A bounded, one-line rendering of whatever the metadata held there."""
    if isinstance(value, str) and len(value) > limit:
        value = value[:limit]
    try:
        text = repr(value)
    except RecursionError:  # a 10,000-deep structure
        return f"<a deeply nested {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["ENTRY_UPGRADES", "FORMAT_KEY", "RECORDING_FORMAT", "REPLAYABLE", "check_replayable",
           "decode_value", "encode_value", "recorded_format", "upgrade_entry"]
