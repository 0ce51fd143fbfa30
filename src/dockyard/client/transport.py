"""Transports for the API client: a request goes in, a response comes out.

Built on http.client (no third-party import, so the CLI starts fast): unix
sockets through a small HTTPConnection subclass, TCP, and TCP with TLS.  One
keep-alive connection is reused while the previous response was read fully.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Mapping
from urllib.parse import urlsplit

DEFAULT_HOST = "unix:///run/dockyard.sock"


class TransportError(Exception):
    """The daemon could not be reached (connect/TLS/protocol failure)."""


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None = None):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass
class TLSConfig:
    verify: bool = True            # check the server's certificate against ca_cert
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    def context(self) -> ssl.SSLContext:
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
        d = Path(cert_path)

        def f(name: str) -> str | None:
            p = d / name
            return str(p) if p.exists() else None

        return cls(verify=verify, ca_cert=f("ca.pem"), client_cert=f("cert.pem"),
                   client_key=f("key.pem"))


class Response:
    """A response whose body can be read whole, in chunks, or line by line."""

    def __init__(self, raw: http.client.HTTPResponse, transport: "Transport"):
        self._raw = raw
        self._transport = transport
        self.status = raw.status
        self.reason = raw.reason
        self.headers = raw.headers

    def read(self) -> bytes:
        try:
            return self._raw.read()
        except (http.client.HTTPException, OSError) as e:
            self._transport.reset()
            raise TransportError(f"error reading response: {e}") from None

    def iter_chunks(self, size: int = 65536) -> Iterable[bytes]:
        try:
            while True:
                data = self._raw.read1(size)
                if not data:
                    return
                yield data
        except (http.client.HTTPException, OSError) as e:
            self._transport.reset()
            raise TransportError(f"error reading response: {e}") from None

    def close(self) -> None:
        if not self._raw.isclosed():
            # an unread body makes the connection unusable for the next request
            self._transport.reset()
            self._raw.close()

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
        self._conn: http.client.HTTPConnection | None = None
        u = urlsplit(host)
        self.scheme = u.scheme
        if u.scheme == "unix":
            self.path = u.path or host[len("unix://"):]
        elif u.scheme in ("tcp", "http", "https"):
            if u.scheme == "https" and self.tls is None:
                self.tls = TLSConfig()
            self.hostname = u.hostname or "localhost"
            self.port = u.port or (2376 if self.tls else 2375)
        else:
            raise TransportError(f"unsupported protocol scheme in host {host!r}")

    def _connect(self) -> http.client.HTTPConnection:
        if self.scheme == "unix":
            return UnixHTTPConnection(self.path, timeout=self.timeout)
        if self.tls is not None:
            return http.client.HTTPSConnection(self.hostname, self.port, timeout=self.timeout,
                                               context=self.tls.context())
        return http.client.HTTPConnection(self.hostname, self.port, timeout=self.timeout)

    def reset(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None,
                body: bytes | BinaryIO | Iterable[bytes] | None = None) -> Response:
        hdrs = dict(headers or {})
        chunked = body is not None and not isinstance(body, (bytes, bytearray))
        for attempt in (0, 1):
            fresh = self._conn is None
            if fresh:
                self._conn = self._connect()
            conn = self._conn
            try:
                conn.request(method, path, body=body, headers=hdrs, encode_chunked=chunked)
                raw = conn.getresponse()
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                self.reset()
                # a kept-alive connection the server closed: retry once on a fresh one
                if fresh or attempt or chunked:
                    raise TransportError(self._unreachable()) from None
                continue
            except ssl.SSLError as e:
                self.reset()
                raise TransportError(f"error during connect: {e}") from None
            except OSError as e:
                self.reset()
                if fresh:
                    raise TransportError(self._unreachable(e)) from None
                raise TransportError(f"error during request: {e}") from None
            if raw.getheader("Connection", "").lower() == "close":
                self._conn = None
            return Response(raw, self)
        raise AssertionError("unreachable")

    def _unreachable(self, err: OSError | None = None) -> str:
        if self.scheme == "unix":
            return (f"Cannot connect to the Docker daemon at {self.host}. "
                    "Is the docker daemon running?")
        detail = f": {err.strerror or err}" if err is not None else ""
        return f"Cannot connect to the Docker daemon at {self.host}{detail}"

    def close(self) -> None:
        self.reset()


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
        cert_dir = env.get("DOCKER_CERT_PATH") or str(Path.home() / ".docker")
        base = TLSConfig.from_dir(cert_dir, verify=verify)
        tls_cfg = TLSConfig(verify=verify, ca_cert=cacert or base.ca_cert,
                            client_cert=cert or base.client_cert,
                            client_key=key or base.client_key)
    return Transport(host, tls=tls_cfg)
