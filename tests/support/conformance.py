"""One test suite, two kernels: every kernel test runs live and again record-then-replay.

In the spirit of anyio's `anyio_backend` fixture, the `kernel_mode` fixture is
parametrised ["live", "replay"] for every test under a directory whose conftest has an
autouse fixture requesting `conformance` (this module is a pytest plugin, loaded by
tests/conftest.py; the directories are listed below). Tests need no change: in replay mode `Kernel.boot` is wrapped for the test's duration, so every run the
test makes, through `tests.support.boot.boot` or on a `Kernel` it built itself, is

  1. recorded into a store as it runs live (`record_run`, kept out of sight of drivers
     that look for "the recorded run"), with a copy of the program's closure state, of
     the test-module globals it names and of init's args taken before it starts;
  2. rebuilt from the stored run and replayed (`Kernel.replay_from`'s machinery, with no
     driver present) by the copied program, on a kernel built with the live one's
     settings the run row does not hold (recaller, pager, extensions, VFS mount table),
     so the replay cannot see what the live run left in the test's lists and dicts;
  3. checked: the replay's event log is byte-identical to the live one, its result (exit
     reason, value, pid) is the same, `ps()` is the same at every event flush and at the
     end, metrics and the init process's budget are the same, and the plain data the
     copied program left in its closures and globals equals what the live program left.

The test then gets the replay's `RunResult`, and the live kernel (whose state was checked
equal to the replay's). A test that cannot replay on purpose (a real clock, wall time) is
marked `@pytest.mark.live_only(reason=...)` and runs live only; an unmarked test whose
kernel cannot be replayed fails in replay mode saying why. A test that runs no kernel to
completion in live mode is skipped in replay mode (there is nothing to replay).
`pytest` ends with a summary line of how many tests ran in both modes and which are live only.

Opted in: tests/kernel, tests/userland, tests/drivers, tests/store, tests/provenance,
tests/vfs. Not yet, and why: tests/policy (approval requests and answers are not
journaled, so a run with an approval channel does not replay); tests/audit (its kernels
commit in groups on the wall clock; its other tests run no kernel); tests/sandbox,
tests/security, tests/cli and tests/e2e (real OS processes and wall-clock kernels).
"""
from __future__ import annotations

import copy
import dataclasses
import enum
import math
import os
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pytest

from agentos import Kernel
from agentos.kernel.events import canonical

MODES = ("live", "replay")
_ORIGINAL_BOOT = Kernel.boot


@dataclass
class _Tracker:
    """What one test's kernels did, in one mode."""

    test: str
    mode: str
    completed: int = 0          # runs on a replayable kernel that finished
    replayed: int = 0           # of those, checked against a replay (replay mode)
    unreplayable: list[str] = field(default_factory=list)


@dataclass
class _Session:
    live_completed: dict[str, int] = field(default_factory=dict)   # test (without mode) -> runs
    live_unreplayable: dict[str, list[str]] = field(default_factory=dict)
    replayed_tests: list[str] = field(default_factory=list)
    kernel_free: list[str] = field(default_factory=list)
    live_only: dict[str, str] = field(default_factory=dict)


_session = _Session()
_current: _Tracker | None = None


# -- pytest plumbing ----------------------------------------------------------------------

