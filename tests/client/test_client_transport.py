"""The client's socket layer against small real servers (unix, TCP, TLS) on loopback.

Each server runs a scripted handler per accepted connection in a thread; the tests
check what went over the wire and what the Transport/Client make of the answers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import ssl
import threading
from pathlib import Path

import pytest

from dockyard import errors
from dockyard.client import Client, DaemonUnreachable
from dockyard.client.transport import TLSConfig, Transport, TransportError


class Request:
    def __init__(self, line: str, headers: dict[str, str], body: bytes) -> None:
        self.method, self.target, _ = line.split(" ", 2)
        self.headers = headers
        self.body = body


class Conn:
    """The server's side of one connection: read requests, write raw answers."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def request(self) -> Request:
        line = self._line().decode()
        headers = {}
        while True:
            h = self._line().decode()
            if not h:
                break
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        body = b""
        if headers.get("transfer-encoding") == "chunked":
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    assert self._line() == b""
                    break
                body += self._exact(size)
                assert self._exact(2) == b"\r\n"
        elif "content-length" in headers:
            body = self._exact(int(headers["content-length"]))
        return Request(line, headers, body)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


def ok(body: bytes = b"{}", extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Server:
    """Accepts connections; ``handler(conn, index)`` serves each in its own thread."""

    def __init__(self, listener: socket.socket, handler, wrap=None) -> None:
        self.listener = listener
        self.handler = handler
        self.wrap = wrap
        self.accepted = 0
        self.errors: list[BaseException] = []
        self.socks: list[socket.socket] = []
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self) -> None:
        while True:
            try:
                s, _ = self.listener.accept()
            except OSError:
                return
            if self.wrap is not None:
                try:
                    s = self.wrap(s)
                except (OSError, ssl.SSLError):
                    continue
            self.socks.append(s)
            i = self.accepted
            self.accepted += 1
            threading.Thread(target=self._one, args=(s, i), daemon=True).start()

    def _one(self, s: socket.socket, i: int) -> None:
        try:
            self.handler(Conn(s), i)
        except EOFError:
            pass
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)
        finally:
            s.close()

    def close(self) -> None:
        self.listener.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture
def unix_server(tmp_path):
    servers = []

    def start(handler) -> tuple[Server, str]:
        path = str(tmp_path / f"s{len(servers)}.sock")
        ls = socket.socket(socket.AF_UNIX)
        ls.bind(path)
        ls.listen(8)
        srv = Server(ls, handler)
        servers.append(srv)
        return srv, f"unix://{path}"

    yield start
    for s in servers:
        s.close()
        assert not s.errors, s.errors


def test_keep_alive_reuses_one_connection(unix_server):
    seen = []

    def handler(c: Conn, i: int) -> None:
        while True:
            r = c.request()
            seen.append((i, r.method, r.target, r.headers.get("host"), r.headers.get("x-a")))
            c.send(ok(json.dumps({"n": len(seen)}).encode(), "Api-Version: 1.47\r\n"))

    srv, host = unix_server(handler)
    t = Transport(host)
    for n in (1, 2, 3):
        r = t.request("GET", "/x", headers={"X-A": "b"})
        assert r.status == 200 and r.headers["api-version"] == "1.47"
        assert json.loads(r.read()) == {"n": n}
    t.close()
    assert seen == [(0, "GET", "/x", "localhost", "b")] * 3 and srv.accepted == 1


def test_stale_keep_alive_connection_is_retried_once(unix_server):
    def handler(c: Conn, i: int) -> None:
        c.request()
        c.send(ok(b'"%d"' % i))  # and close: the client still holds it as idle

    srv, host = unix_server(handler)
    t = Transport(host)
    assert [t.request("GET", "/").read() for _ in range(3)] == [b'"0"', b'"1"', b'"2"']
    assert srv.accepted == 3


def test_connection_close_answer_is_not_reused(unix_server):
    def handler(c: Conn, i: int) -> None:
        while True:
            c.request()
            c.send(ok(b"{}", "Connection: close\r\n"))

    srv, host = unix_server(handler)
    t = Transport(host)
    t.request("GET", "/").read()
    t.request("GET", "/").read()
    assert srv.accepted == 2


