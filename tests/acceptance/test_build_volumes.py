"""VOLUME in a build, as dockerd's legacy builder does it: every RUN container of an image
with VOLUMEs gets their mount points, so a RUN after VOLUME commits the mount point
directories (empty: what the RUN wrote below them went to the step's anonymous volume),
and the step's volumes go with its container. The real docker CLI against a private
daemon."""

from __future__ import annotations

import io
import json
import tarfile
import uuid

import pytest

from acceptance.test_build_cli import build

pytestmark = pytest.mark.slow


def _layers(d, tag: str) -> list[dict[str, tarfile.TarInfo]]:
    """The image's layers, in order, each as name -> member."""
    raw = d.docker("save", tag, input=b"").stdout
    out = []
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))[0]
        for name in manifest["Layers"]:
            with tarfile.open(fileobj=tf.extractfile(name)) as lt:
                out.append({m.name.lstrip("./").rstrip("/"): m for m in lt})
    return out


def test_run_after_volume_commits_the_mount_points(daemon, tmp_path):
    ctx = tmp_path / f"v-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "VOLUME /logs /var/lib/app/data\n"
        "RUN echo hi > /f && echo lost > /logs/written-in-run\n")
    tag = f"vol-{uuid.uuid4().hex[:6]}"
    build(daemon, ctx, "-t", tag)
    last = _layers(daemon, tag)[-1]
    assert "f" in last
    for p in ("logs", "var/lib/app/data", "var/lib/app"):
        assert p in last and last[p].isdir(), sorted(last)
    assert last["logs"].mode & 0o7777 == 0o755
    # what the RUN wrote into the volume is not in the image (dockerd's rule)
    assert "logs/written-in-run" not in last
    # no step volume is left behind
    assert daemon.out("volume", "ls", "-q") == ""
    assert daemon.out("ps", "-aq") == ""
