"""Golden recorded runs, one directory per recording format (tests/golden/v<N>/).

Each golden is a run recorded by the agentos of its version, kept after the format moves
on. Every one either replays byte for byte or, when kernel/recording.py no longer lists
its version as replayable, is refused with a `RecordingFormatError` naming both
versions. PROTECTS says what each one guards; a golden without a line fails the suite.

Decisions so far. Format 1 (the runs stored before the version existed, which carry no
format field) replayed under format 2, with its values read as the plain JSON they were
stored as (`ENTRY_UPGRADES[1]`). Format 3 came with ABI 2: init holds a spawn capability
from boot, so every capability ref after it differs from an ABI 1 run with the same seed,
and the kernel cannot reproduce format 1 and 2 events; their goldens are kept and must be
refused, with a message naming both versions. Format 4 (hard budgets) only adds
reservations a format 3 run never had, so format 3 runs still replay, setting nothing
aside. Each later bump decides afresh for every
older version (REPLAYABLE); this test holds each golden to that decision.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from agentos import Kernel
from agentos.abi.errors import RecordingFormatError
from agentos.kernel import recording
from agentos.kernel.events import encode_event
from agentos.kernel.recording import FORMAT_KEY, RECORDING_FORMAT, REPLAYABLE, recorded_format
from agentos.store import MemoryStore
from agentos.store.transfer import dump_run, load_run

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "kernel"))  # the goldens' programs: replay_workloads, by import path

PROTECTS = {
    "v1/agents_kv_echo_policy":
        "a run stored before runs carried a format (so read as format 1), under ABI 1: kv "
        "set/get/delete, async echo reads completing out of order and one failing, read_all, "
        "policy refusals with raise and kill effects, check_policy, spawn with capability "
        "passing, send/recv with timeouts, sleep, remember, now; refused since format 3",
    "v1/agents_many_children":
        "format 1, ABI 1: six children whose asynchronous completions interleave with their "
        "sleeps and the parent's recv timeouts (`at` ticks, journal order); refused since format 3",
    "v2/agents_kv_echo_policy":
        "the workload of the same name in format 2 (tagged values, the format field in the run "
        "row), ABI 1; refused since format 3, whose capability refs differ",
    "v2/agents_many_children":
        "the workload of the same name in format 2, ABI 1; refused since format 3",
    "v2/journal_values_keep_their_types":
        "format 2's tagged values as first recorded (tuples, bytes, non-string and @-looking "
        "keys, infinities), ABI 1; refused since format 3",
    "v3/agents_kv_echo_policy":
        "the first workload under ABI 2 (init's spawn capability, policy asked about kernel "
        "actions): every device, policy and process path of the v1 golden of that name",
    "v3/agents_many_children":
        "interleaved asynchronous completions under ABI 2: `at` ticks and journal order decide "
        "the event order",
    "v3/journal_values_keep_their_types":
        "format 3's tagged values (tuples, bytes, non-string and @-looking keys, infinities) as "
        "recorded before hard budgets; still replayed",
    "v3/tool_calls_before_reservations":
        "tool calls that succeed, fail validation, raise and run concurrently, recorded before "
        "hard budgets: no `reserve` on any entry, so a replay sets nothing aside and matches",
    "v4/agents_kv_echo_policy":
        "every device, policy and process path of the first workload, under hard budgets",
    "v4/agents_many_children":
        "interleaved asynchronous completions under hard budgets: `at` ticks and journal order",
    "v4/journal_values_keep_their_types":
        "values come back from the store as the live program saw them: tuples, bytes, non-string "
        "and @-looking dict keys, infinities; the program logs their types and takes another "
        "path on a tuple, so plain JSON (format 1's reading) diverges",
    "v4/tool_calls_reserved_and_settled":
        "format 4's reason to exist: each bounded tool call is reserved (a `reserve` event, the "
        "`reserve` field) before it runs and settled after, failures included; without the "
        "recorded reservations a replay's events differ",
    "v5/agents_kv_echo_policy":
        "every device, policy and process path of the first workload in format 5, where a "
        "recording kernel writes `recv` events naming each message's send",
    "v5/agents_many_children":
        "messages between many processes: the `recv` events provenance follows across "
        "messages, and the interleaved completions' `at` ticks",
    "v5/journal_values_keep_their_types":
        "typed values through a store, in format 5",
    "v5/tool_calls_reserved_and_settled":
        "reservations and settlements of bounded tool calls, in format 5",
    "v6/agents_kv_echo_policy":
        "every device, policy and process path of the first workload in format 6 (a policy "
        "that is not constant: every decision is journaled), on a kernel that counts loop "
        "turns for network input (none here)",
    "v6/agents_many_children":
        "messages between many processes and interleaved completions, in format 6",
    "v6/journal_values_keep_their_types":
        "typed values through a store, in format 6",
    "v6/tool_calls_reserved_and_settled":
        "reservations and settlements of bounded tool calls, in format 6",
    "v6/net_self_loop":
        "one of format 6's reasons to exist: a node dials itself and sends typed values with a reply "
        "address; the dial and send outcomes, the delivery at its loop turn, the policy asked "
        "on delivery and a dial with no route are journaled, so the replay, which has no node, "
        "no key and no transport, reproduces every event",
    "v6/constant_policy_decisions_unjournaled":
        "the other of format 6's reasons to exist: under AllowAll device reads and writes (sync, async, "
        "read_all, a child's) journal no decision, a dry-run check still does, and one "
        "run_policy entry names the policy replay must run under",
    "v7/agents_kv_echo_policy": "the first workload in format 7 (no hibernation: none recorded)",
    "v7/agents_many_children": "messages between many processes and interleaved completions, in format 7",
    "v7/journal_values_keep_their_types": "typed values through a store, in format 7",
    "v7/tool_calls_reserved_and_settled": "reservations and settlements of bounded tool calls, in format 7",
    "v7/net_self_loop": "a node dialling itself, journaled network input, in format 7",
    "v7/constant_policy_decisions_unjournaled": "a constant policy's unjournaled device decisions, in format 7",
    "v7/hibernation_watermark":
        "format 7's reason to exist: the run row holds the hibernation settings, so the replay's "
        "kernel hibernates the same waiting children past the resident watermark and wakes them "
        "on the same message and timer events",
}


def goldens() -> list[Path]:
    return sorted(HERE.glob("v*/*.jsonl"))


def key(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def load(path: Path, store: Any = None) -> tuple[Any, str]:
    store = store if store is not None else MemoryStore()
    with path.open(encoding="utf-8") as f:
        return store, load_run(store, f)


def event_lines(path: Path) -> list[bytes]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["e"].encode() for r in rows if "e" in r]


@pytest.mark.parametrize("path", goldens(), ids=key)
def test_golden_replays_byte_for_byte_or_is_refused_naming_both_versions(path: Path) -> None:
    store, rid = load(path)
    version = recorded_format(store.get_run(rid).meta)
    assert version == int(path.parent.name[1:]), f"{key(path)} is filed under the wrong version"
    if version not in REPLAYABLE:
        with pytest.raises(RecordingFormatError) as err:
            Kernel.replay_from(store, rid)
        assert f"format {version}" in str(err.value) and f"format {RECORDING_FORMAT}" in str(err.value)
        return
    rep = Kernel.replay_from(store, rid)
    assert rep.identical and rep.complete, str(rep)
    assert rep.recording_format == version and rep.kernel.journal.format == version
    # byte for byte, independently of the replayer's own comparison
    assert [encode_event(e) for e in rep.kernel.events.events()] == event_lines(path)


@pytest.mark.parametrize("path", goldens(), ids=key)
def test_moving_a_golden_between_stores_keeps_every_byte(path: Path, tmp_path: Path) -> None:
    from agentos.store.sqlite import SqliteStore

    original = path.read_text(encoding="utf-8").splitlines()
    store, rid = load(path)
    assert list(dump_run(store, rid)) == original
    sq = SqliteStore(tmp_path / "s.db", "off")
    try:
        _, rid2 = load(path, sq)
        assert list(dump_run(sq, rid2)) == original
        if recorded_format(sq.get_run(rid2).meta) in REPLAYABLE:
            assert Kernel.replay_from(sq, rid2).identical
    finally:
        sq.close()


def test_every_golden_says_what_it_protects() -> None:
    on_disk = {key(p) for p in goldens()}
    assert on_disk == set(PROTECTS), (
        f"goldens without a PROTECTS line: {sorted(on_disk - set(PROTECTS))}; "
        f"PROTECTS lines without a golden: {sorted(set(PROTECTS) - on_disk)}")
    assert all(len(line) > 40 for line in PROTECTS.values())


def test_a_golden_of_every_format_up_to_the_current_one_is_kept() -> None:
    versions = {int(p.parent.name[1:]) for p in goldens()}
    assert versions == set(range(1, RECORDING_FORMAT + 1)), (
        f"goldens exist for formats {sorted(versions)}; every format from 1 to {RECORDING_FORMAT} "
        f"needs its recorded goldens kept (python tests/golden/make_golden.py records the current one)")
    for d in HERE.iterdir():
        if d.is_dir() and not d.name.startswith("__"):
            assert re.fullmatch(r"v[1-9][0-9]*", d.name), f"unexpected directory {d.name} in tests/golden"


def test_the_current_format_is_replayable_and_the_log_describes_every_version() -> None:
    assert REPLAYABLE.get(RECORDING_FORMAT) == ""
    assert all(1 <= v <= RECORDING_FORMAT for v in REPLAYABLE)
    doc = recording.__doc__ or ""
    log = doc[doc.index("Format log:"):]
    for v in range(1, RECORDING_FORMAT + 1):
        assert re.search(rf"^\s+{v}\s+\S", log, re.M), f"the format log has no line for version {v}"


def test_a_new_run_records_the_current_format() -> None:
    from agentos import AllowAll
    from agentos.store import record_run

    store = MemoryStore()
    k = Kernel(deterministic=True, policy=AllowAll())
    rid = record_run(k, store, "fmt")

    async def init(sys: Any, args: Any) -> int:
        return await sys.pid()

    k.run(init)
    meta = store.get_run(rid).meta
    assert meta[FORMAT_KEY] == RECORDING_FORMAT
    rep = Kernel.replay_from(store, rid, image=init)
    assert rep.identical and rep.recording_format == RECORDING_FORMAT


def _with_format(path: Path, value: Any) -> tuple[Any, str]:
    store, rid = load(path)
    meta = dict(store.get_run(rid).meta)
    meta[FORMAT_KEY] = value
    # written into the row as a forger would write the file: the store's own update_run
    # refuses some of these values (NaN, infinity) before they reach a row
    store._runs[rid]["meta"] = meta
    return store, rid


def test_a_run_from_a_newer_agentos_is_refused_naming_both_versions() -> None:
    store, rid = _with_format(goldens()[0], RECORDING_FORMAT + 1)
    with pytest.raises(RecordingFormatError) as err:
        Kernel.replay_from(store, rid)
    msg = str(err.value)
    assert f"recorded in format {RECORDING_FORMAT + 1}" in msg and f"format {RECORDING_FORMAT}" in msg
    assert "newer" in msg and "\n" not in msg
    assert err.value.recorded == RECORDING_FORMAT + 1 and err.value.current == RECORDING_FORMAT


@pytest.mark.parametrize("bad", ["1", 1.0, True, False, 0, -3, None, [1], {"v": 1}, "\ud800", "x" * 5_000_000,
                                 float("nan"), float("inf"), 10**100],
                         ids=["str", "float", "true", "false", "zero", "negative", "null", "list", "dict",
                              "lone-surrogate", "5MB-string", "nan", "inf", "huge"])
def test_a_forged_format_field_is_a_typed_one_line_refusal(bad: Any) -> None:
    store, rid = _with_format(goldens()[0], bad)
    with pytest.raises(RecordingFormatError) as err:
        Kernel.replay_from(store, rid)
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400 and f"format {RECORDING_FORMAT}" in msg


def test_a_10000_deep_format_field_is_refused_not_a_crash() -> None:
    deep: Any = 1
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(RecordingFormatError, match="invalid recording format"):
        recorded_format({FORMAT_KEY: deep}, "deep")


def _as_format_1(row: str) -> str:
    """A journal row whose value is stored the way format 1 stored it: canonical plain JSON."""
    from agentos.kernel.events import canonical, dumps_canonical
    from agentos.kernel.recording import ENTRY_UPGRADES, decode_value

    fields = json.loads(row)
    fields["value"] = canonical(decode_value(fields["value"]))
    fields = ENTRY_UPGRADES[1](fields)  # ... and read back the way format 1 is read
    return dumps_canonical(fields)


def test_the_typed_values_golden_would_diverge_under_format_1s_plain_json() -> None:
    """The golden guards what it says: read with format 1's semantics, the program is handed
    JSON for its tuples and bytes and the replay leaves the recorded path."""
    path = HERE / f"v{RECORDING_FORMAT}" / "journal_values_keep_their_types.jsonl"
    store, rid = load(path)
    rows = store._journal[rid]
    store._journal[rid] = [_as_format_1(r) for r in rows]   # the same journal, read as format 1 read it
    rep = Kernel.replay_from(store, rid)
    assert not rep.identical and rep.divergence is not None
    assert "tuple" in str(rep.divergence["recorded"])


def test_the_reservations_golden_would_diverge_without_its_recorded_reservations() -> None:
    path = HERE / f"v{RECORDING_FORMAT}" / "tool_calls_reserved_and_settled.jsonl"
    store, rid = load(path)
    rows = [json.loads(r) for r in store._journal[rid]]
    assert any("reserve" in r for r in rows)
    store._journal[rid] = [json.dumps({k: v for k, v in r.items() if k != "reserve"}) for r in rows]
    rep = Kernel.replay_from(store, rid)
    assert not rep.identical and rep.divergence is not None, str(rep)


def _bump(monkeypatch: pytest.MonkeyPatch, replayable: dict[int, str],
          upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None) -> None:
    """Pretend the format moved on to RECORDING_FORMAT + 1, as a real bump would."""
    new = RECORDING_FORMAT + 1
    monkeypatch.setattr(recording, "RECORDING_FORMAT", new)
    monkeypatch.setattr(recording, "REPLAYABLE", replayable)
    upgrades = dict(recording.ENTRY_UPGRADES)
    if upgrade is not None:
        upgrades[RECORDING_FORMAT] = upgrade
    monkeypatch.setattr(recording, "ENTRY_UPGRADES", upgrades)


def test_after_a_bump_an_old_run_replays_with_its_own_version_through_the_entry_upgrade(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def upgrade(fields: dict[str, Any]) -> dict[str, Any]:
        seen.append(fields["index"])
        return fields

    old = RECORDING_FORMAT
    _bump(monkeypatch, {old: "replays as before", old + 1: ""}, upgrade)
    path = [p for p in goldens() if p.parent.name == f"v{old}"][0]
    store, rid = load(path)
    rep = Kernel.replay_from(store, rid)
    assert rep.identical, str(rep)
    assert rep.recording_format == old and rep.kernel.journal.format == old  # the old semantics are chosen
    assert len(seen) == len(store.journal_rows(rid)) > 0                     # every entry was upgraded


def test_after_a_bump_that_drops_an_old_version_its_runs_are_refused_naming_both(
        monkeypatch: pytest.MonkeyPatch) -> None:
    old = RECORDING_FORMAT
    _bump(monkeypatch, {old + 1: ""}, None)
    store, rid = load([p for p in goldens() if p.parent.name == f"v{old}"][0])
    with pytest.raises(RecordingFormatError) as err:
        Kernel.replay_from(store, rid)
    assert str(err.value) == (f"run {rid} was recorded in format {old}, which this kernel (format {old + 1}) "
                              f"no longer replays (it replays formats {old + 1})")
