"""A sandboxed agent cannot open a connection, even to a server on the host's loopback."""
import socket
import threading

from sbx import run_sandboxed

CONNECT = '''
import socket
async def main(sys, args):
    results = {}
    for host in ("127.0.0.1", "10.0.0.1"):
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect((host, args))
            results[host] = "connected"
        except OSError as e:
            results[host] = type(e).__name__ + ":" + str(e.errno)
        finally:
            s.close()
    await sys.log("info", "result", **results)
'''


def test_socket_connect_is_blocked_by_private_netns():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    accepted = []
    srv.settimeout(0.2)

    def accept():
        try:
            accepted.append(srv.accept())
        except OSError:
            pass
    t = threading.Thread(target=accept)
    t.start()
    try:
        out = run_sandboxed(CONNECT, args=port)
    finally:
        t.join()
        srv.close()
    assert out.reason == "normal", out.reason
    assert all(v != "connected" for v in out.result.values()), out.result
    assert accepted == []
    # control: the same code outside the sandbox does connect
    probe = socket.socket()
    srv2 = socket.socket()
    srv2.bind(("127.0.0.1", 0))
    srv2.listen(1)
    probe.connect(srv2.getsockname())
    probe.close()
    srv2.close()
