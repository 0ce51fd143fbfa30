"""Helpers for the pull/push tests: Debian's docker-registry on loopback, a
byte-counting TCP proxy that can cut a connection once, small image makers."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "registry"))

from registry_helpers import running_registry, write_htpasswd  # noqa: E402,F401

__all__ = ["running_registry", "write_htpasswd", "running_docker_registry", "CuttingProxy",
           "random_tar", "docker_archive", "free_port"]

DOCKER_REGISTRY = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {proc.stderr.read().decode(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("docker-registry did not start")


@contextlib.contextmanager
def running_docker_registry(tmp: Path, htpasswd: Path | None = None):
    """Debian's docker-registry (CNCF distribution) on 127.0.0.1:<free port>; yields 'host:port'."""
    port = free_port()
    root = tmp / "dr-root"
    root.mkdir(parents=True, exist_ok=True)
    auth = ""
    if htpasswd is not None:
        auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n"
    cfg = tmp / "dr-config.yml"
    cfg.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth)
    proc = subprocess.Popen([DOCKER_REGISTRY, "serve", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        _wait_port(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


class CuttingProxy:
    """A loopback TCP proxy to ``target``; the first response stream that carries more
    than ``cut_after`` bytes is cut there (once). Counts requests' first lines."""

    def __init__(self, target: tuple[str, int], cut_after: int | None = None,
                 corrupt_at: int | None = None, min_response: int = 0,
                 cut_request_after: int | None = None):
        self.target = target
        self.cut_request_after = cut_request_after   # cut the first big upload once
        self.cut_after = cut_after
        self.corrupt_at = corrupt_at      # flip one byte of the first big response
        self.min_response = min_response  # only responses reaching this size are cut/corrupted
        self.cut_done = False
        self.corrupt_done = False
        self.request_lines: list[bytes] = []
        self.range_headers: list[bytes] = []
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._closing = False
        self._threads: list[threading.Thread] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closing:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(self.target)
            for a, b, resp in ((c, u, False), (u, c, True)):
                t = threading.Thread(target=self._pump, args=(a, b, resp, c, u), daemon=True)
                t.start()

    def _pump(self, src, dst, is_response, c, u) -> None:
        n = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not is_response:
                    for line in data.split(b"\r\n"):
                        if line.startswith((b"GET ", b"HEAD ", b"POST ", b"PUT ", b"PATCH ")):
                            with self._lock:
                                self.request_lines.append(line)
                        elif line.lower().startswith(b"range:"):
                            with self._lock:
                                self.range_headers.append(line)
                if not is_response and self.cut_request_after is not None:
                    with self._lock:
                        cut = not self.cut_done and n + len(data) > self.cut_request_after
                        if cut:
                            self.cut_done = True
                    if cut:
                        raise ConnectionAbortedError
                if is_response and self.corrupt_at is not None and n + len(data) > self.corrupt_at \
                        and n + len(data) >= self.min_response:
                    with self._lock:
                        hit = not self.corrupt_done and n <= self.corrupt_at
                        if hit:
                            self.corrupt_done = True
                    if hit:
                        i = self.corrupt_at - n
                        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                if is_response and self.cut_after is not None:
                    with self._lock:
                        cut = not self.cut_done and n + len(data) > self.cut_after
                        if cut:
                            self.cut_done = True
                    if cut:
                        dst.sendall(data[: max(self.cut_after - n, 0)])
                        raise ConnectionAbortedError
                n += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (c, u):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self.sock.close()


def random_tar(path: Path, files: dict[str, int], seed: int = 0) -> bytes:
    """An uncompressed tar of files of random bytes (names -> sizes)."""
    import io
    import random
    import tarfile

    rnd = random.Random(seed)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, size in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = size
            ti.mode = 0o644
            ti.mtime = 0
            tf.addfile(ti, io.BytesIO(rnd.randbytes(size)))
    data = buf.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data


def docker_archive(path: Path, layer_sizes: list[int], tag: str = "multi/layer:v1",
                   seed: int = 0) -> list[str]:
    """A `docker save` archive of one image with a random-data layer per size; diffIDs."""
    import hashlib
    import io
    import json
    import tarfile

    diff_ids, names = [], []
    with tarfile.open(path, "w") as out:
        for i, size in enumerate(layer_sizes):
            raw = random_tar(None, {f"l{i}/data": size}, seed=seed + i)
            d = hashlib.sha256(raw).hexdigest()
            diff_ids.append("sha256:" + d)
            names.append(f"{d}/layer.tar")
            ti = tarfile.TarInfo(names[-1])
            ti.size = len(raw)
            out.addfile(ti, io.BytesIO(raw))
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                          "created": "2024-01-01T00:00:00Z",
                          "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        cname = hashlib.sha256(cfg).hexdigest() + ".json"
        for n, data in ((cname, cfg), ("manifest.json", json.dumps(
                [{"Config": cname, "RepoTags": [tag], "Layers": names}]).encode())):
            ti = tarfile.TarInfo(n)
            ti.size = len(data)
            out.addfile(ti, io.BytesIO(data))
    return diff_ids
