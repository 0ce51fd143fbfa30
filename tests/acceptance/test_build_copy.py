"""COPY/ADD/WORKDIR written straight into a snapshot (no container): FROM scratch, --from
images read from a read-only mount, hostile symlinks in the parent image, owners."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from acceptance.test_build_cli import LEGACY, build, image_id

pytestmark = pytest.mark.slow


def _ctx(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    ctx = tmp_path / f"ctx-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    for name, text in (files or {}).items():
        p = ctx / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def _files(d, image: str) -> list[str]:
    """The image's files as `path mode uid:gid size` (through export: no shell needed)."""
    import io
    import tarfile
    cid = d.out("create", image, "x")
    try:
        data = d.docker("export", cid, input=b"").stdout
    finally:
        d.docker("rm", cid)
    data = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            if m.name.split("/")[0] in ("dev", "proc", "sys", "etc", ".dockerenv"):
                continue
            out.append(f"{m.name.rstrip('/')} {m.mode:o} {m.uid}:{m.gid} {m.size}")
    return sorted(out)


def test_copy_onto_scratch(daemon, tmp_path):
    ctx = _ctx(tmp_path, "FROM busybox AS tools\nRUN mkdir -p /out/sub && echo hi > /out/sub/hi "
                         "&& chown -R 7:8 /out && chmod 4711 /out/sub/hi\n"
                         "FROM scratch\nCOPY app/ /app/\nCOPY --from=tools /out /from-stage\n"
                         "COPY --chmod=600 app/a.txt /single\nWORKDIR /work\n"
                         "CMD [\"/app/a.txt\"]\n",
               {"app/a.txt": "a\n", "app/d/b.txt": "bb\n"})
    tag = f"scratchcopy-{uuid.uuid4().hex[:6]}"
    r = build(daemon, ctx, "-t", tag)
    assert "Successfully tagged" in r.stdout, r.stdout
    info = json.loads(daemon.out("image", "inspect", tag))[0]
    assert info["Config"]["WorkingDir"] == "/work" and info["Config"]["Cmd"] == ["/app/a.txt"]
    assert len(info["RootFS"]["Layers"]) == 4    # COPY, COPY --from, COPY, WORKDIR
    files = _files(daemon, tag)
    assert "app 755 0:0 0" in files and "app/a.txt 644 0:0 2" in files
    assert "app/d/b.txt 644 0:0 3" in files
    assert "from-stage 755 7:8 0" in files and "from-stage/sub/hi 4711 7:8 3" in files
    assert "single 600 0:0 2" in files and "work 755 0:0 0" in files
    # a rebuild is all cache hits
    r2 = build(daemon, ctx, "-t", tag)
    assert image_id(r2.stdout) == image_id(r.stdout) and r2.stdout.count("Using cache") == 6


def test_copy_follows_image_symlinks_inside_the_root_only(daemon, tmp_path):
    """The parent image points the destination at a host path: COPY lands inside the
    image (the link resolved in the root), the host path stays untouched."""
    host = tmp_path / "host-target"
    host.mkdir()
    ctx = _ctx(tmp_path, f"FROM busybox\nRUN ln -s ../../../../../../{host} /dest && "
                         f"ln -s {host}/abs /abs\n"
                         "COPY f /dest/\nCOPY f /abs/g\nCOPY --chown=nobody f /owned/deep/f\n",
               {"f": "payload\n"})
    tag = f"symlinks-{uuid.uuid4().hex[:6]}"
    build(daemon, ctx, "-t", tag)
    assert list(host.iterdir()) == []
    out = daemon.out("run", "--rm", tag, "sh", "-c",
                     f"cat {host}/f {host}/abs/g; stat -c '%n %u:%g' /owned /owned/deep "
                     "/owned/deep/f; readlink /dest")
    assert out.splitlines() == ["payload", "payload", "/owned 65534:65534",
                                "/owned/deep 65534:65534", "/owned/deep/f 65534:65534",
                                f"../../../../../../{host}"]


