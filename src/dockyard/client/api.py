"""The Python API client: ``dockyard.client.Client``.

    c = Client.from_env()             # DOCKER_HOST / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH
    c = Client("unix:///run/dockyard.sock")
    c.version(); c.images(all=True); c.remove_image("busybox", force=True)

The API version is negotiated with the first request (``HEAD /_ping``), like
the Docker CLI.  Daemon errors are raised as :mod:`dockyard.errors` types
carrying the daemon's message; an unreachable daemon raises
:class:`DaemonUnreachable`.
"""

from __future__ import annotations

import json

from dockyard import errors
from dockyard.client.http11 import quote, urlencode
from dockyard.client.transport import Response, Transport, TransportError, transport_from_env

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Iterable, Iterator, Mapping

CLIENT_API_VERSION = "1.47"
USER_AGENT = "Dockyard-Client/0.1.0 (linux)"

_BY_STATUS = {400: errors.InvalidParameter, 401: errors.Unauthorized, 403: errors.Forbidden,
              404: errors.NotFound, 409: errors.Conflict, 304: errors.NotModified,
              503: errors.Unavailable}


class DaemonUnreachable(errors.Unavailable):
    """No daemon answered at the configured address."""


class StreamError(errors.DockyardError):
    """An error the daemon reported in-band, after a streamed response had started."""


def _vtuple(v: str) -> tuple[int, int]:
    a, _, b = v.partition(".")
    return int(a), int(b or 0)


def _filters(filters: Mapping[str, Any] | None) -> str | None:
    """{"dangling": ["true"], "label": "a=b"} -> Docker's JSON form {"k": {"v": true}}."""
    if not filters:
        return None
    out: dict[str, dict[str, bool]] = {}
    for k, vals in filters.items():
        if isinstance(vals, (str, bool, int)):
            vals = [vals]
        out[k] = {(str(v).lower() if isinstance(v, bool) else str(v)): True for v in vals}
    return json.dumps(out, separators=(",", ":"))


def raise_for_status(resp: Response) -> None:
    if resp.status < 400 and resp.status != 304:
        return
    body = resp.read()
    message = ""
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError):
        message = body.decode(errors="replace").strip()
    if not message:
        message = f"{resp.status} {resp.reason}"
    cls = _BY_STATUS.get(resp.status, errors.SystemError_ if resp.status >= 500
                         else errors.InvalidParameter)
    err = cls(message)
    err.status = resp.status
    raise err


def iter_json_stream(resp: Response) -> Iterator[dict]:
    """Objects of a JSON-lines body; in-band errors become :class:`StreamError`."""
    buf = b""
    dec = json.JSONDecoder()

    def take(text: str) -> Iterator[dict]:
        for line in text.splitlines():
            line = line.strip()
            if line:
                obj, _ = dec.raw_decode(line)
                if isinstance(obj, dict) and obj.get("error") and "errorDetail" in obj:
                    raise StreamError(obj.get("errorDetail", {}).get("message") or obj["error"])
                yield obj

    try:
        for chunk in resp.iter_chunks():
            buf += chunk
            nl = buf.rfind(b"\n")
            if nl < 0:
                continue
            lines, buf = buf[: nl + 1], buf[nl + 1:]
            yield from take(lines.decode())
        if buf.strip():
            yield from take(buf.decode())
    finally:
        resp.close()


