"""Container and exec methods of :class:`dockyard.client.Client`.

    cid = c.create_container({"Image": "busybox", "Cmd": ["true"]}, name="x")["Id"]
    c.start(cid); code = c.wait(cid); c.remove_container(cid)
    h = c.attach_socket(cid, stdin=True)     # a Hijacked: raw socket + bytes already read

Attach and exec start hijack a fresh connection (``Upgrade: tcp``); the caller
owns the returned socket. A long wait (``wait_response``) also gets a private
connection, so the client stays usable while it is open.
"""

from __future__ import annotations

import _thread
import json

from dockyard import errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, Iterator, Mapping

_NEGOTIATE_LOCK = _thread.allocate_lock()


class Hijacked:
    """A hijacked connection: ``sock`` carries raw bytes both ways, ``buffered`` came
    with the response headers and belongs before anything read from ``sock``.

    ``sock`` is a socket object (recv, sendall, shutdown, settimeout, fileno, close):
    a :class:`dockyard.client.transport.Socket`, or an ``ssl.SSLSocket`` over TLS."""

    __slots__ = ("sock", "buffered")

    def __init__(self, sock, buffered: bytes = b"") -> None:
        self.sock = sock
        self.buffered = buffered

    def __repr__(self) -> str:
        return f"Hijacked(sock={self.sock!r}, buffered={self.buffered!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Hijacked) and self.sock is other.sock
                and self.buffered == other.buffered)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _flag(v: bool) -> str | None:
    return "1" if v else None