def test_copy_errors_leave_nothing(daemon, tmp_path):
    ctx = _ctx(tmp_path, "FROM busybox\nRUN mkdir /d\nCOPY f /d\n", {"f": "x"})
    # a file onto an existing directory without a trailing slash goes into it (dockerd)
    build(daemon, ctx, "-t", "copy-into-dir")
    assert daemon.out("run", "--rm", "copy-into-dir", "cat", "/d/f") == "x"
    ctx = _ctx(tmp_path, "FROM busybox\nCOPY --chown=nosuchuser f /f\n", {"f": "x"})
    r = build(daemon, ctx, check=False)
    assert r.returncode != 0 and "nosuchuser" in r.stderr
    ctx = _ctx(tmp_path, "FROM busybox AS s\nFROM busybox\nCOPY --from=s /nope /x\n")
    r = build(daemon, ctx, check=False)
    assert r.returncode != 0 and "/nope" in r.stderr
    assert daemon.out("ps", "-aq") == ""
    tmp = daemon.data / "builder" / "tmp"
    assert [p.name for p in tmp.iterdir()] == []
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(tmp) not in mounts


def test_copy_written_ahead_lands_as_on_its_parent(daemon, tmp_path):
    """A context COPY after a RUN is written while the RUN runs, then placed on its
    result: the same files as writing it on the parent (an existing destination keeps its
    owner and mode, parents the image's metadata), and a destination the parent turned
    into a symlink is written again through it (inside the root)."""
    df = ("FROM busybox\n"
          "RUN mkdir -m 750 /keep && chown 12:34 /keep && mkdir /real && ln -s /real /link "
          "&& mkdir -p /deep/er && chown 5:6 /deep && chmod 711 /deep\n"
          "COPY d/ /keep/\nCOPY d/ /link/\nCOPY d/ /deep/er/new/\nCOPY --chown=9:9 d/ /x/y/\n")
    ctx = _ctx(tmp_path, df, {"d/f": "f\n", "d/s/g": "g\n"})
    tag = f"ahead-{uuid.uuid4().hex[:6]}"
    build(daemon, ctx, "-t", tag)
    out = daemon.out("run", "--rm", tag, "sh", "-c",
                     "stat -c '%n %a %u:%g' /keep /keep/f /keep/s/g /real/f /deep /deep/er/new "
                     "/deep/er/new/s /x /x/y /x/y/f; readlink /link")
    assert out.splitlines() == [
        "/keep 750 12:34", "/keep/f 644 0:0", "/keep/s/g 644 0:0", "/real/f 644 0:0",
        "/deep 711 5:6", "/deep/er/new 755 0:0", "/deep/er/new/s 755 0:0", "/x 755 9:9",
        "/x/y 755 9:9", "/x/y/f 644 9:9", "/real"]
    layers = json.loads(daemon.out("image", "inspect", "--format", "{{json .RootFS.Layers}}",
                                   tag))
    assert len(set(layers)) == len(layers)
    # the last COPY's layer tar (its entries below /x/y made while the RUN ran, /x and /x/y
    # added at its commit) holds what the layer holds, its digest is its diff ID
    import hashlib
    import io
    import tarfile
    saved = daemon.docker("save", tag, input=b"").stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())
        last = tf.extractfile(manifest[0]["Layers"][-1]).read()
    assert "sha256:" + hashlib.sha256(last).hexdigest() == layers[-1]
    with tarfile.open(fileobj=io.BytesIO(last)) as lt:
        got = [(m.name, m.type, m.uid, m.gid, oct(m.mode)) for m in lt]
    assert got == [("x", tarfile.DIRTYPE, 9, 9, "0o755"), ("x/y", tarfile.DIRTYPE, 9, 9, "0o755"),
                   ("x/y/f", tarfile.REGTYPE, 9, 9, "0o644"),
                   ("x/y/s", tarfile.DIRTYPE, 9, 9, "0o755"),
                   ("x/y/s/g", tarfile.REGTYPE, 9, 9, "0o644")], got
    tmp = daemon.data / "builder" / "tmp"
    assert [p.name for p in tmp.iterdir()] == []
