"""Container and exec methods of :class:`dockyard.client.Client`.

    cid = c.create_container({"Image": "busybox", "Cmd": ["true"]}, name="x")["Id"]
    c.start(cid); code = c.wait(cid); c.remove_container(cid)
    h = c.attach_socket(cid, stdin=True)     # a Hijacked: raw socket + bytes already read

Attach and exec start hijack a fresh connection (``Upgrade: tcp``); the caller
owns the returned socket. A long wait (``wait_response``) also gets a private
connection, so the client stays usable while it is open.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from dockyard import errors


_NEGOTIATE_LOCK = threading.Lock()


@dataclass
class Hijacked:
    """A hijacked connection: ``sock`` carries raw bytes both ways, ``buffered`` came
    with the response headers and belongs before anything read from ``sock``."""

    sock: socket.socket
    buffered: bytes = b""

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
        from dockyard.client.api import USER_AGENT, DaemonUnreachable, raise_for_status

        url = self.url(path, params)
        body = json.dumps(json_body).encode() if json_body is not None else b""
        conn = self.transport._connect()
        try:
            conn.connect()
        except OSError as e:
            raise DaemonUnreachable(self.transport._unreachable(e)) from None
        sock = conn.sock
        head = (f"{method} {url} HTTP/1.1\r\nHost: docker\r\nUser-Agent: {USER_AGENT}\r\n"
                "Connection: Upgrade\r\nUpgrade: tcp\r\n"
                f"Content-Type: {'application/json' if json_body is not None else 'text/plain'}"
                f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        try:
            sock.sendall(head + body)
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    raise DaemonUnreachable("the daemon closed the connection")
                buf += data
        except OSError as e:
            sock.close()
            raise DaemonUnreachable(f"error during request: {e}") from None
        header, _, rest = buf.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        if status in (101, 200):
            return Hijacked(sock, rest)
        # an error: read the (small) body and raise it like any other response
        hdrs = {k.strip().lower(): v.strip() for k, _, v in
                (ln.partition(":") for ln in lines[1:])}
        body_bytes = _read_body(sock, rest, hdrs)
        sock.close()

        class _Resp:
            reason = parts[2] if len(parts) > 2 else ""

            def read(self_inner) -> bytes:
                return body_bytes

        r = _Resp()
        r.status = status  # type: ignore[attr-defined]
        raise_for_status(r)  # type: ignore[arg-type]
        raise errors.SystemError_(f"unexpected status {status}")

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


def _read_body(sock: socket.socket, rest: bytes, hdrs: Mapping[str, str]) -> bytes:
    sock.settimeout(10)
    try:
        if "content-length" in hdrs:
            n = int(hdrs["content-length"])
            while len(rest) < n:
                d = sock.recv(65536)
                if not d:
                    break
                rest += d
            return rest[:n]
        while True:
            if hdrs.get("transfer-encoding", "").lower() == "chunked" and rest.endswith(
                    b"0\r\n\r\n"):
                break
            d = sock.recv(65536)
            if not d:
                break
            rest += d
    except OSError:
        pass
    if hdrs.get("transfer-encoding", "").lower() == "chunked":
        out, buf = b"", rest
        while buf:
            size_s, _, buf = buf.partition(b"\r\n")
            try:
                size = int(size_s.split(b";")[0], 16)
            except ValueError:
                break
            if size == 0:
                break
            out, buf = out + buf[:size], buf[size + 2:]
        return out
    return rest


def iter_frames(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """(stream, payload) of a multiplexed body; stream 1 = stdout, 2 = stderr."""
    from dockyard.supervisor.protocol import FrameDecoder

    dec = FrameDecoder()
    for chunk in chunks:
        yield from dec.feed(chunk)
