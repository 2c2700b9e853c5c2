"""The `Store` protocol, its row types, and the background writer the SQL stores share.

A store keeps, per run: a run row (name, status, the metadata replay needs, including the
recording format the run was written in), the event log as canonical bytes
(`encode_event`), and the journal as the JSON text it was recorded as; and, across runs,
snapshots and the flight recorder's audit records with their anchor. Audit records are
opaque to the store: bytes kept in append order. Journal rows are read back in the
current entry shape (`journal`), upgraded from the run's format, or as stored
(`journal_rows`, which moving a run between stores uses, so it keeps its format).

Invariant: writes leave the kernel's hot path. The kernel thread only encodes a batch and
puts it on a bounded queue; one writer thread turns queue items into transactions and
commits them according to the durability mode. An event counts as *acknowledged* once
its commit returned (`acked(run_id)`, `on_commit`); with `fsync` and `group` nothing
acknowledged is lost when the process is killed.
"""
from __future__ import annotations

import json
import math
import numbers
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol, runtime_checkable

from ..abi.errors import AgentOSError, RecordingFormatError
from ..kernel.journal import JournalEntry
from ..kernel.recording import RECORDING_FORMAT, recorded_format

DURABILITY_MODES = ("fsync", "group", "off")


# journal entries that are not a device result keyed by (pid, op index)
NOT_DEVICE_OPS = frozenset({"policy", "io_cancel", "clock_jump"})


class StoreError(AgentOSError):
    """A store could not be opened, read or written; the message says which and why."""


class NoSuchRun(StoreError):
    """A run reference names no run, or more than one: the caller's mistake, not the store's."""


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    name: str
    created_at: float
    status: str                      # running | finished | failed
    meta: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    events: int = 0


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    time: float
    pid: int
    kind: str
    raw: bytes                        # the canonical encoding, compared byte for byte on replay

    @property
    def data(self) -> Any:
        try:
            return json.loads(self.raw)[4]
        except (TypeError, ValueError, IndexError, KeyError) as e:
            raise StoreError(f"stored event seq {self.seq} is damaged: {e}") from None


@runtime_checkable
class Store(Protocol):
    """What the kernel, replay, provenance, the flight recorder and agentctl need of a store."""

    def create_run(self, name: str, meta: dict[str, Any], run_id: str | None = None) -> str: ...
    def update_run(self, run_id: str, *, status: str | None = None,
                   meta: dict[str, Any] | None = None, summary: dict[str, Any] | None = None) -> None: ...
    def runs(self) -> list[RunInfo]: ...
    def get_run(self, run_id: str) -> RunInfo: ...
    def append_events(self, run_id: str, rows: list[tuple[int, float, int, str, bytes]]) -> None: ...
    def events(self, run_id: str, *, pid: int | None = None, kind: str | None = None) -> Iterator[StoredEvent]: ...
    def append_journal(self, run_id: str, rows: list[tuple[int, str]]) -> None: ...
    def journal(self, run_id: str) -> list[JournalEntry]: ...
    def journal_rows(self, run_id: str) -> list[str]: ...
    def put_snapshot(self, snap: dict[str, Any], run_id: str | None = None) -> str: ...
    def get_snapshot(self, snap_id: str) -> dict[str, Any]: ...
    def snapshots(self, run_id: str | None = None) -> list[dict[str, Any]]: ...
    def append_audit(self, records: Iterable[bytes | str | dict[str, Any]], *, wait: bool = True) -> None: ...
    def audit_records(self) -> list[bytes]: ...
    def set_anchor(self, anchor: bytes | str | dict[str, Any]) -> None: ...
    def get_anchor(self) -> bytes | None: ...
    def acked(self, run_id: str) -> int: ...
    def kv_put(self, items: Iterable[tuple[str, bytes]]) -> None: ...
    def kv_delete(self, keys: Iterable[str]) -> None: ...
    def kv_get(self, key: str) -> bytes | None: ...
    def kv_items(self, prefix: str) -> list[tuple[str, bytes]]: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def to_bytes(rec: bytes | str | dict[str, Any] | list[Any]) -> bytes:
    if isinstance(rec, bytes):
        return rec
    if isinstance(rec, str):
        return rec.encode()
    if isinstance(rec, (dict, list)):
        return json.dumps(rec, sort_keys=True, separators=(",", ":")).encode()
    raise StoreError(f"an audit record or anchor must be bytes, str or a JSON object, "
                     f"got {type(rec).__name__}")


