"""A sandboxed agent cannot open a connection, even to a server on the host's loopback."""
import socket
import threading

from sbx import run_sandboxed

CONNECT = '''
import socket
async def main(sys, args):
    results = {}
    for host in ("127.0.0.1", "10.0.0.1"):
        s = None
        try:
            s = socket.socket()
            s.settimeout(2)
            s.connect((host, args))
            results[host] = "connected"
        except OSError as e:
            results[host] = type(e).__name__ + ":" + str(e.errno)
        finally:
            if s is not None:
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


def _listen():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.2)
    return srv


def test_private_netns_alone_blocks_connect_with_seccomp_off():
    srv = _listen()
    try:
        out = run_sandboxed(CONNECT, args=srv.getsockname()[1], seccomp=False)
    finally:
        srv.close()
    assert out.reason == "normal", out.reason
    assert out.result["127.0.0.1"].startswith("OSError:101"), out.result  # ENETUNREACH: lo is down


def test_seccomp_alone_blocks_inet_sockets_without_a_netns():
    srv = _listen()
    try:
        out = run_sandboxed(CONNECT, args=srv.getsockname()[1], namespaces=False, require_isolation=False)
        try:
            srv.accept()
            accepted = True
        except OSError:
            accepted = False
    finally:
        srv.close()
    assert out.reason == "normal", out.reason
    assert out.result["127.0.0.1"] == "PermissionError:13", out.result  # socket() refused: EACCES
    assert not accepted


ESCAPES = '''
import ctypes, os
async def main(sys, args):
    libc = ctypes.CDLL(None, use_errno=True)
    out = {}
    for name, nr, argv in (("unshare_user", 272, (0x10000000,)), ("ptrace_attach", 101, (16, os.getppid(), 0, 0)),
                           ("io_uring_setup", 425, (8, 0)), ("bpf", 321, (0, 0, 0)), ("mount", 165, (0, 0, 0, 0, 0))):
        rc = libc.syscall(nr, *argv)
        out[name] = "allowed" if rc >= 0 else os.strerror(ctypes.get_errno())
    await sys.log("info", "result", **out)
'''


def test_seccomp_refuses_namespace_tracing_and_io_uring_syscalls():
    out = run_sandboxed(ESCAPES)
    assert out.reason == "normal", out.reason
    assert set(out.result.values()) == {"Operation not permitted"}, out.result
