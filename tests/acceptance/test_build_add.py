"""ADD: local archives extracted (gzip, bzip2, xz, plain; decided by content, as dockerd),
hostile archives refused, URLs fetched (mode 0600, Last-Modified as the time), --chown and
--chmod. Real docker CLI against a private daemon; URLs served from loopback."""

from __future__ import annotations

import http.server
import io
import tarfile
import threading
import uuid
from email.utils import formatdate
from pathlib import Path

import pytest

from acceptance.test_build_cli import build

pytestmark = pytest.mark.slow


def _tar(entries: list[tuple], comp: str = "") -> bytes:
    """entries: (name, kind, data_or_target, mode, uid, gid)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:" + comp) as tf:
        for name, kind, data, mode, uid, gid in entries:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, gid, 1_500_000_000
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _listing(d, image: str, top: str) -> dict[str, tuple]:
    """path -> (mode, uid, gid, size, mtime, data or link) of everything under /top."""
    cid = d.out("create", image, "x")
    try:
        r = d.docker("cp", f"{cid}:{top}", "-", input=b"")
    finally:
        d.docker("rm", cid)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
        for m in tf:
            data = tf.extractfile(m).read() if m.isfile() else m.linkname
            out[m.name.rstrip("/")] = (m.mode, m.uid, m.gid, m.size, m.mtime, data)
    return out


def _ctx(tmp_path: Path, dockerfile: str, files: dict[str, bytes]) -> Path:
    ctx = tmp_path / f"add-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    for name, data in files.items():
        (ctx / name).write_bytes(data)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


ENTRIES = [("pkg", "dir", b"", 0o750, 0, 0), ("pkg/bin", "file", b"#!/bin/sh\n", 0o4755, 0, 0),
           ("pkg/data.txt", "file", b"payload\n", 0o640, 1234, 99),
           ("pkg/link", "sym", "data.txt", 0o777, 0, 0)]


def test_add_extracts_local_archives_by_content(daemon, tmp_path):
    files = {"a.tar": _tar(ENTRIES), "b.tar.gz": _tar(ENTRIES, "gz"),
             "c.bz2": _tar(ENTRIES, "bz2"), "d.txz": _tar(ENTRIES, "xz"),
             # gzip of a non-tar: copied as it is; a ".tar" that is not one: copied too
             "notes.gz": __import__("gzip").compress(b"just text\n"),
             "fake.tar": b"not a tar at all\n"}
    df = ("FROM busybox\nADD a.tar /x/a\nADD b.tar.gz /x/b/\nADD c.bz2 d.txz /x/cd/\n"
          "ADD notes.gz fake.tar /x/plain/\nADD --chown=7:8 --chmod=600 a.tar /x/owned\n")
    ctx = _ctx(tmp_path, df, files)
    tag = f"add-{uuid.uuid4().hex[:6]}"
    r = build(daemon, ctx, "-t", tag)
    assert "Successfully tagged" in r.stdout, r.stdout
    got = _listing(daemon, tag, "/x")
    for top in ("x/a", "x/b", "x/cd"):
        assert got[f"{top}/pkg"][:3] == (0o750, 0, 0)
        assert got[f"{top}/pkg/bin"][:3] == (0o4755, 0, 0)
        assert got[f"{top}/pkg/data.txt"][:4] == (0o640, 1234, 99, 8)
        assert got[f"{top}/pkg/data.txt"][4] == 1_500_000_000
        assert got[f"{top}/pkg/data.txt"][5] == b"payload\n"
        assert got[f"{top}/pkg/link"][5] == "data.txt"
    assert got["x/plain/notes.gz"][5] == files["notes.gz"]
    assert got["x/plain/fake.tar"][5] == files["fake.tar"]
    # archives keep the owners they carry (dockerd's UntarPath): --chown/--chmod do not
    # apply to extracted entries
    assert got["x/owned/pkg/data.txt"][:3] == (0o640, 1234, 99)


@pytest.mark.parametrize("entries,what", [
    ([("../escape", "file", b"x", 0o644, 0, 0)], "escapes"),
    ([("/abs", "file", b"x", 0o644, 0, 0)], "absolute"),
])
def test_add_refuses_hostile_archives(daemon, tmp_path, entries, what):
    ctx = _ctx(tmp_path, "FROM busybox\nADD evil.tar /x/\n", {"evil.tar": _tar(entries)})
    r = build(daemon, ctx, check=False)
    assert r.returncode != 0
    assert "ADD failed" in r.stdout + r.stderr and what in r.stdout + r.stderr
    assert daemon.out("ps", "-aq") == ""


def test_add_archive_symlink_stays_inside_the_destination(daemon, tmp_path):
    """A link to / then a file through it: written below the destination (resolved as
    if the destination were the root, as dockerd's chrooted untar), never into / of
    the image, never onto the host."""
    evil = _tar([("up", "sym", "/", 0o777, 0, 0), ("up/etc/owned", "file", b"x", 0o644, 0, 0),
                 ("dot", "sym", "../../../../..", 0o777, 0, 0),
                 ("dot/tmp/host-owned", "file", b"x", 0o644, 0, 0)])
    ctx = _ctx(tmp_path, "FROM busybox\nADD evil.tar /x/\n", {"evil.tar": evil})
    tag = f"addlink-{uuid.uuid4().hex[:6]}"
    r = build(daemon, ctx, "-t", tag)
    assert "Successfully tagged" in r.stdout
    got = _listing(daemon, tag, "/x")
    assert "x/etc/owned" in got and "x/tmp/host-owned" in got
    assert daemon.docker("run", "--rm", tag, "test", "-e", "/etc/owned", check=False).returncode != 0
    assert not Path("/tmp/host-owned").exists()


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        self.hits.append(self.path)
        data = self.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Last-Modified", formatdate(1_400_000_000, usegmt=True))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def http_server():
    handler = type("H", (_Handler,), {"files": {}, "hits": []})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    finally:
        srv.shutdown()
        srv.server_close()


def test_add_url(daemon, tmp_path, http_server):
    base, handler = http_server
    handler.files["/dl/tool.tar.gz"] = _tar(ENTRIES, "gz")
    handler.files["/dl/conf.txt"] = b"v1\n"
    df = (f"FROM busybox\nADD {base}/dl/tool.tar.gz {base}/dl/conf.txt /u/\n"
          f"ADD --chown=5:6 --chmod=644 {base}/dl/conf.txt /u/renamed\n")
    ctx = _ctx(tmp_path, df, {})
    tag = f"addurl-{uuid.uuid4().hex[:6]}"
    r = build(daemon, ctx, "-t", tag)
    assert "Successfully tagged" in r.stdout
    got = _listing(daemon, tag, "/u")
    # a download is never extracted; mode 0600, time from Last-Modified (dockerd's rules)
    assert got["u/tool.tar.gz"][:3] == (0o600, 0, 0)
    assert got["u/tool.tar.gz"][5] == handler.files["/dl/tool.tar.gz"]
    assert got["u/conf.txt"][4] == 1_400_000_000 and got["u/conf.txt"][5] == b"v1\n"
    assert got["u/renamed"][:3] == (0o644, 5, 6)
    # same content: cache; new content: that step again
    r = build(daemon, ctx, "-t", tag)
    assert r.stdout.count("Using cache") == 2
    handler.files["/dl/conf.txt"] = b"v2\n"
    r = build(daemon, ctx, "-t", tag)
    assert "Using cache" not in r.stdout
    assert _listing(daemon, tag, "/u/renamed")["renamed"][5] == b"v2\n"
    # a missing URL: a clear error before anything runs
    ctx2 = _ctx(tmp_path, f"FROM busybox\nADD {base}/nope /n\n", {})
    r = build(daemon, ctx2, check=False)
    assert r.returncode != 0 and "404" in r.stderr
    assert not [p for p in (daemon.data / "builder" / "tmp").iterdir()]


def test_add_url_checksum(daemon, tmp_path, http_server):
    """BuildKit's ADD --checksum: the download must have that digest; wrong digests,
    bad formats and non-URL sources are refused before anything runs."""
    import hashlib
    base, handler = http_server
    handler.files["/dl/pinned.txt"] = b"pinned\n"
    good = "sha256:" + hashlib.sha256(b"pinned\n").hexdigest()
    ctx = _ctx(tmp_path, f"FROM busybox\nADD --checksum={good} {base}/dl/pinned.txt /p\n",
               {"local.txt": b"x\n"})
    tag = f"cksum-{uuid.uuid4().hex[:6]}"
    build(daemon, ctx, "-t", tag)
    assert daemon.out("run", "--rm", tag, "cat", "/p") == "pinned"
    # sha384 and sha512 as BuildKit accepts them
    for algo in ("sha384", "sha512"):
        d = f"{algo}:" + hashlib.new(algo, b"pinned\n").hexdigest()
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD --checksum={d} {base}/dl/pinned.txt "
                                        f"/{algo}\n")
        build(daemon, ctx, "-t", tag)
        assert daemon.out("run", "--rm", tag, "cat", f"/{algo}") == "pinned"
    bad = "sha256:" + "0" * 64
    bad512 = "sha512:" + "0" * 128
    good512 = "sha512:" + hashlib.sha512(b"pinned\n").hexdigest()
    for line, msg in ((f"ADD --checksum={bad} {base}/dl/pinned.txt /p",
                       f"digest mismatch {good}: {bad}"),
                      (f"ADD --checksum={bad512} {base}/dl/pinned.txt /p",
                       f"digest mismatch {good512}: {bad512}"),
                      (f"ADD --checksum=sha384:{'0' * 64} {base}/dl/pinned.txt /p",
                       "invalid checksum digest format"),
                      (f"ADD --checksum=md5:abc {base}/dl/pinned.txt /p",
                       "invalid checksum digest format"),
                      (f"ADD --checksum={good} local.txt /p",
                       "checksum can't be specified for non-HTTP(S) sources")):
        (ctx / "Dockerfile").write_text(f"FROM busybox\n{line}\n")
        r = build(daemon, ctx, check=False)
        assert r.returncode != 0 and msg in r.stderr, r.stderr
        assert "Step 1/" not in r.stdout
    assert not [p for p in (daemon.data / "builder" / "tmp").iterdir()]