class ContainersMixin:
    """Mixed into Client (uses its request/get_json/url/transport)."""

    # -- plumbing -----------------------------------------------------------
    def clone(self):
        """Another client for the same daemon and API version, with its own connection."""
        from dockyard.client.transport import Transport

        with _NEGOTIATE_LOCK:  # clones are made from several threads at once
            version = self.negotiate()
        t = self.transport
        other = type(self)(transport=Transport(t.host, tls=t.tls, timeout=t.timeout))
        other.api_version = version
        return other

    def hijack(self, method: str, path: str, params: Any = None,
               json_body: Any = None) -> Hijacked:
        """Send a request with ``Upgrade: tcp`` on a fresh connection; 101/200 -> Hijacked."""
        from dockyard.client import http11
        from dockyard.client.api import USER_AGENT, DaemonUnreachable, raise_for_status
        from dockyard.client.transport import Response

        url = self.url(path, params)
        body = json.dumps(json_body).encode() if json_body is not None else b""
        t = self.transport
        try:
            sock = t.connect_socket()
        except OSError as e:
            raise DaemonUnreachable(t._unreachable(e)) from None
        head = http11.encode_request_head(method, url, [
            ("Host", "docker"), ("User-Agent", USER_AGENT), ("Connection", "Upgrade"),
            ("Upgrade", "tcp"),
            ("Content-Type", "application/json" if json_body is not None else "text/plain"),
            ("Content-Length", str(len(body)))])
        parser = http11.ResponseParser(method)
        try:
            sock.sendall(head + body)
            while True:
                ev = parser.next_event()
                if ev is not http11.NEED_DATA:
                    break
                data = sock.recv(65536)
                if not data:
                    raise DaemonUnreachable("the daemon closed the connection")
                parser.feed(data)
        except http11.ProtocolError as e:
            sock.close()
            raise DaemonUnreachable(f"error during request: {e}") from None
        except OSError as e:
            sock.close()
            raise DaemonUnreachable(f"error during request: {e}") from None
        except BaseException:
            sock.close()
            raise
        if ev.status in (101, 200):
            # from here on the connection carries raw stream bytes, whatever the headers say
            return Hijacked(sock, parser.trailing_data())
        # an error: read the (small) body and raise it like any other response
        from dockyard.client.transport import TransportError, _Conn

        sock.settimeout(10)
        resp = Response(t, _Conn(sock), parser, ev, reuse=False)
        try:
            body_bytes = resp.read()
        except TransportError:
            body_bytes = b""  # the status says enough
        finally:
            resp.close()
        resp.read = lambda: body_bytes  # type: ignore[method-assign]
        raise_for_status(resp)
        raise errors.SystemError_(f"unexpected status {ev.status}")

    # -- containers ---------------------------------------------------------
    def containers(self, all: bool = False, limit: int | None = None, size: bool = False,
                   filters: Mapping[str, Any] | None = None) -> list[dict]:
        from dockyard.client.api import _filters

        return self.get_json("/containers/json", {
            "all": _flag(all), "limit": limit if limit and limit > 0 else None,
            "size": _flag(size), "filters": _filters(filters)})

    def create_container(self, body: dict, name: str | None = None,
                         platform: str | None = None) -> dict:
        resp = self.request("POST", "/containers/create", {"name": name or None,
                                                            "platform": platform},
                            json_body=body)
        return json.loads(resp.read() or b"{}")

    def inspect_container(self, cid: str, size: bool = False) -> dict:
        return self.get_json(f"/containers/{cid}/json", {"size": _flag(size)})

    def _post(self, path: str, params: Any = None, json_body: Any = None) -> bytes:
        try:
            return self.request("POST", path, params, json_body=json_body).read()
        except errors.NotModified:
            return b""

    def start(self, cid: str) -> None:
        self._post(f"/containers/{cid}/start")

    def stop(self, cid: str, timeout: int | None = None, signal: str | None = None) -> None:
        self._post(f"/containers/{cid}/stop", {"t": timeout, "signal": signal})

    def restart(self, cid: str, timeout: int | None = None, signal: str | None = None) -> None:
        self._post(f"/containers/{cid}/restart", {"t": timeout, "signal": signal})

    def kill(self, cid: str, signal: str | int | None = None) -> None:
        self._post(f"/containers/{cid}/kill", {"signal": signal})

    def pause(self, cid: str) -> None:
        self._post(f"/containers/{cid}/pause")

    def unpause(self, cid: str) -> None:
        self._post(f"/containers/{cid}/unpause")

    def rename(self, cid: str, name: str) -> None:
        self._post(f"/containers/{cid}/rename", {"name": name})

    def resize(self, cid: str, height: int, width: int) -> None:
        self._post(f"/containers/{cid}/resize", {"h": height, "w": width})

    def update_container(self, cid: str, body: dict) -> dict:
        return json.loads(self._post(f"/containers/{cid}/update", json_body=body) or b"{}")

    def remove_container(self, cid: str, force: bool = False, volumes: bool = False,
                         link: bool = False) -> None:
        self.request("DELETE", f"/containers/{cid}", {"force": _flag(force), "v": _flag(volumes),
                                                      "link": _flag(link)}).read()

    def wait_response(self, cid: str, condition: str | None = None):
        """Send ``/wait`` on a private connection; returns once the headers are in.

        Read the exit code later with :func:`wait_result`."""
        other = self.clone()
        resp = other.request("POST", f"/containers/{cid}/wait", {"condition": condition})
        resp._client = other  # keep the connection alive as long as the response
        return resp

    def wait(self, cid: str, condition: str | None = None) -> int:
        return wait_result(self.request("POST", f"/containers/{cid}/wait",
                                        {"condition": condition}))

    def logs(self, cid: str, stdout: bool = True, stderr: bool = True, follow: bool = False,
             tail: str | int = "all", since: str | None = None, until: str | None = None,
             timestamps: bool = False, details: bool = False):
        """The raw log stream (multiplexed unless the container has a tty)."""
        return self.request("GET", f"/containers/{cid}/logs", {
            "stdout": _flag(stdout), "stderr": _flag(stderr), "tail": str(tail),
            "follow": _flag(follow), "since": since, "until": until,
            "timestamps": _flag(timestamps), "details": _flag(details)})

    def attach_socket(self, cid: str, stdin: bool = False, stdout: bool = True,
                      stderr: bool = True, stream: bool = True, logs: bool = False,
                      detach_keys: str | None = None) -> Hijacked:
        return self.hijack("POST", f"/containers/{cid}/attach", {
            "stderr": _flag(stderr), "stdin": _flag(stdin), "stdout": _flag(stdout),
            "stream": _flag(stream), "logs": _flag(logs), "detachKeys": detach_keys})

    def top(self, cid: str, ps_args: str | None = None) -> dict:
        return self.get_json(f"/containers/{cid}/top", {"ps_args": ps_args})

    def changes(self, cid: str) -> list[dict]:
        return self.get_json(f"/containers/{cid}/changes") or []

    def export(self, cid: str):
        return self.request("GET", f"/containers/{cid}/export")

    def stats(self, cid: str, stream: bool = False):
        """One stats object (stream=False), or the streaming response."""
        resp = self.request("GET", f"/containers/{cid}/stats", {"stream": "1" if stream else "0"})
        if stream:
            return resp
        return json.loads(resp.read() or b"{}")

    def prune_containers(self, filters: Mapping[str, Any] | None = None) -> dict:
        from dockyard.client.api import _filters

        return json.loads(self._post("/containers/prune", {"filters": _filters(filters)})
                          or b"{}")

    def commit(self, cid: str, repo: str | None = None, tag: str | None = None,
               author: str | None = None, comment: str | None = None,
               changes: Iterable[str] = (), pause: bool = True) -> dict:
        params: list[tuple[str, Any]] = [("container", cid)]
        if repo:
            params.append(("repo", repo))
        if tag:
            params.append(("tag", tag))
        if comment:
            params.append(("comment", comment))
        if author:
            params.append(("author", author))
        for ch in changes:
            params.append(("changes", ch))
        if not pause:
            params.append(("pause", "0"))
        return json.loads(self.request("POST", "/commit", params).read() or b"{}")

    # -- exec ---------------------------------------------------------------
    def exec_create(self, cid: str, body: dict) -> str:
        resp = self.request("POST", f"/containers/{cid}/exec", json_body=body)
        return json.loads(resp.read())["Id"]

    def exec_start_socket(self, eid: str, tty: bool = False) -> Hijacked:
        return self.hijack("POST", f"/exec/{eid}/start", json_body={"Detach": False,
                                                                    "Tty": tty})

    def exec_start_detached(self, eid: str, tty: bool = False) -> None:
        self.request("POST", f"/exec/{eid}/start",
                     json_body={"Detach": True, "Tty": tty}).read()

    def exec_resize(self, eid: str, height: int, width: int) -> None:
        self._post(f"/exec/{eid}/resize", {"h": height, "w": width})

    def exec_inspect(self, eid: str) -> dict:
        return self.get_json(f"/exec/{eid}/json")

    # -- docker cp: /containers/{id}/archive ------------------------------------------------
    def stat_path(self, cid: str, path: str) -> dict:
        """``HEAD .../archive``: the X-Docker-Container-Path-Stat of ``path``.

        A missing path raises NotFound with dockerd's words (a HEAD has no body)."""
        resp = self._raw("HEAD", self.url(f"/containers/{cid}/archive", {"path": path}))
        resp.read()
        if resp.status == 404:
            raise errors.NotFound(f"Could not find the file {path} in container {cid}")
        if resp.status >= 400:
            raise errors.SystemError_(f"Error response from daemon: {resp.status} {resp.reason}")
        return _path_stat(resp.headers.get("X-Docker-Container-Path-Stat"))

    def get_archive(self, cid: str, path: str):
        """``GET .../archive``: (the streaming tar response, its path stat)."""
        resp = self.request("GET", f"/containers/{cid}/archive", {"path": path})
        return resp, _path_stat(resp.headers.get("X-Docker-Container-Path-Stat"))

    def put_archive(self, cid: str, path: str, data, no_overwrite_dir_non_dir: bool = False,
                    copy_uid_gid: bool = False) -> None:
        """``PUT .../archive``: extract the tar ``data`` (bytes, file or chunks) into ``path``."""
        params = {"path": path,
                  "noOverwriteDirNonDir": "true" if no_overwrite_dir_non_dir else None,
                  "copyUIDGID": "true" if copy_uid_gid else None}
        self.request("PUT", f"/containers/{cid}/archive", params, body=data,
                     headers={"Content-Type": "application/x-tar"}).read()


def _path_stat(header: str | None) -> dict:
    import base64

    if not header:
        return {}
    try:
        return json.loads(base64.b64decode(header))
    except ValueError:
        return {}


def wait_result(resp) -> int:
    """The StatusCode of a ``/wait`` body; an in-band error raises."""
    try:
        data = json.loads(resp.read() or b"{}")
    finally:
        other = getattr(resp, "_client", None)
        if other is not None:
            other.close()
    err = data.get("Error")
    if err and err.get("Message"):
        raise errors.SystemError_(err["Message"])
    return int(data.get("StatusCode", -1))


def iter_frames(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """(stream, payload) of a multiplexed body; stream 1 = stdout, 2 = stderr."""
    from dockyard.streamframes import FrameDecoder

    dec = FrameDecoder()
    for chunk in chunks:
        yield from dec.feed(chunk)
