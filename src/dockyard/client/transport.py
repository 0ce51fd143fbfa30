"""Transports for the API client: a request goes in, a response comes out.

A thin socket layer over the sans-IO protocol in :mod:`dockyard.client.http11`
(no http.client, no enum-heavy ``socket`` module: the CLI starts fast). Unix
sockets and TCP use ``_socket`` directly; TLS loads ``ssl`` only when used. One
keep-alive connection is kept while idle: a response read to its end gives its
connection back, so the next request reuses it.
"""

from __future__ import annotations

import _socket
import os

from dockyard.client import http11

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Iterable, Iterator, Mapping

DEFAULT_HOST = "unix:///run/dockyard.sock"
_RECV = 65536


class TransportError(Exception):
    """The daemon could not be reached (connect/TLS/protocol failure)."""


class TLSConfig:
    """Where the TLS material is and whether to verify the server."""

    def __init__(self, verify: bool = True, ca_cert: str | None = None,
                 client_cert: str | None = None, client_key: str | None = None) -> None:
        self.verify = verify            # check the server's certificate against ca_cert
        self.ca_cert = ca_cert
        self.client_cert = client_cert
        self.client_key = client_key

    def __repr__(self) -> str:
        return (f"TLSConfig(verify={self.verify!r}, ca_cert={self.ca_cert!r}, "
                f"client_cert={self.client_cert!r}, client_key={self.client_key!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TLSConfig) and vars(self) == vars(other)

    def context(self):
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.verify:
            if self.ca_cert:
                ctx.load_verify_locations(self.ca_cert)
            else:
                ctx.load_default_certs()
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.client_cert and self.client_key:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx

    @classmethod
    def from_dir(cls, cert_path: str, verify: bool) -> "TLSConfig":
        def f(name: str) -> str | None:
            p = os.path.join(cert_path, name)
            return p if os.path.exists(p) else None

        return cls(verify=verify, ca_cert=f("ca.pem"), client_cert=f("cert.pem"),
                   client_key=f("key.pem"))


class Socket(_socket.socket):
    """A plain ``_socket.socket`` (recv/sendall/shutdown/settimeout/fileno/close) that
    also works as a context manager; avoids importing the ``socket`` module."""

    __slots__ = ()

    def __enter__(self) -> "Socket":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<dockyard Socket fd={self.fileno()} family={self.family}>"


def _is_ssl_error(e: BaseException) -> bool:
    import sys

    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(e, ssl.SSLError)


class _Conn:
    """One HTTP connection (its socket); a Response owns it until the body is read."""

    __slots__ = ("sock",)

    def __init__(self, sock) -> None:
        self.sock = sock

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Response:
    """A response whose body can be read whole or in chunks as it arrives."""

    def __init__(self, transport: "Transport", conn: _Conn, parser: http11.ResponseParser,
                 head: http11.Head, reuse: bool = True) -> None:
        self._transport = transport
        self._reuse = reuse
        self._conn: _Conn | None = conn
        self._parser = parser
        self.status = head.status
        self.reason = head.reason
        self.headers = head.headers
        self.version = head.version
        self.trailers = http11.Headers()
        self._finish_if_done()

    def _finish_if_done(self) -> None:
        if self._conn is not None and self._parser.done:
            self._release()

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._reuse and self._parser.keep_alive and not self._parser.trailing_data():
                self._transport._give_back(conn)
            else:
                conn.close()

    def _next(self, size: int | None) -> bytes:
        """The next piece of the body, b"" at its end."""
        p = self._parser
        while self._conn is not None:
            ev = p.next_event(size)
            if ev is http11.NEED_DATA:
                data = self._conn.sock.recv(_RECV)
                if data:
                    p.feed(data)
                else:
                    p.feed_eof()
                continue
            if isinstance(ev, http11.End):
                self.trailers = ev.trailers
                self._release()
                return b""
            if ev:
                if p.done:
                    self._release()  # the connection is free before End is asked for
                return ev
        return b""

    def _fail(self, e: Exception) -> TransportError:
        self._abort()
        return TransportError(f"error reading response: {e}")

    def _abort(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def read(self) -> bytes:
        out = []
        try:
            while True:
                data = self._next(None)
                if not data:
                    return b"".join(out)
                out.append(data)
        except (http11.ProtocolError, OSError) as e:
            raise self._fail(e) from None

    def iter_chunks(self, size: int = 65536) -> Iterator[bytes]:
        """The body as it arrives, in pieces of at most ``size`` bytes."""
        try:
            while True:
                data = self._next(size)
                if not data:
                    return
                yield data
        except (http11.ProtocolError, OSError) as e:
            raise self._fail(e) from None

    def isclosed(self) -> bool:
        return self._conn is None

    def close(self) -> None:
        # an unread body makes the connection unusable for the next request
        self._abort()

    def __enter__(self) -> "Response":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Transport:
    def __init__(self, host: str = DEFAULT_HOST, tls: TLSConfig | None = None,
                 timeout: float | None = None):
        self.host = host
        self.tls = tls
        self.timeout = timeout
        self._conn: _Conn | None = None   # the idle keep-alive connection
        scheme, sep, rest = host.partition("://")
        self.scheme = scheme.lower() if sep else ""
        if self.scheme == "unix":
            self.path = _unix_path(rest) or host[len("unix://"):]
        elif self.scheme in ("tcp", "http", "https"):
            if self.scheme == "https" and self.tls is None:
                self.tls = TLSConfig()
            self.hostname, self.port = _host_port(host, rest)
            if not self.port:
                self.port = 2376 if self.tls else 2375
        else:
            raise TransportError(f"unsupported protocol scheme in host {host!r}")

    # -- connections ------------------------------------------------------------------------
    def connect_socket(self):
        """A new connected socket to the daemon (TLS-wrapped for TLS hosts); OSError if not.

        Unix and plain TCP give a :class:`Socket`, TLS an ``ssl.SSLSocket``."""
        if self.scheme == "unix":
            sock = Socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                if self.timeout is not None:
                    sock.settimeout(self.timeout)
                sock.connect(self.path)
            except BaseException:
                sock.close()
                raise
            return sock
        if self.tls is not None:
            import socket

            ctx = self.tls.context()
            raw = socket.create_connection((self.hostname, self.port), self.timeout)
            try:
                raw.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                return ctx.wrap_socket(raw, server_hostname=self.hostname)
            except BaseException:
                raw.close()
                raise
        return self._tcp()

    def _tcp(self):
        err: OSError | None = None
        for family, type_, proto, _, addr in _socket.getaddrinfo(
                self.hostname, self.port, 0, _socket.SOCK_STREAM):
            sock = Socket(family, type_, proto)
            try:
                if self.timeout is not None:
                    sock.settimeout(self.timeout)
                sock.connect(addr)
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                return sock
            except OSError as e:
                err = e
                sock.close()
            except BaseException:
                sock.close()
                raise
        raise err if err is not None else OSError(f"getaddrinfo returned nothing for "
                                                  f"{self.hostname}")

    def host_header(self) -> str:
        if self.scheme == "unix":
            return "localhost"
        h = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        default = 443 if self.tls is not None else 80
        return h if self.port == default else f"{h}:{self.port}"

    def _give_back(self, conn: _Conn) -> None:
        if self._conn is None:
            self._conn = conn
        else:
            conn.close()

    def reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- requests ---------------------------------------------------------------------------
    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None,
                body: bytes | BinaryIO | Iterable[bytes] | None = None) -> Response:
        hdrs = dict(headers or {})
        if isinstance(body, str):
            body = body.encode("iso-8859-1")
        names = {k.lower() for k in hdrs}
        streamed = body is not None and not isinstance(body, (bytes, bytearray, memoryview))
        chunked = streamed and "content-length" not in names
        extra = [("Host", self.host_header()), ("Accept-Encoding", "identity")]
        extra = [(k, v) for k, v in extra if k.lower() not in names]
        if not streamed and "content-length" not in names and "transfer-encoding" not in names:
            if body is not None:
                extra.append(("Content-Length", str(len(body))))
            elif method.upper() in ("POST", "PUT", "PATCH"):
                extra.append(("Content-Length", "0"))
        if chunked and "transfer-encoding" not in names:
            extra.append(("Transfer-Encoding", "chunked"))
        try:
            head = http11.encode_request_head(method, path, extra + list(hdrs.items()))
        except ValueError as e:
            raise TransportError(f"invalid request: {e}") from None
        for attempt in (0, 1):
            conn, self._conn = self._conn, None
            fresh = conn is None
            try:
                if conn is None:
                    conn = _Conn(self.connect_socket())
            except OSError as e:
                if _is_ssl_error(e):
                    raise TransportError(f"error during connect: {e}") from None
                raise TransportError(self._unreachable(e)) from None
            try:
                return self._exchange(conn, method, head, body, streamed, chunked)
            except (http11.ClosedBeforeResponse, ConnectionResetError, BrokenPipeError):
                conn.close()
                # a kept-alive connection the server closed: retry once on a fresh one
                if fresh or attempt or streamed:
                    raise TransportError(self._unreachable()) from None
                continue
            except http11.ProtocolError as e:
                conn.close()
                raise TransportError(f"error during request: {e}") from None
            except OSError as e:
                conn.close()
                if _is_ssl_error(e):
                    raise TransportError(f"error during connect: {e}") from None
                if fresh:
                    raise TransportError(self._unreachable(e)) from None
                raise TransportError(f"error during request: {e}") from None
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")

    def _exchange(self, conn: _Conn, method: str, head: bytes, body: Any, streamed: bool,
                  chunked: bool) -> Response:
        sock = conn.sock
        parser = http11.ResponseParser(method)
        if not streamed:
            sock.sendall(head + bytes(body) if body else head)
        else:
            sock.sendall(head)
            try:
                for piece in _pieces(body):
                    sock.sendall(http11.encode_chunk(piece) if chunked else piece)
                if chunked:
                    sock.sendall(http11.LAST_CHUNK)
            except (BrokenPipeError, ConnectionResetError):
                # the daemon may have answered (an error) and closed: read that answer
                try:
                    return self._read_head(conn, parser)
                except (http11.ProtocolError, OSError):
                    pass
                raise
        return self._read_head(conn, parser)

    def _read_head(self, conn: _Conn, parser: http11.ResponseParser) -> Response:
        while True:
            ev = parser.next_event()
            if ev is http11.NEED_DATA:
                data = conn.sock.recv(_RECV)
                if data:
                    parser.feed(data)
                else:
                    parser.feed_eof()
                continue
            return Response(self, conn, parser, ev)

    def _unreachable(self, err: OSError | None = None) -> str:
        if self.scheme == "unix":
            return (f"Cannot connect to the Docker daemon at {self.host}. "
                    "Is the docker daemon running?")
        detail = f": {err.strerror or err}" if err is not None else ""
        return f"Cannot connect to the Docker daemon at {self.host}{detail}"

    def close(self) -> None:
        self.reset()


def _pieces(body: Any) -> Iterator[bytes]:
    """A streamed request body as non-empty byte strings (files read in 64 KiB blocks)."""
    read = getattr(body, "read", None)
    if read is not None:
        while True:
            data = read(_RECV)
            if not data:
                return
            yield data.encode("iso-8859-1") if isinstance(data, str) else data
    for piece in body:
        if piece:
            yield piece.encode("iso-8859-1") if isinstance(piece, str) else piece


def _unix_path(rest: str) -> str:
    """The path part of what follows ``unix://`` (as urlsplit would find it)."""
    rest = rest.split("#", 1)[0].split("?", 1)[0]
    if rest.startswith("/"):
        return rest
    _, slash, path = rest.partition("/")
    return slash + path


def _host_port(host: str, rest: str) -> tuple[str, int | None]:
    """tcp://h:p/x -> ("h", p); [v6] literals; a bad port is a TransportError."""
    netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    netloc = netloc.rpartition("@")[2]
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise TransportError(f"invalid IPv6 address in host {host!r}")
        name, port_s = netloc[1:end], netloc[end + 1:].lstrip(":")
    else:
        name, _, port_s = netloc.partition(":")
    port = None
    if port_s:
        if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
            raise TransportError(f"invalid port in host {host!r}")
        port = int(port_s)
    return (name.lower() or "localhost"), port


def transport_from_env(host: str | None = None, tls: bool | None = None,
                       tlsverify: bool | None = None, cacert: str | None = None,
                       cert: str | None = None, key: str | None = None,
                       env: Mapping[str, str] | None = None) -> Transport:
    """Docker's rules: -H beats DOCKER_HOST; DOCKER_TLS_VERIFY/DOCKER_CERT_PATH; ~/.docker."""
    env = os.environ if env is None else env
    host = host or env.get("DOCKER_HOST") or DEFAULT_HOST
    if "://" not in host:
        host = ("unix://" + host) if host.startswith("/") else ("tcp://" + host)
    env_verify = bool(env.get("DOCKER_TLS_VERIFY"))
    verify = tlsverify if tlsverify is not None else env_verify
    use_tls = bool(tls) or verify
    tls_cfg = None
    if use_tls and not host.startswith("unix://"):
        cert_dir = env.get("DOCKER_CERT_PATH") or os.path.join(os.path.expanduser("~"),
                                                                 ".docker")
        base = TLSConfig.from_dir(cert_dir, verify=verify)
        tls_cfg = TLSConfig(verify=verify, ca_cert=cacert or base.ca_cert,
                            client_cert=cert or base.client_cert,
                            client_key=key or base.client_key)
    return Transport(host, tls=tls_cfg)