def entries_of(meta: dict[str, Any], rows: Iterable[str]) -> list[JournalEntry]:
    """Stored journal rows as entries of today's shape, read per the run's recording format.

    A run whose format is unreadable is read as the current one: replay refuses it anyway,
    with the error that says why."""
    try:
        version = recorded_format(meta)
    except RecordingFormatError:
        version = RECORDING_FORMAT
    return JournalEntry.from_json_many(list(rows), version)


MAX_KEY = 1024


def check_key(key: Any) -> str:
    """A key of the store's key-value space: a non-empty str of at most MAX_KEY characters,
    without NUL (PostgreSQL text cannot hold it) or lone surrogates (not encodable)."""
    if not isinstance(key, str) or not key:
        raise StoreError(f"a store key is a non-empty str, got {key!r:.80}")
    if len(key) > MAX_KEY:
        raise StoreError(f"a store key is at most {MAX_KEY} characters, got {len(key)}")
    if "\x00" in key:
        raise StoreError("a store key cannot contain NUL")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise StoreError("a store key must be valid Unicode (it holds a lone surrogate)") from None
    return key


def check_items(items: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    out = []
    for key, value in items:
        if not isinstance(value, (bytes, bytearray)):
            raise StoreError(f"a store value is bytes, got {type(value).__name__}")
        out.append((check_key(key), bytes(value)))
    return out


MAX_NAME = 4096   # characters of a run's name
MAX_RUN_ID = 512  # characters of a run id (its owner claim `owner/<run_id>` is a store key)


def _stored_text(value: Any, what: str, who: str, limit: int) -> str:
    """`value` as text every backend stores as given: a str of at most `limit` characters,
    without NUL (PostgreSQL text cannot hold it) or lone surrogates (not encodable)."""
    if not isinstance(value, str):
        raise StoreError(f"{who}: {what} must be a str, got {type(value).__name__}")
    if len(value) > limit:
        raise StoreError(f"{who}: {what} is at most {limit} characters, got {len(value)}")
    if "\x00" in value:
        raise StoreError(f"{who}: {what} cannot contain NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise StoreError(f"{who}: {what} must be valid Unicode (it holds a lone surrogate)") from None
    return value


def check_run_name(name: Any, who: str = "create_run") -> str:
    """A run's name, refused in the caller's thread (a name the writer cannot store would
    kill it): a str of at most MAX_NAME characters, without NUL or lone surrogates."""
    return _stored_text(name, "name", who, MAX_NAME)


def check_run_id(run_id: Any, who: str = "create_run") -> str | None:
    """None (the store picks an id) or a non-empty str of at most MAX_RUN_ID characters,
    without NUL or lone surrogates."""
    if run_id is None:
        return None
    rid = _stored_text(run_id, "run_id", who, MAX_RUN_ID)
    if not rid:
        raise StoreError(f"{who}: run_id must be a non-empty str, or None for a new id")
    return rid


MAX_META_DEPTH = 200  # nesting of a run's meta or summary: every reader can decode it again


def _plain_tree(value: Any, what: str, who: str, strict: bool, depth: int = 0) -> None:
    """Refuse what a run row's JSON must not hold: nesting past MAX_META_DEPTH (reading it
    back would exhaust a reader's stack); with `strict` (PostgreSQL's JSONB), a NUL or a
    lone surrogate in any key or string."""
    if depth > MAX_META_DEPTH:
        raise StoreError(f"{who}: {what} is nested deeper than {MAX_META_DEPTH} levels")
    t = type(value)
    if t is str:
        if strict:
            _stored_text(value, f"a string in {what}", who, 1 << 30)
    elif t is dict:
        for k, v in value.items():
            if strict and type(k) is str:
                _stored_text(k, f"a key in {what}", who, 1 << 30)
            _plain_tree(v, what, who, strict, depth + 1)
    elif t is list or t is tuple:
        for v in value:
            _plain_tree(v, what, who, strict, depth + 1)


def check_meta(meta: Any, who: str = "create_run", *, strict: bool = False) -> str:
    """A run's metadata as the JSON text stored: a dict JSON can encode, with no NaN or
    infinity (no backend reads those back as JSON) and bounded nesting; `strict` also
    refuses what PostgreSQL's JSONB cannot hold (NUL, lone surrogates)."""
    return _json_object(meta, "meta", who, strict, None)


def _json_object(value: Any, what: str, who: str, strict: bool, default: Any) -> str:
    if not isinstance(value, dict):
        raise StoreError(f"{who}: {what} must be a dict, got {type(value).__name__}")
    try:
        _plain_tree(value, what, who, strict)
        return json.dumps(value, sort_keys=True, allow_nan=False, default=default)
    except (TypeError, ValueError, RecursionError) as e:
        raise StoreError(f"{who}: {what} must be JSON-encodable (no NaN or infinity): {e}") from None


def check_update(status: Any, meta: Any, summary: Any, *,
                 strict: bool = False) -> tuple[str | None, str | None, str | None]:
    """`update_run`'s values as the texts stored, refused in the caller's thread (a value
    the writer cannot store would kill it): a short status, meta and summary JSON objects."""
    if status is not None:
        _stored_text(status, "status", "update_run", 64)
    meta_text = None if meta is None else check_meta(meta, "update_run", strict=strict)
    summary_text = None if summary is None else _json_object(summary, "summary", "update_run", strict, str)
    return status, meta_text, summary_text


# The writer's numeric options: name -> (lowest, highest); group_ms is a number of
# milliseconds, the others are counts. A value out of range would only fail later, in the
# writer thread (an infinite group_ms overflows its timeout), so it is refused up front.
WRITER_OPTIONS: dict[str, tuple[float, float]] = {
    "group_ms": (0.0, 3_600_000.0),      # above 0, at most an hour
    "group_rows": (1, 1 << 30),
    "max_queue": (1, 1 << 20),            # 0 or less would make the queue unbounded
    "max_batch": (1, 1 << 24),
}


def check_writer_options(durability: Any = "group", *, group_ms: Any = 20.0, group_rows: Any = 8192,
                         max_queue: Any = 256, max_batch: Any = 65536) -> dict[str, Any]:
    """The writer's options checked and normalised (`group_ms` a float, the counts ints),
    or a StoreError naming the option and the value."""
    if not isinstance(durability, str) or durability not in DURABILITY_MODES:
        raise StoreError(f"durability must be one of {', '.join(DURABILITY_MODES)}, got {durability!r:.80}")
    out: dict[str, Any] = {"durability": durability}
    lo, hi = WRITER_OPTIONS["group_ms"]
    ok = isinstance(group_ms, numbers.Real) and not isinstance(group_ms, bool)
    try:
        ms = float(group_ms) if ok else math.nan
    except (TypeError, ValueError, OverflowError):
        ms = math.nan
    if not (math.isfinite(ms) and lo < ms <= hi):
        raise StoreError(f"group_ms must be a finite number > 0 and at most {hi:.0f} (milliseconds), "
                         f"got {group_ms!r:.80}")
    out["group_ms"] = ms
    for opt, value in (("group_rows", group_rows), ("max_queue", max_queue), ("max_batch", max_batch)):
        lo, hi = WRITER_OPTIONS[opt]
        if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
                or not lo <= int(value) <= hi):
            raise StoreError(f"{opt} must be an int from {lo} to {hi}, got {value!r:.80}")
        out[opt] = int(value)
    return out


def new_run_id() -> str:
    import os

    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + os.urandom(3).hex()


def resolve(store: Any, ref: str) -> RunInfo:
    """A run by id, unique id prefix, or name (the latest run with that name)."""
    runs = store.runs()
    for r in runs:
        if r.run_id == ref:
            return r
    hits = [r for r in runs if r.run_id.startswith(ref)]
    if len(hits) == 1:
        return hits[0]
    named = [r for r in runs if r.name == ref]
    if named:
        return max(named, key=lambda r: r.created_at)
    if len(hits) > 1:
        raise NoSuchRun(f"run {ref!r} is ambiguous: {', '.join(r.run_id for r in hits[:5])}")
    raise NoSuchRun(f"no run {ref!r} in the store ({len(runs)} runs stored; `agentctl runs` lists them)")


class _Barrier:
    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class WriterStore:
    """Base of the SQL stores: a bounded queue drained by one writer thread.

    Subclasses provide `_connect()` (called in the writer thread), `_apply(conn, item)`,
    `_commit(conn)` and the read methods. Items are tuples whose first field names the op.
    """

    _strict_json = False  # PostgreSQL's JSONB refuses NUL and lone surrogates: its store sets this

    def __init__(self, durability: str = "group", *, group_ms: float = 20.0, group_rows: int = 8192,
                 max_queue: int = 256, max_batch: int = 65536) -> None:
        opts = check_writer_options(durability, group_ms=group_ms, group_rows=group_rows,
                                    max_queue=max_queue, max_batch=max_batch)
        self.durability = durability
        self.group_ms: float = opts["group_ms"]
        self.group_rows: int = opts["group_rows"]
        self.max_batch: int = opts["max_batch"]
        self.on_commit: list[Callable[[dict[str, int]], None]] = []
        self._q: queue.Queue[Any] = queue.Queue(maxsize=opts["max_queue"])
        self._acked: dict[str, int] = {}
        self._error: BaseException | None = None
        self._puts = 0      # writes queued so far (barriers aside)
        self._put_lock = threading.Lock()
        self._good_ids: set[str] = set()  # run ids already checked (the hot path checks once)
        self._synced = 0    # writes known committed by the last flush that returned
        self._closed = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{type(self).__name__}-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise StoreError(f"cannot open the store at {self._location()}: "
                             f"{_reason(self._error)}") from self._error

    # -- kernel-thread side ----------------------------------------------------------
    def _raise_failed(self) -> None:
        err = self._error
        raise StoreError(f"{self._location()}: the store writer failed: {_reason(err)}") from err

    def _put(self, item: Any) -> None:
        if self._error is not None:
            self._raise_failed()
        if self._closed:
            raise StoreError("the store is closed")
        # counted and queued under one lock: a flush's mark then never counts an item that
        # its barrier could overtake in the queue (another thread's, between count and put)
        with self._put_lock:
            if item[0] != "barrier":
                self._puts += 1
            self._enqueue(item)

    def _enqueue(self, item: Any) -> None:
        while True:  # blocks when full: bounded memory, backpressure on the kernel
            try:
                self._q.put(item, timeout=0.5)
                return
            except queue.Full:
                if not self._thread.is_alive():  # nobody will ever drain it
                    if self._error is not None:
                        self._raise_failed()
                    raise StoreError(f"{self._location()}: the store writer has stopped") from None

    def _run_id(self, run_id: Any, who: str) -> str:
        """A run id the writer can store, checked once per id in the caller's thread: one
        it could not bind (a lone surrogate, a NUL, not a str) would kill the writer."""
        if type(run_id) is str and run_id in self._good_ids:
            return run_id
        rid = check_run_id(run_id, who)
        if rid is None:
            raise StoreError(f"{who}: run_id must be a str, got None")
        if len(self._good_ids) < 4096:
            self._good_ids.add(rid)
        return rid

    def append_events(self, run_id: str, rows: list[tuple[int, float, int, str, bytes]]) -> None:
        if rows:
            self._put(("events", self._run_id(run_id, "append_events"), rows))

    def append_journal(self, run_id: str, rows: list[tuple[int, str]]) -> None:
        if rows:
            self._put(("journal", self._run_id(run_id, "append_journal"), rows))

    def append_audit(self, records: Iterable[bytes | str | dict[str, Any]], *, wait: bool = True) -> None:
        rows = [to_bytes(r) for r in records]
        if rows:
            self._put(("audit", rows))
        if wait:
            self.flush()

    def set_anchor(self, anchor: bytes | str | dict[str, Any]) -> None:
        self._put(("anchor", to_bytes(anchor)))
        self.flush()

    def kv_put(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Write key-value pairs; returns once they are committed (durable per the mode)."""
        rows = check_items(items)
        if rows:
            self._put(("kv_put", rows))
            self.flush()

    def kv_delete(self, keys: Iterable[str]) -> None:
        rows = [check_key(k) for k in keys]
        if rows:
            self._put(("kv_del", rows))
            self.flush()

    def acked(self, run_id: str) -> int:
        """The highest event seq of `run_id` whose commit has returned."""
        return self._acked.get(run_id, 0)

    def flush(self) -> None:
        """Return once everything queued before the call is committed (and durable per mode)."""
        if self._closed and not self._thread.is_alive():
            if self._error is not None:
                self._raise_failed()
            return
        if self._puts == self._synced and self._error is None:
            return  # nothing written since the last flush: a reader need not wait for the writer
        b = _Barrier()
        if self._error is not None:
            self._raise_failed()
        with self._put_lock:  # the mark counts exactly the items queued ahead of the barrier
            mark = self._puts
            self._enqueue(("barrier", b))
        while not b.done.wait(0.5):
            if not self._thread.is_alive():
                break
        if b.error is not None or self._error is not None:
            err = b.error or self._error
            raise StoreError(f"{self._location()}: the store writer failed: {_reason(err)}") from err
        if not b.done.is_set():  # the writer ended without a word: never report its queue written
            raise StoreError(f"{self._location()}: the store writer has stopped")
        self._synced = mark

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            while self._thread.is_alive():
                try:
                    self._q.put(("stop",), timeout=0.5)
                    break
                except queue.Full:
                    continue
            self._thread.join(10)

    # -- writer thread ---------------------------------------------------------------
    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as e:  # reported by __init__
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        barriers: list[_Barrier] = []
        batch: list[Any] = []
        try:
            self._loop(conn, barriers, batch)
        except BaseException as e:  # whatever escapes the loop is the store's error: every later call raises it
            self._error = e
            for b in [*barriers, *(it[1] for it in batch if it[0] == "barrier")]:
                b.error = e
                b.done.set()
            barriers.clear()
            try:
                self._fail_pending(e)
            except BaseException:  # (never let the handler raise: waiters see the thread end anyway)
                pass
        try:
            self._close_conn(conn)
        except BaseException:
            pass

    def _loop(self, conn: Any, barriers: list[_Barrier], batch: list[Any]) -> None:
        """Drain the queue into transactions until a stop item. `barriers` and `batch` are
        the caller's, so that on an exception it can fail the barriers still waiting."""
        q = self._q
        pending_rows = 0
        first_at: float | None = None
        acked: dict[str, int] = {}
        stop = False
        while not stop:
            timeout = None
            if first_at is not None:
                timeout = max(0.0, first_at + self.group_ms / 1000.0 - time.monotonic())
            batch.clear()
            try:
                batch.append(q.get(timeout=timeout))
            except queue.Empty:
                pass
            while len(batch) < self.max_batch:  # drain what is there, bounded
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            for it in batch:
                op = it[0]
                if op == "barrier":
                    barriers.append(it[1])
                elif op == "stop":
                    stop = True
                else:
                    pending_rows += self._apply(conn, it) or 1
                    if op == "events" and it[2]:
                        acked[it[1]] = it[2][-1][0]
                    if first_at is None:
                        first_at = time.monotonic()
            batch.clear()
            due = (self.durability != "group" or barriers or stop or pending_rows >= self.group_rows
                   or (first_at is not None and time.monotonic() - first_at >= self.group_ms / 1000.0))
            if due and (pending_rows or barriers):
                if pending_rows:
                    self._commit(conn)
                pending_rows = 0
                first_at = None
                if acked:
                    self._acked.update(acked)
                    for cb in self.on_commit:
                        cb(dict(acked))
                    acked = {}
                for b in barriers:
                    b.done.set()
                barriers.clear()

    def _fail_pending(self, e: BaseException) -> None:
        """Fail the barriers still queued, and empty the queue so no producer stays blocked.
        Reads the queue's own deque: its `get` may be what failed."""
        q = self._q
        with q.mutex:
            items = list(q.queue)
            q.queue.clear()
            q.not_full.notify_all()
        for it in items:
            if it[0] == "barrier":
                it[1].error = e
                it[1].done.set()

    def _location(self) -> str:
        """Where the store lives, for messages (a file path; never a password)."""
        try:
            return str(self._where())  # type: ignore[attr-defined]
        except Exception:
            return type(self).__name__

    # subclass hooks
    def _connect(self) -> Any:
        raise NotImplementedError

    def _apply(self, conn: Any, item: Any) -> int:
        raise NotImplementedError

    def _commit(self, conn: Any) -> None:
        raise NotImplementedError

    def _close_conn(self, conn: Any) -> None:
        conn.close()

    # -- writes that wait ---------------------------------------------------------------
    def has_run(self, run_id: str) -> bool:
        """Whether a run with exactly this id is stored (the read side provides it)."""
        raise NotImplementedError

    def create_run(self, name: str, meta: dict[str, Any], run_id: str | None = None) -> str:
        """Write a run row and return its id. Everything the writer could not store (a name
        that is not text, an id already taken, metadata JSON cannot encode) is refused here,
        before anything is queued, and leaves the store usable."""
        name = check_run_name(name)
        rid = check_run_id(run_id)
        body = check_meta(meta, strict=self._strict_json)
        for _ in range(16):  # a generated id that is taken (two in one second) is drawn again
            candidate = rid or new_run_id()
            if not self.has_run(candidate):
                taken: list[bool] = []  # the writer marks it if another writer took the id first
                self._put(("run", (candidate, name, time.time(), "running", body, "{}"), taken))
                self.flush()
                if not taken:
                    return candidate
            if rid is not None:
                raise StoreError(f"run {rid!r:.120} already exists in {self._location()}")
        raise StoreError(f"{self._location()}: no free run id found")

    def update_run(self, run_id: str, *, status: str | None = None, meta: dict[str, Any] | None = None,
                   summary: dict[str, Any] | None = None) -> None:
        rid = self._run_id(run_id, "update_run")
        status_, meta_text, summary_text = check_update(status, meta, summary, strict=self._strict_json)
        if not self.has_run(rid):
            raise StoreError(f"update_run: no run {rid!r:.120} in {self._location()}")
        self._put(("update", rid, status_, meta_text, summary_text))
        self.flush()

    def put_snapshot(self, snap: dict[str, Any], run_id: str | None = None) -> str:
        if run_id is not None:
            run_id = self._run_id(run_id, "put_snapshot")
        sid = new_run_id()
        self._put(("snapshot", (sid, run_id, snap.get("pid"), time.time(), json.dumps(snap, sort_keys=True))))
        self.flush()
        return sid


def _reason(e: BaseException | None) -> str:
    """An error's message without repeating a location the caller already names."""
    if isinstance(e, StoreError):
        return str(e)
    return f"{e}" if str(e) else type(e).__name__


__all__ = ["DURABILITY_MODES", "MAX_KEY", "MAX_NAME", "MAX_RUN_ID", "NoSuchRun", "RunInfo", "Store", "StoreError",
           "StoredEvent", "WRITER_OPTIONS", "WriterStore", "check_meta", "check_run_id", "check_run_name",
           "check_writer_options", "entries_of", "new_run_id", "resolve", "to_bytes"]
