"""Builds the daemon's death interrupts, and builds that run at once."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from acceptance.harness import DOCKER
from acceptance.test_build_cli import LEGACY, build, image_id

pytestmark = pytest.mark.slow


def _snapshot_keys(d) -> list[str]:
    db = sqlite3.connect(f"file:{d.data / 'metadata.db'}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT key FROM snapshots")]
    finally:
        db.close()


def test_kill9_mid_build_leaves_nothing_after_restart(fresh_daemon, tmp_path):
    d = fresh_daemon
    ctx = tmp_path / "k"
    (ctx / "files").mkdir(parents=True)
    for i in range(50):
        (ctx / "files" / f"f{i}").write_text(str(i))
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo started; sleep 60\n"
                                    "COPY files /files\n")
    images_before = set(d.out("images", "-aq").split())
    keys_before = set(_snapshot_keys(d))
    p = subprocess.Popen([DOCKER, "build", str(ctx)], env={**d.env, **LEGACY},
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in p.stdout:
            if line.strip() == "started":
                break
        assert d.out("ps", "-q"), "the RUN step's container should be running"
        d.kill9()
    finally:
        p.kill()
        p.wait()
    assert any("extract-build-" in k for k in _snapshot_keys(d))   # the COPY written ahead
    d.start()
    assert d.out("ps", "-aq") == ""
    assert set(d.out("images", "-aq").split()) == images_before
    assert set(_snapshot_keys(d)) - keys_before <= {k for k in set(_snapshot_keys(d))
                                                    if not k.startswith("extract-")}
    assert not [k for k in _snapshot_keys(d) if k.startswith("extract-build-")]
    tmp = d.data / "builder" / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []
    assert str(d.data) + "/builder" not in Path("/proc/self/mountinfo").read_text()
    # and the next build works
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo again\nCOPY files /files\n")
    assert "Successfully built" in build(d, ctx).stdout


def test_two_builds_of_one_dockerfile_at_once(daemon, tmp_path):
    ctx = tmp_path / "twice"
    (ctx / "app").mkdir(parents=True)
    for i in range(100):
        (ctx / "app" / f"f{i}").write_text(str(i))
    (ctx / "Dockerfile").write_text(
        f"FROM busybox\nRUN echo {uuid.uuid4().hex} && sleep 0.5\nCOPY app /app\n"
        "RUN ls /app | wc -l > /count\n")
    results = [None, None]

    def one(i: int) -> None:
        results[i] = build(daemon, ctx, check=False)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert r.returncode == 0, r.stderr
    ids = {image_id(r.stdout) for r in results}
    for iid in ids:
        assert daemon.out("run", "--rm", iid, "cat", "/count") == "100"
    assert daemon.out("ps", "-aq") == ""


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _tar_stream(files: list[tuple[str, int]], small: dict[str, bytes]):
    """A tar generated on the fly: ``files`` of zeros (name, size) and small files."""
    import tarfile as _t
    zero = bytes(1 << 20)
    for name, data in small.items():
        ti = _t.TarInfo(name)
        ti.size = len(data)
        yield ti.tobuf(_t.GNU_FORMAT) + data + bytes(-len(data) % 512)
    for name, size in files:
        ti = _t.TarInfo(name)
        ti.size = size
        yield ti.tobuf(_t.GNU_FORMAT)
        left = size
        while left:
            n = min(left, len(zero))
            yield zero[:n]
            left -= n
        yield bytes(-size % 512)
    yield bytes(1024)


def test_two_gigabyte_context_keeps_the_daemon_flat(fresh_daemon, tmp_path):
    """A 2 GiB context streamed (chunked) to POST /build: spooled to disk and hashed as it
    arrives; the daemon's resident memory does not grow with it."""
    import http.client
    import socket
    import time as _time
    d = fresh_daemon
    pid = d.proc.pid
    base = _rss_kb(pid)
    samples = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(_rss_kb(pid))
            _time.sleep(0.1)

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(str(d.sock))

    t = threading.Thread(target=sample)
    t.start()
    try:
        c = Conn("localhost", timeout=600)
        body = _tar_stream([("big/a", 1 << 30), ("big/b", 1 << 30)],
                           {"Dockerfile": b"FROM busybox\nCOPY small /small\n",
                            "small": b"small\n"})
        c.request("POST", "/v1.43/build?t=huge:1", body=body,
                  headers={"Content-Type": "application/x-tar"}, encode_chunked=True)
        resp = c.getresponse()
        out = resp.read().decode()
        c.close()
    finally:
        stop.set()
        t.join()
    assert resp.status == 200 and "Successfully tagged huge:1" in out, out[-2000:]
    grown_mb = (max(samples) - base) / 1024
    print(f"daemon RSS {base} kB at start, grew by {grown_mb:.1f} MiB over a 2 GiB context")
    assert grown_mb < 64, f"daemon RSS grew by {grown_mb:.0f} MiB ({base} kB at start)"
    assert d.out("run", "--rm", "huge:1", "cat", "/small") == "small"
    tmp = d.data / "builder" / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_context_symlinks_resolve_inside_the_context(daemon, tmp_path):
    import os
    ctx = tmp_path / "links"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "sub" / "x").write_text("in the context\n")
    os.symlink("/etc/passwd", ctx / "abs")
    os.symlink("../../../../../../etc/passwd", ctx / "rel")
    os.symlink("/sub", ctx / "dirlink")
    os.symlink("/sub/x", ctx / "filelink")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY dirlink/ /got/\nCOPY filelink /f\n")
    tag = f"links-{uuid.uuid4().hex[:6]}"
    assert "Successfully tagged" in build(daemon, ctx, "-t", tag).stdout
    assert daemon.out("run", "--rm", tag, "cat", "/got/x", "/f") == "in the context\n" \
                                                                    "in the context"
    for src in ("abs", "rel", "abs/", "missing", "sub/*.nope"):
        (ctx / "Dockerfile").write_text(f"FROM busybox\nRUN true\nCOPY {src} /x\n")
        r = build(daemon, ctx, check=False)
        assert r.returncode == 1, (src, r.stdout)
        assert "COPY failed" in r.stderr and ("file not found in build context" in r.stderr
                                              or "no source files" in r.stderr), r.stderr
        # refused while planning, before any step ran or anything was kept
        assert "Step 1/" not in r.stdout
    assert daemon.out("ps", "-aq") == ""
    assert list((daemon.data / "builder" / "tmp").iterdir()) == []


def test_dockerfile_outside_the_context_with_the_docker_cli(daemon, tmp_path):
    ctx = tmp_path / "inside"
    ctx.mkdir()
    (ctx / "f.txt").write_text("ctx file\n")
    elsewhere = tmp_path / "elsewhere" / "Build.Dockerfile"
    elsewhere.parent.mkdir()
    elsewhere.write_text("FROM busybox\nCOPY f.txt /f.txt\n")
    # a .dockerignore beside the outside Dockerfile does not apply; the context's own does
    tag = f"outside-{uuid.uuid4().hex[:6]}"
    r = build(daemon, ctx, "-f", str(elsewhere), "-t", tag)
    assert "Successfully tagged" in r.stdout
    assert daemon.out("run", "--rm", tag, "cat", "/f.txt") == "ctx file"
    # the name the CLI gave it inside the tar does not reach the image
    assert daemon.docker("run", "--rm", tag, "sh", "-c", "ls -a / | grep -i dockerfile",
                         check=False).stdout == ""