class Client:
    def __init__(self, host: str | None = None, *, version: str | None = None,
                 transport: Transport | None = None, tls: bool | None = None,
                 tlsverify: bool | None = None, tlscacert: str | None = None,
                 tlscert: str | None = None, tlskey: str | None = None,
                 env: Mapping[str, str] | None = None):
        import os

        env = os.environ if env is None else env
        self.transport = transport or transport_from_env(host, tls, tlsverify, tlscacert,
                                                         tlscert, tlskey, env=env)
        self._forced_version = version or env.get("DOCKER_API_VERSION") or None
        self.api_version: str | None = self._forced_version
        self.server_headers: dict[str, str] = {}

    @classmethod
    def from_env(cls, **kw: Any) -> "Client":
        return cls(**kw)

    @property
    def host(self) -> str:
        return self.transport.host

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------
    def _raw(self, method: str, path: str, headers: Mapping[str, str] | None = None,
             body: Any = None) -> Response:
        h = {"User-Agent": USER_AGENT}
        h.update(headers or {})
        try:
            return self.transport.request(method, path, headers=h, body=body)
        except TransportError as e:
            raise DaemonUnreachable(str(e)) from None

    def ping(self) -> dict[str, str]:
        """``HEAD /_ping`` (GET if HEAD is refused); the daemon's headers."""
        resp = self._raw("HEAD", "/_ping")
        resp.read()
        if resp.status == 405:
            resp = self._raw("GET", "/_ping")
            resp.read()
        if resp.status >= 400 and resp.status != 405:
            raise errors.SystemError_(f"ping failed: {resp.status} {resp.reason}")
        self.server_headers = {k: v for k, v in resp.headers.items()}
        return self.server_headers

    def negotiate(self) -> str:
        if self.api_version is None:
            server = None
            try:
                server = self.ping().get("Api-Version")
            except errors.SystemError_:
                pass
            if not server:
                self.api_version = "1.24"
            else:
                self.api_version = min(server, CLIENT_API_VERSION, key=_vtuple)
        return self.api_version

    def url(self, path: str, params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None
            ) -> str:
        q = ""
        if params:
            items = params.items() if hasattr(params, "items") else params
            pairs = [(k, v) for k, v in items if v is not None]
            if pairs:
                q = "?" + urlencode([(k, _qv(v)) for k, v in pairs])
        return f"/v{self.negotiate()}{path}{q}"

    def request(self, method: str, path: str, params: Any = None, *, json_body: Any = None,
                body: Any = None, headers: Mapping[str, str] | None = None) -> Response:
        h = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            h.setdefault("Content-Type", "application/json")
        resp = self._raw(method, self.url(path, params), headers=h, body=body)
        raise_for_status(resp)
        return resp

    def get_json(self, path: str, params: Any = None) -> Any:
        resp = self.request("GET", path, params)
        return json.loads(resp.read() or b"null")

    def stream_json(self, method: str, path: str, params: Any = None, **kw: Any
                    ) -> Iterator[dict]:
        resp = self.request(method, path, params, **kw)
        return iter_json_stream(resp)

    # -- system -------------------------------------------------------------
    def version(self) -> dict:
        return self.get_json("/version")

    def info(self) -> dict:
        return self.get_json("/info")

    def df(self) -> dict:
        return self.get_json("/system/df")

    def events(self, since: str | None = None, until: str | None = None,
               filters: Mapping[str, Any] | None = None) -> Iterator[dict]:
        """Event objects; ends at ``until`` (``"<s>[.<ns>]"``) or runs until closed."""
        return self.stream_json("GET", "/events", {"since": since, "until": until,
                                                   "filters": _filters(filters)})

    # -- images -------------------------------------------------------------
    def images(self, all: bool = False, filters: Mapping[str, Any] | None = None,
               digests: bool = False) -> list[dict]:
        return self.get_json("/images/json", {"all": "1" if all else None,
                                              "filters": _filters(filters),
                                              "digests": "1" if digests else None})

    def inspect_image(self, name: str) -> dict:
        return self.get_json(f"/images/{_p(name)}/json")

    def history(self, name: str) -> list[dict]:
        return self.get_json(f"/images/{_p(name)}/history")

    def tag(self, source: str, repo: str, tag: str | None = None) -> None:
        self.request("POST", f"/images/{_p(source)}/tag", {"repo": repo, "tag": tag}).read()

    def remove_image(self, name: str, force: bool = False, noprune: bool = False) -> list[dict]:
        resp = self.request("DELETE", f"/images/{_p(name)}",
                            {"force": "1" if force else None,
                             "noprune": "1" if noprune else None})
        return json.loads(resp.read() or b"[]")

    def import_image(self, source: BinaryIO | bytes | str, repo: str | None = None,
                     changes: Iterable[str] = (), message: str | None = None) -> Iterator[dict]:
        """``source``: a tar stream/bytes uploaded as-is, or a URL the daemon fetches."""
        params: list[tuple[str, Any]] = []
        if isinstance(source, str):
            params.append(("fromSrc", source))
            body = None
        else:
            params.append(("fromSrc", "-"))
            body = source
        if repo:
            params.append(("repo", repo))
        for c in changes:
            params.append(("changes", c))
        if message:
            params.append(("message", message))
        return self.stream_json("POST", "/images/create", params, body=body,
                                headers={"Content-Type": "text/plain"})

    def load(self, source: BinaryIO | bytes, quiet: bool = False) -> Iterator[dict]:
        return self.stream_json("POST", "/images/load", {"quiet": "1" if quiet else "0"},
                                body=source, headers={"Content-Type": "application/x-tar"})

    def save(self, names: Iterable[str]) -> Response:
        """The tar stream of ``docker save``; read it with ``iter_chunks()``."""
        return self.request("GET", "/images/get", [("names", n) for n in names])

    def prune_images(self, filters: Mapping[str, Any] | None = None) -> dict:
        resp = self.request("POST", "/images/prune", {"filters": _filters(filters)})
        return json.loads(resp.read() or b"{}")

    def prune_build_cache(self, all: bool = False, filters: Mapping[str, Any] | None = None,
                          keep_storage: int = 0) -> dict:
        resp = self.request("POST", "/build/prune", {"all": "1" if all else None,
                                                     "filters": _filters(filters),
                                                     "keep-storage": keep_storage or None})
        return json.loads(resp.read() or b"{}")


def _p(name: str) -> str:
    # image names travel unescaped like the Docker CLI sends them ('/' and ':' kept)
    return quote(name, safe="/:@")


def _qv(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)
