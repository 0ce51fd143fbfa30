"""RUN --mount (BuildKit's Dockerfile feature) through the classic API, with the docker CLI:
cache mounts kept between builds (ids, uid/gid/mode, stored owner-only under the data
root, pruned by builder.mounts.prune_cache), binds from the context and from a stage
(read-only unless rw; rw writes thrown away), tmpfs with a size; secret/ssh refused."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest

from acceptance.test_build_cli import build

pytestmark = pytest.mark.slow


def _ctx(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    ctx = tmp_path / f"mnt-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    for name, text in (files or {}).items():
        p = ctx / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def _cat(d, image: str, path: str) -> str:
    return d.out("run", "--rm", image, "cat", path)


def test_cache_mount_kept_between_builds(daemon, tmp_path):
    cid = f"c-{uuid.uuid4().hex[:6]}"
    df = ("FROM busybox\n"
          f"RUN --mount=type=cache,id={cid},target=/cache,uid=7,gid=8,mode=0750 "
          "echo run >> /cache/log && wc -l < /cache/log > /count "
          "&& stat -c %u:%g:%a /cache > /meta && ls /cache > /listing\n")
    ctx = _ctx(tmp_path, df)
    tag = f"cache-{uuid.uuid4().hex[:6]}"
    build(daemon, ctx, "-t", tag)
    assert _cat(daemon, tag, "/count") == "1"
    assert _cat(daemon, tag, "/meta") == "7:8:750"
    build(daemon, ctx, "-t", tag, "--no-cache")
    assert _cat(daemon, tag, "/count") == "2"      # the directory outlived the build
    # what the cache mount held is not in the image, nor its mount point (BuildKit's)
    assert daemon.docker("run", "--rm", tag, "test", "-e", "/cache",
                         check=False).returncode != 0
    # stored under the data root, owner-only; listed and pruned for /build/prune
    from dockyard.builder import mounts
    root = mounts.cache_root(daemon.data)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    usage = {u["ID"]: u for u in mounts.cache_usage(daemon.data)}
    assert cid in usage and not usage[cid]["InUse"] and usage[cid]["Size"] > 0
    assert mounts.prune_cache(daemon.data) >= usage[cid]["Size"]
    assert cid not in {u["ID"] for u in mounts.cache_usage(daemon.data)}
    build(daemon, ctx, "-t", tag, "--no-cache")
    assert _cat(daemon, tag, "/count") == "1"


def test_bind_mounts_from_context_and_stage_and_tmpfs(daemon, tmp_path):
    df = ("FROM busybox AS tools\nRUN mkdir /kit && echo tool > /kit/t.txt\n"
          "FROM busybox\n"
          "RUN --mount=type=bind,source=src,target=/s "
          "--mount=type=bind,from=tools,source=/kit,target=/k,rw "
          "--mount=type=tmpfs,target=/scratch,size=8m "
          "cat /s/a.txt /k/t.txt > /out "
          "&& (touch /s/new 2>/dev/null && echo rw || echo ro) > /s-mode "
          "&& echo changed > /k/t.txt && cat /k/t.txt >> /out "
          "&& grep ' /scratch ' /proc/mounts | cut -d' ' -f3,4 > /scratch-info\n"
          "RUN --mount=type=bind,from=tools,target=/k cat /k/kit/t.txt > /again\n")
    ctx = _ctx(tmp_path, df, {"src/a.txt": "from context\n"})
    tag = f"bind-{uuid.uuid4().hex[:6]}"
    build(daemon, ctx, "-t", tag)
    assert _cat(daemon, tag, "/out") == "from context\ntool\nchanged"
    assert _cat(daemon, tag, "/s-mode") == "ro"
    info = _cat(daemon, tag, "/scratch-info")
    assert info.startswith("tmpfs ") and "size=8192k" in info
    # the rw bind's write went nowhere: the stage still has its file
    assert _cat(daemon, tag, "/again") == "tool"
    # mount points made for the step are not left in the image; /tmp was there before
    r = daemon.docker("run", "--rm", tag, "ls", "-d", "/s", "/k", "/scratch", "/tmp",
                      check=False)
    assert r.stdout.split() == ["/tmp"], r.stdout
    # nothing of the mounts is left behind
    tmp = daemon.data / "builder" / "tmp"
    assert not list(tmp.iterdir())
    assert str(tmp) not in Path("/proc/self/mountinfo").read_text()
    # the context is part of the key: a changed bound file runs the step again
    (ctx / "src" / "a.txt").write_text("edited\n")
    r = build(daemon, ctx, "-t", tag)
    assert _cat(daemon, tag, "/out").startswith("edited")
    assert r.stdout.count("Using cache") == 1       # only the stage's RUN


def test_bind_from_stage_symlink_resolves_inside_it(daemon, tmp_path):
    df = ("FROM busybox AS evil\nRUN ln -s /etc /escape && ln -s ../../../../.. /up\n"
          "FROM busybox\n"
          "RUN --mount=type=bind,from=evil,source=/escape,target=/e "
          "--mount=type=bind,from=evil,source=/up/etc,target=/u "
          "cat /e/hostname /u/hostname > /seen; ls /e > /listing\n")
    ctx = _ctx(tmp_path, df)
    tag = f"bindlink-{uuid.uuid4().hex[:6]}"
    build(daemon, ctx, "-t", tag)
    # the stage's /etc (its own files), never the host's
    listing = _cat(daemon, tag, "/listing").split()
    assert "passwd" in listing and "host.conf" not in listing and "os-release" not in listing


def test_cache_mount_from_a_stage(daemon, tmp_path):
    """BuildKit's cache mount with from/source: the cache starts as a copy of that
    stage's directory (owners kept), is kept between builds like any cache mount, and a
    cache of the same id on another base is another directory."""
    df = ("FROM busybox AS seed\n"
          "RUN mkdir -p /seeddir/sub && echo seeded > /seeddir/sub/s.txt "
          "&& chown -R 7:8 /seeddir/sub\n"
          "FROM busybox\nARG N=1\n"
          "RUN --mount=type=cache,id=seeded,target=/c,from=seed,source=/seeddir "
          "cat /c/sub/s.txt > /got && stat -c %u:%g /c/sub/s.txt > /owner "
          "&& echo more >> /c/sub/s.txt\n"
          "RUN --mount=type=cache,id=seeded,target=/e ls -A /e > /plain\n")
    ctx = _ctx(tmp_path, df)
    tag = f"cachefrom-{uuid.uuid4().hex[:6]}"
    build(daemon, ctx, "-t", tag)
    assert _cat(daemon, tag, "/got") == "seeded"
    assert _cat(daemon, tag, "/owner") == "7:8"
    assert _cat(daemon, tag, "/plain") == ""      # the same id without from: its own
    # the RUN again on the same (cached) stage: the cache was kept, not seeded again
    build(daemon, ctx, "-t", tag, "--build-arg", "N=2")
    assert _cat(daemon, tag, "/got").split() == ["seeded", "more"]
    # a new base (the stage rebuilt) is another cache, as BuildKit keys it by its base
    build(daemon, ctx, "-t", tag, "--no-cache")
    assert _cat(daemon, tag, "/got") == "seeded"
    # a source the stage has not: a clear error, nothing kept
    (ctx / "Dockerfile").write_text(df.replace("source=/seeddir", "source=/nope"))
    r = build(daemon, ctx, "--no-cache", check=False)
    assert r.returncode != 0 and "/nope" in r.stdout + r.stderr
    assert daemon.out("ps", "-aq", "--filter", "label=com.dockyard.build.step") == ""


@pytest.mark.parametrize("mount,message", [
    ("type=secret,id=tok", "RUN --mount=type=secret is not supported: secrets and SSH"),
    ("type=ssh", "RUN --mount=type=ssh is not supported"),
    ("type=cache", "a target is needed"),
    ("type=bind,source=missing,target=/m", "file not found in build context"),
    ("type=cache,target=/c,source=/x", "source is a path in from="),
])
def test_refused_mounts(daemon, tmp_path, mount, message):
    ctx = _ctx(tmp_path, f"FROM busybox\nRUN --mount={mount} true\n")
    r = build(daemon, ctx, check=False)
    assert r.returncode != 0 and message in r.stderr, r.stderr