def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "live_only(reason): this kernel test cannot run record-then-replay (say why)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kernel_mode" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("live_only")
    if marker is not None:
        reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
        if not reason:
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: live_only needs a reason")
        _session.live_only[metafunc.definition.nodeid] = reason
        metafunc.parametrize("kernel_mode", ["live"], indirect=True)
    else:
        metafunc.parametrize("kernel_mode", list(MODES), indirect=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    s = _session
    if not (s.replayed_tests or s.live_only):
        return
    tr = terminalreporter
    tr.write_sep("-", "live + replay conformance")
    tr.write_line(f"{len(s.replayed_tests)} tests ran live and record-then-replay with identical results; "
                  f"{len(s.kernel_free)} run no kernel (replay skipped); {len(s.live_only)} are live only:")
    for nodeid, reason in sorted(s.live_only.items()):
        tr.write_line(f"  live only: {nodeid}: {reason}")


@pytest.fixture
def kernel_mode(request: pytest.FixtureRequest) -> str:
    """"live" or "replay": how this test's kernels run (see the module docstring)."""
    return getattr(request, "param", "live")


def _base_id(nodeid: str, mode: str) -> str:
    """The test's id without its mode parameter, so a replay item finds its live twin."""
    return nodeid.replace(f"-{mode}]", "]").replace(f"[{mode}-", "[").replace(f"[{mode}]", "")


@pytest.fixture
def conformance(kernel_mode: str, request: pytest.FixtureRequest,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Runs the test's kernels in `kernel_mode`. A directory opts in with an autouse fixture
    in its conftest that requests this one (tests/kernel/conftest.py)."""
    global _current
    base = _base_id(request.node.nodeid, kernel_mode)
    if kernel_mode == "replay" and base in _session.live_completed:
        if _session.live_completed[base] == 0 and not _session.live_unreplayable.get(base):
            _session.kernel_free.append(base)
            pytest.skip("runs no kernel to completion: nothing to replay")
    tracker = _Tracker(request.node.nodeid, kernel_mode)
    monkeypatch.setattr(Kernel, "boot", _conformance_boot)
    _current = tracker
    try:
        yield kernel_mode
    finally:
        _current = None
    if kernel_mode == "live":
        _session.live_completed[base] = tracker.completed
        _session.live_unreplayable[base] = tracker.unreplayable
    else:
        if tracker.unreplayable:
            pytest.fail(f"{request.node.nodeid} ran a kernel that cannot be replayed "
                        f"({'; '.join(sorted(set(tracker.unreplayable)))}): make it deterministic, or mark "
                        f"the test @pytest.mark.live_only(reason=...)", pytrace=False)
        if tracker.replayed:
            _session.replayed_tests.append(base)


# -- the wrapped boot -------------------------------------------------------------------------

def _unreplayable(k: Kernel) -> str | None:
    if not k.clock.virtual:
        return "it runs a real clock"
    if k.journal is None:
        return "it keeps no journal (record=False)"
    if k.events.seq or k.next_pid != 1:
        return "it runs a second time on the same kernel"
    if k.approvals is not None:
        return "it has an approval channel: approval requests and answers are not journaled"
    return None


async def _conformance_boot(self: Kernel, init: Any, **kw: Any) -> Any:
    tracker = _current
    if tracker is None or self.replaying:
        return await _ORIGINAL_BOOT(self, init, **kw)
    why = _unreplayable(self)
    if why is not None or tracker.mode == "live":
        res = await _ORIGINAL_BOOT(self, init, **kw)
        if why is None:
            tracker.completed += 1
        else:
            tracker.unreplayable.append(why)
        return res
    return await _record_then_replay(self, init, kw, tracker)


async def _record_then_replay(live: Kernel, init: Any, kw: dict[str, Any], tracker: _Tracker) -> Any:
    from agentos.kernel.rebuild import replay_run
    from agentos.store import MemoryStore, record_run

    store = MemoryStore()
    shared = dict(live.driver_shared)
    # recorded without the `recv` events a store's recorder would add: the test sees the
    # kernel exactly as it built it
    rid = record_run(live, store, tracker.test, message_events=False, keep_in_memory=True)  # the test reads them
    live.driver_shared.clear()  # drivers that look for "the recorded run" must not find this one
    live.driver_shared.update(shared)
    program = _Snapshot(live, init, dict(live.images), kw.get("args"))  # before the live run changes anything
    live_ps: list[Any] = []
    sampler = _ps_sampler(live, live_ps)
    live.events.add_sink(sampler)
    try:
        res = await _ORIGINAL_BOOT(live, init, **kw)
    finally:
        live.events.sinks.remove(sampler)
    tracker.completed += 1
    replay_ps: list[Any] = []

    def setup(k: Kernel) -> None:
        program.kernel_seen_by_copy.target = k
        k.events.add_sink(_ps_sampler(k, replay_ps))
        _same_mounts(live, k)

    rep = await replay_run(store, rid, image=program.init, images=program.images, args=program.args,
                           options=_options(live), setup=setup)
    where = f"{tracker.test}, run {tracker.completed}"
    assert rep.identical, f"{where}: the replay is not the live run: {rep}"
    replay = rep.kernel
    assert rep.result is not None, f"{where}: the replay did not finish: {rep}"
    assert str(rep.result.reason) == str(res.reason), f"{where}: exit {rep.result.reason} != live {res.reason}"
    assert rep.result.pid == res.pid
    assert _same(rep.result.value, res.value), \
        f"{where}: replay returned {rep.result.value!r}, live returned {res.value!r}"
    assert replay_ps == live_ps, f"{where}: ps() differs between live and replay at an event flush"
    assert canonical(replay.ps()) == canonical(live.ps()), f"{where}: ps() differs after the run"
    assert replay.metrics() == live.metrics(), f"{where}: metrics differ"
    assert replay.accounts.view(replay.init.account) == live.accounts.view(live.init.account), \
        f"{where}: the init process's budget differs"
    program.assert_same_observations(where)
    tracker.replayed += 1
    return rep.result


def _ps_sampler(k: Kernel, out: list[Any]) -> Callable[[list[Any]], None]:
    def sample(batch: list[Any]) -> None:
        out.append((batch[-1].seq, canonical(k.ps())))
    return sample


def _same_mounts(live: Kernel, replay: Kernel) -> None:
    """The replay's VFS gets the live kernel's mount table (setup made outside the run). A
    replaying VFS answers every backend operation from the journal and touches no backend."""
    lv, rv = live.extensions.get("vfs"), replay.extensions.get("vfs")
    if lv is not None and rv is not None and hasattr(lv, "mounts"):
        rv.mounts.update(lv.mounts)


def _options(k: Kernel) -> dict[str, Any]:
    """Kernel settings a stored run does not hold, which the replay must be built with."""
    c = k.config
    return {"recaller": c.recaller, "pager": c.pager, "event_ring": c.event_ring, "extensions": c.extensions}


# -- the program's own state: copied before the live run, compared after the replay ----------

class _Redirect:
    """Stands in the copied program for the live kernel a test's closure refers to: it is
    the replaying kernel once that exists (a program that peeks at 'its kernel')."""

    def __init__(self) -> None:
        self.target: Any = None

    def __getattr__(self, name: str) -> Any:
        if self.target is None:
            raise AttributeError(name)
        return getattr(self.target, name)


class _Snapshot:
    """A copy of a program (and images registered by name) that shares no mutable state with
    the test: closures are deep-copied, and a function defined in a test module gets a copy
    of that module's namespace with the data it names deep-copied (a module-level `starts`
    list, say). The replay's side effects stay in the copy."""

    def __init__(self, live: Kernel, init: Any, images: dict[str, Any], args: Any) -> None:
        self.kernel_seen_by_copy = _Redirect()
        self.memo: dict[int, Any] = {id(live): self.kernel_seen_by_copy}
        self.pairs: list[tuple[Any, Any]] = []
        self.namespaces: dict[int, tuple[dict[str, Any], dict[str, Any], set[str]]] = {}  # original, copy, copied
        with _cloning_functions(self):
            self.init = _deep(init, self.memo)
            self.images = {name: _deep(img, self.memo) for name, img in images.items()}
            self.args = _deep(args, self.memo)  # as given, not the run row's JSON rendering

    def clone_function(self, fn: types.FunctionType, memo: dict[int, Any]) -> Any:
        ours = _is_test_code(fn)
        if not ours and not fn.__closure__ and not fn.__defaults__ and not fn.__kwdefaults__:
            return fn  # library code with nothing of its own to copy
        g = self._namespace(fn.__globals__) if ours else fn.__globals__
        cells = tuple(types.CellType() for _ in fn.__closure__ or ())
        new = types.FunctionType(fn.__code__, g, fn.__name__, None, cells or None)
        memo[id(fn)] = new
        if ours:
            for name in _global_names(fn.__code__):
                self._isolate(fn.__globals__, name, memo)
        for old, cell in zip(fn.__closure__ or (), cells):
            try:
                cell.cell_contents = _deep(old.cell_contents, memo)
            except ValueError:  # an empty cell (a name assigned later)
                pass
        new.__defaults__ = _deep(fn.__defaults__, memo)
        new.__kwdefaults__ = _deep(fn.__kwdefaults__, memo)
        new.__qualname__ = fn.__qualname__
        new.__module__ = fn.__module__
        new.__doc__ = fn.__doc__
        new.__dict__.update(fn.__dict__)
        self.pairs.append((fn, new))
        return new

    def _namespace(self, original: dict[str, Any]) -> dict[str, Any]:
        entry = self.namespaces.get(id(original))
        if entry is None:
            entry = self.namespaces[id(original)] = (original, dict(original), set())
        return entry[1]

    def _isolate(self, original: dict[str, Any], name: str, memo: dict[int, Any]) -> None:
        """Give the copied namespace its own copy of the global `name`, if it is data or code."""
        _, copied, done = self.namespaces[id(original)]
        if name in done or name not in original:
            return
        done.add(name)
        value = original[name]
        if isinstance(value, (types.ModuleType, type, types.BuiltinFunctionType)):
            return
        copied[name] = _deep(value, memo)

    def assert_same_observations(self, where: str) -> None:
        """The plain data the replayed copy left in its closures and in the test module's
        globals it names equals what the live program left in the test's."""
        for live_fn, copy_fn in self.pairs:
            for name, a, b in zip(live_fn.__code__.co_freevars, live_fn.__closure__ or (), copy_fn.__closure__ or ()):
                try:
                    x, y = a.cell_contents, b.cell_contents
                except ValueError:
                    continue
                _assert_same(where, f"{live_fn.__qualname__}'s {name!r}", x, y)
        for original, copied, names in self.namespaces.values():
            for name in sorted(names):
                if name in original and name in copied:
                    _assert_same(where, f"the global {name!r} of {original.get('__name__')}", original[name],
                                 copied[name])


def _assert_same(where: str, what: str, x: Any, y: Any) -> None:
    if x is y or isinstance(x, types.FunctionType):
        return
    px, py = _plain(x), _plain(y)
    if px is _OPAQUE or py is _OPAQUE:
        return
    assert px == py, f"{where}: {what} differs: live left {x!r}, the replay left {y!r}"


_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SUPPORT = os.path.dirname(os.path.abspath(__file__))


def _is_test_code(fn: types.FunctionType) -> bool:
    """Code written in the test suite (not agentos, not this machinery)."""
    path = os.path.abspath(fn.__code__.co_filename)
    return path.startswith(_TESTS + os.sep) and not path.startswith(_SUPPORT + os.sep)


def _global_names(code: types.CodeType) -> set[str]:
    """Every name `code` and the code nested in it might look up as a global."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


class _cloning_functions:
    """While active, deepcopy copies closures (functions are otherwise shared, not copied)."""

    def __init__(self, snap: _Snapshot) -> None:
        self.snap = snap

    def __enter__(self) -> None:
        self.saved = copy._deepcopy_dispatch.get(types.FunctionType)  # type: ignore[attr-defined]
        copy._deepcopy_dispatch[types.FunctionType] = self.snap.clone_function  # type: ignore[attr-defined]

    def __exit__(self, *exc: Any) -> None:
        copy._deepcopy_dispatch[types.FunctionType] = self.saved  # type: ignore[attr-defined]


def _deep(obj: Any, memo: dict[int, Any]) -> Any:
    """A deep copy, or the object itself when it cannot be copied (a lock, a socket, a loop)."""
    try:
        return copy.deepcopy(obj, memo)
    except Exception:
        return obj


_OPAQUE = object()


def _plain(x: Any, depth: int = 0) -> Any:
    """`x` as comparable plain data, or _OPAQUE when it holds something this cannot judge."""
    if depth > 200:
        return _OPAQUE
    if x is None or isinstance(x, (bool, int, str, bytes)):
        return (type(x).__name__, x)
    if isinstance(x, float):
        return ("float", repr(x) if math.isnan(x) else x)
    if isinstance(x, enum.Enum):
        return ("enum", type(x).__name__, x.name)
    if isinstance(x, BaseException):
        return ("exception", type(x).__name__, str(x))
    if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
        items = [_plain(i, depth + 1) for i in x]
        return _OPAQUE if _OPAQUE in items else (type(x).__name__, items)
    if isinstance(x, (set, frozenset)):
        items = [_plain(i, depth + 1) for i in x]
        return _OPAQUE if _OPAQUE in items else (type(x).__name__, sorted(items, key=repr))
    if isinstance(x, dict):
        items = [(_plain(k, depth + 1), _plain(v, depth + 1)) for k, v in x.items()]
        if any(_OPAQUE in kv for kv in items):
            return _OPAQUE
        return ("dict", sorted(items, key=repr))
    if hasattr(x, "_fields"):  # a named tuple
        return _plain_fields(type(x).__name__, [(f, getattr(x, f)) for f in x._fields], depth)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _plain_fields(type(x).__name__, [(f.name, getattr(x, f.name)) for f in dataclasses.fields(x)],
                             depth)
    return _OPAQUE


def _plain_fields(name: str, fields: list[tuple[str, Any]], depth: int) -> Any:
    items = [(f, _plain(v, depth + 1)) for f, v in fields]
    return _OPAQUE if any(v is _OPAQUE for _, v in items) else (name, items)


def _same(a: Any, b: Any) -> bool:
    """Equal results: by value where the value is plain data, else by canonical rendering."""
    pa, pb = _plain(a), _plain(b)
    if pa is not _OPAQUE and pb is not _OPAQUE:
        return bool(pa == pb)
    return bool(canonical(a) == canonical(b))
