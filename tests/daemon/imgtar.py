"""Build `docker save` archives in memory, with a fixed creation time (stable output)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile


def tar_dir(root) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(os.listdir(root)):
            tar.add(os.path.join(root, name), arcname=name)
    return buf.getvalue()


def tar_files(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1577836800
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def saved_image(layer: bytes, repo_tags: list[str], created: str = "2020-01-01T00:00:00Z",
                labels: dict | None = None, cmd: list[str] | None = None,
                comment: str = "") -> tuple[bytes, str]:
    """A docker-save tar holding one image with one layer; returns (tar, image id)."""
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": cmd or ["/bin/sh"], "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "/bin/sh -c #(nop) ADD file:0123 in / ",
                     **({"comment": comment} if comment else {})}],
    }
    cfg = json.dumps(config, separators=(",", ":")).encode()
    image_id = hashlib.sha256(cfg).hexdigest()
    layer_dir = hashlib.sha256(layer + b"dir").hexdigest()
    manifest = [{"Config": f"{image_id}.json", "RepoTags": repo_tags,
                 "Layers": [f"{layer_dir}/layer.tar"]}]
    files = {
        f"{layer_dir}/VERSION": b"1.0",
        f"{layer_dir}/json": json.dumps({"id": layer_dir}).encode(),
        f"{layer_dir}/layer.tar": layer,
        f"{image_id}.json": cfg,
        "manifest.json": json.dumps(manifest).encode(),
    }
    return tar_files(files), "sha256:" + image_id
