"""Sandboxed code that can see host files (`fs_view="host"`) still cannot reach a Unix
socket: not a world-writable one on the file system, not an abstract one (shared with the
host when no private network namespace could be made), not /dev/log by datagram."""
import os
import socket
import tempfile
import threading

import pytest

from sbx import run_sandboxed

REACH = '''
import socket
async def main(sys, args):
    out = {}
    def attempt(name, fn):
        try:
            fn()
            out[name] = "reached"
        except OSError as e:
            out[name] = type(e).__name__ + ":" + str(e.errno)
    def path_stream():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect(args["path"])
    def abstract_stream():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect(args["abstract"])
    def datagram():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"hello", args["dgram"])
    def bind_listener():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(args["path"] + ".mine")
    def pair():   # anonymous and already connected: still allowed (asyncio needs it)
        a, b = socket.socketpair()
        a.sendall(b"x")
        assert b.recv(1) == b"x"
    for name, fn in (("path_stream", path_stream), ("abstract_stream", abstract_stream),
                     ("datagram", datagram), ("bind", bind_listener), ("socketpair", pair)):
        attempt(name, fn)
    await sys.log("info", "result", **out)
'''


def _serve(sock: socket.socket, got: list) -> threading.Thread:
    sock.settimeout(1.0)

    def run() -> None:
        try:
            if sock.type == socket.SOCK_DGRAM:
                got.append(sock.recv(64))
            else:
                got.append(sock.accept())
        except OSError:
            pass
    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.mark.parametrize("namespaces", [True, False], ids=["with-netns", "without-netns"])
def test_unix_sockets_on_the_host_are_out_of_reach(namespaces: bool) -> None:
    d = tempfile.mkdtemp(prefix="agentos-sock-")
    os.chmod(d, 0o1777)
    path, dgram = os.path.join(d, "world.sock"), os.path.join(d, "log.sock")
    abstract = "\0agentos-test-" + os.path.basename(d)
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.bind(path)
    os.chmod(path, 0o777)
    stream.listen(1)
    abst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abst.bind(abstract)
    abst.listen(1)
    dg = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dg.bind(dgram)
    os.chmod(dgram, 0o777)
    got: list = []
    threads = [_serve(s, got) for s in (stream, abst, dg)]
    try:
        kw = {} if namespaces else {"namespaces": False, "require_isolation": False}
        out = run_sandboxed(REACH, args={"path": path, "abstract": abstract, "dgram": dgram},
                            fs_view="host", **kw)
    finally:
        for t in threads:
            t.join()
        for s in (stream, abst, dg):
            s.close()
    assert out.reason == "normal", out.reason
    assert got == []                                     # nothing reached a host socket
    for name in ("path_stream", "abstract_stream", "datagram", "bind"):
        assert out.result[name] != "reached", out.result
    assert out.result["socketpair"] == "reached", out.result
    assert not os.path.exists(path + ".mine")
    # control: the same connects work outside the sandbox
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path + ".control")
    srv.listen(1)
    probe.connect(path + ".control")
    probe.close()
    srv.close()
