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
