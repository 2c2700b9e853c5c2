"""The cluster's NATS connection: a subject per node, JetStream for durable sends, KV tables.

Everything here moves bytes (sealed frames) and plain records; it knows nothing of the
kernel. Subjects and buckets are named after the cluster, so two clusters can share one
server: frames to node N go to `agentos.<cluster>.node.<N>`, durable frames to
`agentos.<cluster>.durable.<N>` (stream `AGENTOS_<cluster>`, de-duplicated by the
`Nats-Msg-Id` header, consumed by a durable consumer named after N), membership and names
live in the KV buckets `agentos_<cluster>_members` and `agentos_<cluster>_names`.

nats-py is imported on first use: `import agentos` never loads it.

Invariants: node names are `[A-Za-z0-9_-]{1,64}` (they become subject tokens); KV keys for
process names are the name's UTF-8 in hex, so any text can be a name; a callback that
raises is logged and dropped, never allowed to kill the subscription.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any, Awaitable, Callable

log = logging.getLogger("agentos.net.nats")

_NODE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
DUPLICATE_WINDOW_S = 120.0
"""How long JetStream remembers a `Nats-Msg-Id` to drop a duplicate publish."""


def check_node(name: Any) -> str:
    """A node name usable as a subject token, or ValueError naming what is wrong."""
    if type(name) is not str or not _NODE_RE.fullmatch(name):
        raise ValueError(f"a node name is 1-64 of A-Z a-z 0-9 _ -, got {name!r}")
    return name


def name_key(name: str) -> str:
    return name.encode("utf-8", "surrogatepass").hex() or "00"


def key_name(key: str) -> str | None:
    try:
        return bytes.fromhex(key).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


OnBytes = Callable[[bytes], Awaitable[None]]
OnDurable = Callable[[bytes], Awaitable[bool]]


class NatsLink:
    """One node's connection: its inbox, its durable consumer, the two KV buckets."""

    def __init__(self, url: str, cluster: str, node: str) -> None:
        self.url = url
        self.cluster = check_node(cluster)
        self.node = check_node(node)
        self.nc: Any = None
        self.js: Any = None
        self.members: Any = None
        self.names: Any = None
        self._subs: list[Any] = []
        self._watch: asyncio.Task[None] | None = None
        self.connected = False

    # -- naming -------------------------------------------------------------------------
    def subject(self, node: str) -> str:
        return f"agentos.{self.cluster}.node.{node}"

    def durable_subject(self, node: str) -> str:
        return f"agentos.{self.cluster}.durable.{node}"

    @property
    def stream(self) -> str:
        return f"AGENTOS_{self.cluster}"

    # -- connection ---------------------------------------------------------------------
    async def connect(self, *, timeout: float = 5.0) -> None:
        import nats  # lazy: the cluster extra

        async def disconnected() -> None:
            self.connected = False

        async def reconnected() -> None:
            self.connected = True

        async def error(e: Exception) -> None:
            log.debug("nats: %s", e)

        self.nc = await nats.connect(
            self.url, name=f"agentos-{self.cluster}-{self.node}", connect_timeout=timeout,
            max_reconnect_attempts=-1, reconnect_time_wait=0.1, allow_reconnect=True,
            disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error,
            ping_interval=1, max_outstanding_pings=2)
        self.connected = True
        self.js = self.nc.jetstream(timeout=timeout)
        await self._ensure_storage()

    async def _ensure_storage(self) -> None:
        from nats.js.api import KeyValueConfig, StreamConfig  # lazy

        js = self.js
        cfg = StreamConfig(name=self.stream, subjects=[f"agentos.{self.cluster}.durable.>"],
                           duplicate_window=DUPLICATE_WINDOW_S)
        try:
            await js.add_stream(cfg)
        except Exception:  # noqa: BLE001 - it exists (maybe with another config): use it
            await js.stream_info(self.stream)
        self.members = await js.create_key_value(KeyValueConfig(bucket=f"agentos_{self.cluster}_members", history=1))
        self.names = await js.create_key_value(KeyValueConfig(bucket=f"agentos_{self.cluster}_names", history=1))

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        nc, self.nc = self.nc, None
        subs, self._subs = self._subs, []
        if nc is not None:
            for sub in subs:  # a JetStream push subscription's heartbeat and flow-control tasks
                try:          # stop only on unsubscribe: closing the connection leaves them pending
                    await sub.unsubscribe()
                except Exception:  # noqa: BLE001 - a broken connection cannot unsubscribe
                    pass
            try:
                await nc.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
        self.connected = False

    # -- frames -------------------------------------------------------------------------
    async def listen(self, on_frame: OnBytes) -> None:
        async def cb(msg: Any) -> None:
            try:
                await on_frame(msg.data)
            except Exception:  # noqa: BLE001 - one bad frame must not end the subscription
                log.exception("cluster frame handler failed")

        self._subs.append(await self.nc.subscribe(self.subject(self.node), cb=cb))

    async def listen_durable(self, on_frame: OnDurable) -> None:
        """Consume this node's durable frames; a frame is acknowledged (and so never sent
        again) once `on_frame` returns True, i.e. once it is in a mailbox or refused."""
        async def cb(msg: Any) -> None:
            try:
                done = await on_frame(msg.data)
            except Exception:  # noqa: BLE001
                log.exception("durable frame handler failed")
                done = False
            if done:
                try:
                    await msg.ack_sync(timeout=2.0)
                except Exception:  # noqa: BLE001 - not acked: redelivered, dropped as a duplicate
                    log.debug("durable ack failed")
            else:
                try:
                    await msg.nak(delay=0.2)
                except Exception:  # noqa: BLE001
                    pass

        durable = f"agentos-{self.node}"
        self._subs.append(await self.js.subscribe(
            self.durable_subject(self.node), durable=durable, cb=cb, manual_ack=True,
            stream=self.stream))

    async def publish(self, node: str, data: bytes) -> None:
        await self.nc.publish(self.subject(node), data)

    async def publish_durable(self, node: str, data: bytes, msg_id: str) -> None:
        """Store `data` for `node` in the stream; a second publish with the same `msg_id`
        within the duplicate window is dropped by the server."""
        await self.js.publish(self.durable_subject(node), data, headers={"Nats-Msg-Id": msg_id})

    async def flush(self, timeout: float = 2.0) -> None:
        await self.nc.flush(timeout=timeout)

    # -- membership ---------------------------------------------------------------------
    async def put_member(self, record: dict[str, Any]) -> None:
        await self.members.put(self.node, json.dumps(record).encode())

    async def get_member(self, node: str) -> dict[str, Any] | None:
        from nats.js.errors import KeyNotFoundError  # lazy

        try:
            entry = await self.members.get(node)
        except KeyNotFoundError:
            return None
        return _record(entry.value)

    async def read_members(self) -> dict[str, dict[str, Any]]:
        """Every node's lease record, read now (not from a watcher's cache)."""
        from nats.js.errors import KeyNotFoundError, NoKeysError  # lazy

        try:
            keys = await self.members.keys()
        except NoKeysError:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for key in keys:
            try:
                entry = await self.members.get(key)
            except KeyNotFoundError:
                continue
            rec = _record(entry.value)
            if rec is not None:
                out[key] = rec
        return out

    # -- names --------------------------------------------------------------------------
    async def claim_name(self, name: str, record: dict[str, Any], *, steal_from: Any = None) -> bool:
        """Bind `name` cluster-wide unless someone holds it; True if it is ours now.
        `steal_from(record) -> bool` says whether an existing holder is dead and may be replaced."""
        from nats.js.errors import KeyWrongLastSequenceError  # lazy

        key = name_key(name)
        data = json.dumps(record).encode()
        try:
            await self.names.create(key, data)
            return True
        except KeyWrongLastSequenceError:
            pass
        except Exception as e:  # noqa: BLE001 - older servers answer with an APIError
            if "wrong last sequence" not in str(e).lower():
                raise
        if steal_from is None:
            return False
        try:
            entry = await self.names.get(key)
        except Exception:  # noqa: BLE001 - deleted meanwhile: try once more
            return await self.claim_name(name, record)
        held = _record(entry.value)
        if held is not None and not steal_from(held):
            return False
        try:
            await self.names.update(key, data, last=entry.revision)
            return True
        except Exception:  # noqa: BLE001 - someone else won the race
            return False

    async def drop_name(self, name: str, record_is_ours: Callable[[dict[str, Any]], bool]) -> None:
        key = name_key(name)
        try:
            entry = await self.names.get(key)
        except Exception:  # noqa: BLE001 - already gone
            return
        held = _record(entry.value)
        if held is not None and record_is_ours(held):
            try:
                await self.names.delete(key, last=entry.revision)
            except Exception:  # noqa: BLE001 - changed meanwhile: not ours any more
                pass

    async def watch_names(self, on_change: Callable[[str, dict[str, Any] | None], None]) -> None:
        """Keep `on_change(name, record or None)` informed of every name's binding."""
        watcher = await self.names.watchall()

        async def run() -> None:
            while True:
                try:
                    entry = await watcher.updates(timeout=3600)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - a timeout or a reconnect: keep watching
                    await asyncio.sleep(0.05)
                    continue
                if entry is None:
                    continue  # the end of the initial values
                name = key_name(entry.key)
                if name is None:
                    continue
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    on_change(name, None)
                else:
                    on_change(name, _record(entry.value))

        self._watch = asyncio.get_running_loop().create_task(run())


def _record(data: Any) -> dict[str, Any] | None:
    try:
        rec = json.loads(data)
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


__all__ = ["NatsLink", "check_node", "key_name", "name_key"]
