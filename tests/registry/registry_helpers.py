"""Helpers for the registry tests: a registry process per test, a tiny HTTP
client, an OCI image layout written from a root filesystem."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import io
import json
import os
import select
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Registry:
    proc: subprocess.Popen
    host: str
    port: int
    root: Path
    scheme: str = "http"
    log: list = field(default_factory=list)

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.addr}"

    def client(self, **kw) -> "Client":
        return Client(self.host, self.port, **kw)

    def stderr(self) -> str:
        try:
            return self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
        except Exception:
            return ""


def start_registry(root: Path, *args: str, timeout: float = 20) -> Registry:
    """`python -m dockyard registry --addr 127.0.0.1:0 --root ROOT ARGS`, ready to serve."""
    cmd = [sys.executable, "-m", "dockyard", "registry", "serve", "--addr", "127.0.0.1:0",
           "--root", str(root), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r:
            line = proc.stdout.readline()
            break
        if proc.poll() is not None:
            break
    if b"listening on" not in line:
        stop_registry_proc(proc)
        raise RuntimeError(f"registry did not start: {line!r} {proc.stderr.read().decode(errors='replace')}")
    url = line.split()[4].decode()
    scheme, _, hostport = url.partition("://")
    host, _, port = hostport.rpartition(":")
    return Registry(proc, host, int(port), Path(root), scheme)


def stop_registry_proc(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for s in (proc.stdout, proc.stderr):
        if s:
            s.close()


@contextlib.contextmanager
def running_registry(root: Path, *args: str):
    reg = start_registry(root, *args)
    try:
        yield reg
    finally:
        stop_registry_proc(reg.proc)


@dataclass
class Resp:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def codes(self) -> list[str]:
        try:
            return [e["code"] for e in self.json()["errors"]]
        except Exception:
            return []


class Client:
    """One request per connection; plain http.client so the tests see the wire."""

    def __init__(self, host: str, port: int, auth: str | None = None, tls: bool = False):
        self.host, self.port, self.auth, self.tls = host, port, auth, tls

    def conn(self) -> http.client.HTTPConnection:
        if self.tls:
            import ssl
            ctx = ssl._create_unverified_context()
            return http.client.HTTPSConnection(self.host, self.port, timeout=60, context=ctx)
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> Resp:
        h = dict(headers or {})
        if self.auth and "Authorization" not in h:
            h["Authorization"] = self.auth
        c = self.conn()
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return Resp(r.status, r.headers, r.read())
        finally:
            c.close()

    # conveniences -------------------------------------------------------------

    def push_blob(self, name: str, data: bytes) -> str:
        d = sha256(data)
        r = self.request("POST", f"/v2/{name}/blobs/uploads/?digest={d}", data)
        assert r.status == 201, (r.status, r.body)
        return d

    def push_manifest(self, name: str, ref: str, manifest: dict | bytes,
                      media_type: str = "application/vnd.oci.image.manifest.v1+json") -> Resp:
        body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        return self.request("PUT", f"/v2/{name}/manifests/{ref}", body, {"Content-Type": media_type})

    def push_image(self, name: str, tag: str, layers: list[bytes] | None = None,
                   media_type: str = "application/vnd.oci.image.manifest.v1+json") -> tuple[str, dict]:
        """A small image: config + layers; returns (manifest digest, manifest)."""
        layers = layers if layers is not None else [os.urandom(100)]
        docker = "docker" in media_type
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []}, "tag": tag}).encode()
        cd = self.push_blob(name, config)
        ldescs = []
        for layer in layers:
            ld = self.push_blob(name, layer)
            ldescs.append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip" if docker
                           else "application/vnd.oci.image.layer.v1.tar+gzip",
                           "digest": ld, "size": len(layer)})
        m = {"schemaVersion": 2, "mediaType": media_type,
             "config": {"mediaType": "application/vnd.docker.container.image.v1+json" if docker
                        else "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(config)},
             "layers": ldescs}
        body = json.dumps(m).encode()
        r = self.push_manifest(name, tag, body, media_type)
        assert r.status == 201, (r.status, r.body)
        return sha256(body), m


def basic(user: str, password: str) -> str:
    import base64
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    import bcrypt
    lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}" for u, p in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- OCI image layout from a root filesystem ----------------------------------------

def tar_rootfs(rootfs: Path) -> bytes:
    """A reproducible uncompressed tar of ``rootfs`` (as a layer)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                full = Path(dirpath) / name
                arc = os.path.relpath(full, rootfs)
                ti = tf.gettarinfo(str(full), arcname=arc)
                ti.mtime = 0
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                if ti.isreg():
                    with open(full, "rb") as f:
                        tf.addfile(ti, f)
                else:
                    tf.addfile(ti)
    return buf.getvalue()


def write_oci_layout(rootfs: Path, out: Path, tag: str = "v1") -> dict:
    """An OCI image layout holding one image of one gzip layer; returns its manifest."""
    raw = tar_rootfs(rootfs)
    layer = gzip.compress(raw, compresslevel=1, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin:/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(raw)]},
        "history": [{"created_by": "dockyard test"}],
    }).encode()
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        d = sha256(data)
        (blobs / d.split(":")[1]).write_bytes(data)
        return d

    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(layer),
                    "size": len(layer)}],
    }
    mbody = json.dumps(manifest).encode()
    md = put(mbody)
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_text(json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
                       "size": len(mbody), "annotations": {"org.opencontainers.image.ref.name": tag}}],
    }))
    return {"digest": md, "manifest": manifest, "layer_tar": raw}
