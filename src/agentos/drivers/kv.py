"""The `kv` driver: a namespaced key-value device.

`open(params={"ns": "name"})` picks a namespace (default: the opener's pid, so processes
do not see each other's keys unless they share a namespace on purpose). Reads are
`{"op": "get"|"keys"|"has", "key": ...}`; writes are `{"op": "set"|"delete", ...}`.

A value is copied when it is stored and again when it is read: a reply reaches the reader
by reference, so without the copies a process could change a stored value (its own after
`set`, or one it read) with no write, no journal entry and no policy check, and a replay
would no longer see what the live run saw.
"""
from __future__ import annotations

from copy import deepcopy
from typing import Any

from ..abi.driver import Driver, DriverResult
from ..abi.errors import DriverError
from ..abi.types import Cost

_READ_OPS = ("get", "keys", "has")
_WRITE_OPS = ("set", "delete")
_MISSING = object()


class KVDriver(Driver):
    name = "kv"

    def __init__(self, name: str = "kv") -> None:
        self.name = name
        self.spaces: dict[str, dict[str, Any]] = {}

    def open(self, owner: int, params: Any) -> dict[str, Any]:
        ns = (params or {}).get("ns", f"pid:{owner}") if isinstance(params, dict) or params is None else None
        if not isinstance(ns, str):
            raise DriverError(f"{self.name}: open params are {{'ns': str}}, got {params!r}")
        return self.spaces.setdefault(ns, {})

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
        kind = req.get("op", "get") if isinstance(req, dict) else "?"
        return (f"{self.name}.{kind}", req)

    def read(self, handle: dict[str, Any], req: Any) -> DriverResult:
        if not isinstance(req, dict):
            raise DriverError(f"{self.name}: a read is {{'op': 'get', 'key': k}}, got {type(req).__name__}")
        op = req.get("op", "get")
        if op == "get":
            key: Any = req.get("key")
            value = handle.get(key, _MISSING)
            if value is _MISSING:
                return DriverResult(req.get("default"), Cost(reductions=1))
            return DriverResult(deepcopy(value), Cost(reductions=1))
        if op == "has":
            return DriverResult(req.get("key") in handle, Cost(reductions=1))
        if op == "keys":
            prefix = req.get("prefix", "")
            return DriverResult(sorted(k for k in handle if k.startswith(prefix)), Cost(reductions=1))
        raise DriverError(f"{self.name}: unknown read op {op!r} (reads: {', '.join(_READ_OPS)})")

    def write(self, handle: dict[str, Any], data: Any) -> DriverResult:
        if not isinstance(data, dict):
            raise DriverError(f"{self.name}: a write is {{'op': 'set', 'key': k, 'value': v}}")
        op = data.get("op", "set")
        key = data.get("key")
        if not isinstance(key, str):
            raise DriverError(f"{self.name}: keys are strings, got {key!r}")
        if op == "set":
            try:
                handle[key] = deepcopy(data.get("value"))
            except Exception as e:  # noqa: BLE001 - a value that cannot be copied is not stored
                raise DriverError(f"{self.name}: the value for {key!r} cannot be stored "
                                  f"({type(e).__name__})") from None
            return DriverResult(True, Cost(reductions=1))
        if op == "delete":
            return DriverResult(handle.pop(key, None) is not None, Cost(reductions=1))
        raise DriverError(f"{self.name}: unknown write op {op!r} (writes: {', '.join(_WRITE_OPS)})")
