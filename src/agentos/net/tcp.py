"""Plain TCP between kernels: asyncio streams, length-prefixed frames.

Each node listens (`TcpListener`) for the frames its peers send it and dials each peer
(`TcpLink`) to send its own: outgoing traffic goes only over connections this node
opened, so no stranger who connects to the listener can take a peer's place (and
whatever a stranger writes is only frames, which ingress verifies). `tcp_node` wires a
kernel up with both.

A frame on the wire is a 4-byte big-endian length and that many bytes. A length of zero
or past the frame limit ends the connection (the bytes are never read) and counts an
`oversize` drop on the kernel. A link keeps at most `queue` frames while it is not
connected (`send` returns False past that: the kernel raises `LinkBackpressure` into the
sender) and reconnects with exponential backoff, doubling from `backoff_min` to at most
`backoff_max` seconds, with jitter. Delivery is at most once: a frame written into a
connection that then breaks is lost.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from .envelope import MAX_FRAME

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel
    from .node import NetNode

_LEN = 4
_DIRECT_LIMIT = 1 << 20  # bytes the socket's buffer may hold before frames queue instead


def encode_frame(frame: bytes) -> bytes:
    return len(frame).to_bytes(_LEN, "big") + frame


class TcpLink:
    """The route to one peer: dials `host:port`, keeps the connection up, writes frames."""

    def __init__(self, host: str, port: int, *, max_frame: int = MAX_FRAME, queue: int = 1024,
                 backoff_min: float = 0.05, backoff_max: float = 2.0, connect_timeout: float = 2.0) -> None:
        if not 0 < backoff_min <= backoff_max:
            raise ValueError(f"backoff must satisfy 0 < backoff_min <= backoff_max, got {backoff_min}, {backoff_max}")
        if type(queue) is not int or queue < 1:
            raise ValueError(f"queue must be a positive int, got {queue!r}")
        self.host = host
        self.port = port
        self.max_frame = max_frame
        self.capacity = queue
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.connect_timeout = connect_timeout
        self.queue: deque[bytes] = deque()
        self.connected = False
        self.connects = 0          # connections made (a reconnect counts again)
        self.failures = 0          # dial attempts that failed
        self.written = 0
        self.lost = 0              # frames taken off the queue whose connection broke
        self.refused = 0           # frames `send` refused: the queue was full
        self.delays: list[float] = []  # the last backoff delays slept (bounded)
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._writing = 0
        self._writer: asyncio.StreamWriter | None = None  # set while connected

    # the transport interface
    def send(self, frame: bytes) -> bool:
        if self._closed or len(self.queue) >= self.capacity or len(frame) > self.max_frame:
            self.refused += 1
            return False
        w = self._writer
        if w is not None and not self.queue and not self._writing and not w.transport.is_closing() \
                and w.transport.get_write_buffer_size() < _DIRECT_LIMIT:
            w.write(encode_frame(frame))  # connected and idle: straight to the socket's buffer
            self.written += 1
            return True
        self.queue.append(frame)
        if self._ready is not None:
            self._ready.set()
        return True

    def start(self) -> "TcpLink":
        """Begin dialing (needs a running event loop)."""
        if self._task is None:
            self._ready = asyncio.Event()
            if self.queue:
                self._ready.set()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"tcp-link {self.host}:{self.port}")
        return self

    async def drain(self, timeout: float = 1.0) -> bool:
        """Wait (up to `timeout` seconds) until every queued frame was written; True if so."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while (self.queue or self._writing) and loop.time() < end and self._task is not None:
            await asyncio.sleep(0.005)
        return not self.queue and not self._writing

    async def close(self, *, drain: float = 0.0) -> None:
        """Stop the link; with `drain`, first give queued frames that many seconds to go."""
        if drain > 0:
            await self.drain(drain)
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.connected = False

    async def _run(self) -> None:
        delay = self.backoff_min
        while not self._closed:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                        self.connect_timeout)
            except (OSError, asyncio.TimeoutError):
                self.failures += 1
                sleep = delay * (0.5 + random.random() / 2)
                self.delays = (self.delays + [sleep])[-32:]
                await asyncio.sleep(sleep)
                delay = min(delay * 2, self.backoff_max)
                continue
            delay = self.backoff_min
            self.connected = True
            self.connects += 1
            self._writer = writer
            try:
                await self._pump(reader, writer)
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                self._writer = None
                self.connected = False
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Write queued frames until the connection breaks (the peer's EOF is watched too:
        a peer that died is noticed while idle, not only at the next write)."""
        assert self._ready is not None
        eof = asyncio.ensure_future(reader.read(1))
        try:
            while True:
                while not self.queue:
                    self._ready.clear()
                    ready = asyncio.ensure_future(self._ready.wait())
                    done, _ = await asyncio.wait({ready, eof}, return_when=asyncio.FIRST_COMPLETED)
                    if eof in done:
                        ready.cancel()
                        return
                batch: list[bytes] = []
                while self.queue and len(batch) < 64:
                    batch.append(self.queue.popleft())
                self._writing = len(batch)
                try:
                    writer.write(b"".join(encode_frame(f) for f in batch))
                    await writer.drain()
                except (OSError, ConnectionError):
                    self.lost += len(batch)
                    raise
                finally:
                    self._writing = 0
                self.written += len(batch)
                if eof.done():
                    return
        finally:
            eof.cancel()


class TcpListener:
    """Accepts peers' connections and hands each frame read to `on_frame`."""

    def __init__(self, on_frame: Callable[[bytes], Any], host: str = "127.0.0.1", port: int = 0, *,
                 max_frame: int = MAX_FRAME, max_conns: int = 64,
                 on_oversize: Callable[[], Any] | None = None) -> None:
        self.on_frame = on_frame
        self.on_oversize = on_oversize
        self.host = host
        self.port = port
        self.max_frame = max_frame
        self.max_conns = max_conns
        self.frames = 0
        self.refused_conns = 0
        self.oversize = 0
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[Any]] = set()

    async def start(self) -> int:
        """Listen; returns the port (the one the OS chose when `port` was 0)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._conns):
            t.cancel()
        for t in list(self._conns):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._conns) >= self.max_conns or task is None:
            self.refused_conns += 1
            writer.close()
            return
        self._conns.add(task)
        try:
            while True:
                head = await reader.readexactly(_LEN)
                n = int.from_bytes(head, "big")
                if n == 0 or n > self.max_frame:
                    self.oversize += 1
                    if self.on_oversize is not None:
                        self.on_oversize()
                    return  # the connection's framing cannot be trusted past this point
                data = await reader.readexactly(n)
                self.frames += 1
                try:
                    self.on_frame(data)
                except Exception:  # noqa: BLE001 - a refusal upstream must not end the listener
                    pass
        except (asyncio.IncompleteReadError, OSError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()


class TcpNode:
    """A kernel on TCP: its listener and one link per peer (see `tcp_node`)."""

    def __init__(self, net: "NetNode", listener: TcpListener, links: dict[str, TcpLink]) -> None:
        self.net = net
        self.listener = listener
        self.links = links

    @property
    def port(self) -> int:
        return self.listener.port

    async def close(self, *, drain: float = 1.0) -> None:
        """Close the links (each first given `drain` seconds to send what it holds), then
        the listener."""
        for link in self.links.values():
            await link.close(drain=drain)
        await self.listener.close()


async def tcp_node(kernel: "Kernel", node: str, key: bytes, *, listen: tuple[str, int] = ("127.0.0.1", 0),
                   peers: dict[str, tuple[str, int]] | None = None, max_frame: int = MAX_FRAME,
                   queue: int = 1024, backoff_min: float = 0.05, backoff_max: float = 2.0,
                   **options: Any) -> TcpNode:
    """Put `kernel` on TCP as `node`: listen on `listen`, dial each of `peers` (name →
    (host, port)). Call inside the event loop the kernel runs on; `close()` when done."""
    links: dict[str, TcpLink] = {}
    net: NetNode | None = None
    for name, (host, port) in (peers or {}).items():
        link = TcpLink(host, port, max_frame=max_frame, queue=queue, backoff_min=backoff_min,
                       backoff_max=backoff_max)
        net = kernel.connect(name, link, **({} if net is not None else
                                            {"node": node, "key": key, "max_frame": max_frame, **options}))
        links[name] = link
    if net is None:  # no peers yet: the identity alone
        net = kernel.connect(node, _Nowhere(), node=node, key=key, max_frame=max_frame, **options)
    listener = TcpListener(kernel.ingress, listen[0], listen[1], max_frame=max_frame,
                           on_oversize=lambda: net.drop("oversize"))
    await listener.start()
    for link in links.values():
        link.start()
    return TcpNode(net, listener, links)


class _Nowhere:
    """A route that takes nothing (a node with no peers yet: its identity needs a first connect)."""

    def send(self, frame: bytes) -> bool:
        return False


__all__ = ["TcpLink", "TcpListener", "TcpNode", "encode_frame", "tcp_node"]