def test_bodies_bytes_file_and_generator(unix_server, tmp_path):
    got = []

    def handler(c: Conn, i: int) -> None:
        while True:
            r = c.request()
            got.append((r.method, r.headers.get("content-length"),
                        r.headers.get("transfer-encoding"), r.body))
            c.send(ok())

    _, host = unix_server(handler)
    t = Transport(host)
    big = os.urandom(200_000)
    f = tmp_path / "up.tar"
    f.write_bytes(big)
    t.request("POST", "/a", body=b"{\"x\":1}").read()
    with open(f, "rb") as fh:
        t.request("POST", "/b", body=fh).read()
    t.request("POST", "/c", body=(p for p in [b"one", b"", b"two"])).read()
    with open(f, "rb") as fh:  # a streamed body with a known length goes as is
        t.request("PUT", "/d", headers={"Content-Length": str(len(big))}, body=fh).read()
    t.request("POST", "/e").read()
    t.request("GET", "/f").read()
    assert got == [("POST", "7", None, b"{\"x\":1}"), ("POST", None, "chunked", big),
                   ("POST", None, "chunked", b"onetwo"), ("PUT", str(len(big)), None, big),
                   ("POST", "0", None, b""), ("GET", None, None, b"")]


def test_streaming_response_arrives_piece_by_piece(unix_server):
    go_on = threading.Event()

    def handler(c: Conn, i: int) -> None:
        c.request()
        c.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        c.send(b"6;x=y\r\nfirst\n\r\n")
        assert go_on.wait(30)
        c.send(b"7\r\nsecond\n\r\n0\r\nX-T: 1\r\n\r\n")
        c.request()
        c.send(ok(b"[]"))

    srv, host = unix_server(handler)
    t = Transport(host)
    r = t.request("GET", "/events")
    it = r.iter_chunks()
    assert next(it) == b"first\n"   # before the server sends the rest
    go_on.set()
    assert list(it) == [b"second\n"] and r.trailers["x-t"] == "1"
    assert t.request("GET", "/").read() == b"[]" and srv.accepted == 1


def test_unread_response_is_closed_and_a_second_request_meanwhile_works(unix_server):
    def handler(c: Conn, i: int) -> None:
        c.request()
        if i == 0:
            c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            c.request()  # EOF when the client closes the response
            return
        c.send(ok(b'"second"'))
        c.request()
        c.send(ok(b'"third"'))

    srv, host = unix_server(handler)
    t = Transport(host)
    streaming = t.request("GET", "/logs")
    assert t.request("GET", "/other").read() == b'"second"'  # on its own connection
    streaming.close()
    assert t.request("GET", "/again").read() == b'"third"'   # the idle one is reused
    assert srv.accepted == 2


def test_head_request_has_no_body(unix_server):
    def handler(c: Conn, i: int) -> None:
        while True:
            r = c.request()
            n = b"4" if r.method == "HEAD" else b"2"
            c.send(b"HTTP/1.1 200 OK\r\nContent-Length: " + n + b"\r\n\r\n" +
                   (b"" if r.method == "HEAD" else b"ok"))

    srv, host = unix_server(handler)
    t = Transport(host)
    assert t.request("HEAD", "/_ping").read() == b""
    assert t.request("GET", "/_ping").read() == b"ok" and srv.accepted == 1


@pytest.mark.parametrize("answer,msg", [
    (b"garbage\r\n\r\n", "not an HTTP response"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", "error reading response"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", "invalid chunk size"),
])
def test_bad_answers_are_transport_errors(unix_server, answer, msg):
    def handler(c: Conn, i: int) -> None:
        c.request()
        c.send(answer)

    _, host = unix_server(handler)
    with pytest.raises(TransportError, match=msg):
        Transport(host).request("GET", "/").read()


def test_unreachable_and_timeout(unix_server, tmp_path):
    t = Transport(f"unix://{tmp_path}/none.sock")
    with pytest.raises(TransportError, match="Cannot connect to the Docker daemon at unix://"):
        t.request("GET", "/")
    hold = threading.Event()

    def silent(c: Conn, i: int) -> None:
        c.request()
        hold.wait(30)

    _, host = unix_server(silent)
    try:
        with pytest.raises(TransportError):
            Transport(host, timeout=0.3).request("GET", "/")
    finally:
        hold.set()
    with pytest.raises(TransportError, match="unsupported protocol scheme"):
        Transport("ftp://x")
    with pytest.raises(TransportError, match="invalid port"):
        Transport("tcp://h:port")


def test_host_parsing():
    t = Transport("tcp://Example.COM:2999/path")
    assert (t.hostname, t.port, t.host_header()) == ("example.com", 2999, "example.com:2999")
    t = Transport("tcp://[::1]")
    assert (t.hostname, t.port, t.host_header()) == ("::1", 2375, "[::1]:2375")
    t = Transport("https://h")
    assert t.tls is not None and t.port == 2376
    assert Transport("unix:///run/x.sock?q").path == "/run/x.sock"
    assert Transport("unix://rel.sock").path == "rel.sock"


def test_tcp_loopback():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    port = ls.getsockname()[1]
    seen = []

    def handler(c: Conn, i: int) -> None:
        r = c.request()
        seen.append(r.headers["host"])
        c.send(ok(b'{"ok":true}'))

    srv = Server(ls, handler)
    try:
        assert json.loads(Transport(f"tcp://127.0.0.1:{port}").request("GET", "/").read())
        assert seen == [f"127.0.0.1:{port}"]
    finally:
        srv.close()
    assert not srv.errors


def _make_certs(d: Path) -> dict:
    spec = importlib.util.spec_from_file_location(
        "dy_client_tlscerts", Path(__file__).parent.parent / "daemon" / "tlscerts.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_certs(d)


def test_tls_verified_and_refused(tmp_path):
    certs = _make_certs(tmp_path / "certs")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(certs["server_cert"], certs["server_key"])
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    port = ls.getsockname()[1]

    def handler(c: Conn, i: int) -> None:
        while True:
            c.request()
            c.send(ok(b'"tls"'))

    srv = Server(ls, handler, wrap=lambda s: sctx.wrap_socket(s, server_side=True))
    try:
        t = Transport(f"tcp://127.0.0.1:{port}", tls=TLSConfig(ca_cert=str(certs["ca"])))
        assert t.request("GET", "/").read() == b'"tls"'
        assert t.request("GET", "/").read() == b'"tls"' and srv.accepted == 1
        t.close()
        # the system CAs don't know our test CA
        with pytest.raises(TransportError, match="error during connect"):
            Transport(f"tcp://127.0.0.1:{port}", tls=TLSConfig()).request("GET", "/")
        t = Transport(f"tcp://127.0.0.1:{port}", tls=TLSConfig(verify=False))
        assert t.request("GET", "/").read() == b'"tls"'
    finally:
        srv.close()


def test_hijack_upgrade_and_error(unix_server):
    def handler(c: Conn, i: int) -> None:
        r = c.request()
        assert r.headers["upgrade"] == "tcp" and r.headers["connection"] == "Upgrade"
        if "/missing/" in r.target:
            body = b'{"message":"No such container: missing"}'
            c.send(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body) + body)
            return
        c.send(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
               b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n")
        data = c.sock.recv(100)   # what the client writes to the container
        c.send(b"\x02\x00\x00\x00\x00\x00\x00" + bytes([len(data)]) + data)
        c.sock.shutdown(socket.SHUT_WR)
        c.sock.recv(100)

    _, host = unix_server(handler)
    c = Client(host, version="1.47", env={})
    h = c.attach_socket("abc", stdin=True)
    try:
        h.sock.sendall(b"input")
        h.sock.shutdown(socket.SHUT_WR)
        data = h.buffered
        while True:
            more = h.sock.recv(100)
            if not more:
                break
            data += more
    finally:
        h.close()
    from dockyard.client.containers import iter_frames

    assert list(iter_frames([data])) == [(1, b"hi\n"), (2, b"input")]
    with pytest.raises(errors.NotFound, match="No such container: missing"):
        c.attach_socket("missing")


def test_client_unreachable_is_daemon_unreachable(tmp_path):
    with pytest.raises(DaemonUnreachable, match="Is the docker daemon running"):
        Client(f"unix://{tmp_path}/x.sock", env={}).version()
