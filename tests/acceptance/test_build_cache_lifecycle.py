"""The build cache's lifecycle with the real docker CLI: `system df` (its BuildCache
section), `builder prune` (dangling, --all, filters, --keep-storage), rows that go with
their images, `system prune` end to end, and our own `dockyard builder prune`/`system df`."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

LEGACY = {"DOCKER_BUILDKIT": "0"}

DOCKERFILE = """\
FROM busybox AS side
RUN echo side-{tok} > /side && dd if=/dev/zero of=/pad bs=1k count=64 2>/dev/null
FROM busybox
COPY --from=side /side /side
COPY data.txt /data.txt
RUN echo main-{tok} > /main
CMD ["cat", "/side", "/main"]
"""


def context(tmp: Path) -> Path:
    tok = uuid.uuid4().hex[:8]
    ctx = tmp / f"ctx-{tok}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(tok=tok))
    (ctx / "data.txt").write_text("data\n")
    return ctx


def build(d, ctx: Path, *args: str) -> str:
    return d.docker("build", *args, str(ctx), env=LEGACY, timeout=180).stdout


def df_cache(d) -> list[dict]:
    import docker   # docker-py: the raw /system/df answer
    c = docker.APIClient(base_url=d.host)
    try:
        return c.df().get("BuildCache") or []
    finally:
        c.close()


def dockyard(d, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dockyard", *args], env=d.env,
                          capture_output=True, text=True, timeout=120)


def prune_all(d) -> None:
    d.docker("builder", "prune", "-af")


def test_df_lists_records_and_prune_dangling_then_all(fresh_daemon, tmp_path):
    d = fresh_daemon
    ctx = context(tmp_path)
    tag = f"lc-{uuid.uuid4().hex[:6]}"
    build(d, ctx, "-t", tag)
    recs = df_cache(d)
    # one record per step that made an image: the side RUN, two COPYs, the RUN, CMD
    assert len(recs) == 5, recs
    for r in recs:
        assert set(r) >= {"ID", "Type", "Description", "InUse", "Shared", "Size",
                          "CreatedAt", "LastUsedAt", "UsageCount"}
        assert r["Type"] == "regular" and len(r["ID"]) == 25
    side = [r for r in recs if "side-" in r["Description"]]
    assert len(side) == 1 and not side[0]["Shared"] and side[0]["Size"] >= 64 * 1024
    assert sum(1 for r in recs if r["Shared"]) == 4   # the tagged image's chain
    out = d.out("system", "df")
    line = next(ln for ln in out.splitlines() if ln.startswith("Build Cache"))
    assert line.split()[2:4] == ["5", "0"], out
    verbose = d.out("system", "df", "-v")
    assert side[0]["ID"][:12] in verbose

    # without --all: only what nothing keeps (the side stage's RUN), its image removed
    out = d.out("builder", "prune", "-f")
    assert side[0]["ID"] in out and "Total" in out
    recs2 = df_cache(d)
    assert len(recs2) == 4 and all(r["Shared"] for r in recs2)
    again = build(d, ctx, "-t", tag)
    # the side stage ran again (its cache is gone); the main stage's steps before the
    # COPY --from of it are cached
    assert again.split("Step 2/7")[1].split("Step 3/7")[0].count("Running in") == 1
    assert d.out("run", "--rm", tag).startswith("side-")

    # --all: every record goes; the tagged image stays and still runs
    out = d.out("builder", "prune", "-af")
    assert "Deleted build cache objects:" in out
    assert df_cache(d) == []
    assert d.out("run", "--rm", tag).startswith("side-")
    rebuilt = build(d, ctx, "-t", tag)
    assert "Using cache" not in rebuilt


def test_rows_go_with_their_images(daemon, tmp_path):
    d = daemon
    prune_all(d)
    ctx = context(tmp_path)
    tag = f"gone-{uuid.uuid4().hex[:6]}"
    build(d, ctx, "-t", tag)
    assert len(df_cache(d)) == 5
    d.docker("rmi", tag)
    # the final image and its untagged parents are deleted: their rows with them; the
    # side stage's image was no parent of it and stays (as its row)
    left = df_cache(d)
    assert len(left) == 1 and "side-" in left[0]["Description"]
    prune_all(d)
    assert df_cache(d) == []


def test_prune_filters_and_keep_storage(daemon, tmp_path):
    d = daemon
    prune_all(d)
    ctx = context(tmp_path)
    build(d, ctx)            # untagged: every record is dangling
    n = len(df_cache(d))
    assert n == 5
    # used just now: not "unused for" an hour
    out = d.out("builder", "prune", "-af", "--filter", "until=1h")
    assert "Deleted build cache objects" not in out
    assert len(df_cache(d)) == n
    r = d.docker("builder", "prune", "-af", "--filter", "colour=red", check=False)
    assert r.returncode != 0 and "invalid filter 'colour'" in r.stderr
    # keep-storage: the least recently used go until what stays fits
    total = sum(x["Size"] for x in df_cache(d))
    out = d.out("builder", "prune", "-af", "--keep-storage", str(total - 1))
    left = df_cache(d)
    assert 0 < len(left) < n and sum(x["Size"] for x in left) <= total - 1
    out = d.out("builder", "prune", "-f", "--filter", "unused-for=0s")
    assert df_cache(d) == []


def test_system_prune_end_to_end(fresh_daemon, tmp_path):
    d = fresh_daemon
    prune_all(d)
    ctx = context(tmp_path)
    tag = f"sp-{uuid.uuid4().hex[:6]}"
    build(d, ctx, "-t", tag)
    d.docker("create", "busybox", "true")
    # before: the request for /build/prune made the CLI stop with "page not found"
    out = d.out("system", "prune", "-f")
    assert "Deleted Containers:" in out and "Total reclaimed space:" in out
    # the side stage's image was dangling (image prune took it, and its record with it);
    # the tagged image's chain stays
    recs = df_cache(d)
    assert len(recs) == 4 and all(r["Shared"] for r in recs)
    out = d.out("system", "prune", "-af")
    assert df_cache(d) == []
    d.docker("rmi", "-f", tag, check=False)
    from acceptance.harness import import_busybox
    import_busybox(d)
    # ours: the same through `dockyard`
    build(d, ctx)
    r = dockyard(d, "system", "df")
    assert r.returncode == 0, r.stderr
    assert next(ln for ln in r.stdout.splitlines()
                if ln.startswith("Build Cache")).split()[2] == "5"
    r = dockyard(d, "builder", "prune", "-af")
    assert r.returncode == 0 and "Deleted build cache objects:" in r.stdout, r.stderr
    assert df_cache(d) == []
    build(d, ctx)
    r = dockyard(d, "system", "prune", "-af")
    assert r.returncode == 0, r.stderr
    assert "Total reclaimed space:" in r.stdout and df_cache(d) == []


def test_cache_mounts_and_context_sessions_are_build_cache(fresh_daemon, tmp_path):
    """RUN --mount=type=cache directories (BuildKit's exec.cachemount records) and the
    context sessions' kept spools (source.local) are listed in system df's BuildCache and
    pruned by /build/prune with its filters."""
    d = fresh_daemon
    prune_all(d)
    ctx = tmp_path / "cm"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN --mount=type=cache,target=/var/cache/app "
        "dd if=/dev/zero of=/var/cache/app/blob bs=1k count=96 2>/dev/null && echo ok > /ok\n"
        "COPY data.txt /data.txt\n")
    (ctx / "data.txt").write_text("x" * 50000 + "\n")
    build(d, ctx, "-t", "cm:1")
    recs = df_cache(d)
    mounts = [r for r in recs if r["Type"] == "exec.cachemount"]
    assert len(mounts) == 1, recs
    m = mounts[0]
    assert m["Description"] == "cached mount /var/cache/app" and m["Size"] >= 96 * 1024
    assert not m["InUse"] and not m["Shared"] and m["UsageCount"] == 1 and m["LastUsedAt"]
    # our client's context session keeps a spool: a source.local record
    r = dockyard(d, "build", "-q", str(ctx))
    assert r.returncode == 0, r.stderr
    spools = [r for r in df_cache(d) if r["Type"] == "source.local"]
    assert len(spools) == 1 and spools[0]["Size"] >= 50000, df_cache(d)
    out = d.out("system", "df")
    line = next(ln for ln in out.splitlines() if ln.startswith("Build Cache"))
    assert int(line.split()[2]) == len(df_cache(d)), out
    # a type filter takes only the cache mount; its directory goes
    out = d.out("builder", "prune", "-f", "--filter", "type=exec.cachemount")
    assert m["ID"][:12] in out, out
    assert [r["Type"] for r in df_cache(d) if r["Type"] != "regular"] == ["source.local"]
    assert not list((d.data / "builder" / "cache").iterdir())
    # prune without --all takes the spool (nothing else keeps it); the next build of the
    # directory sends everything and still builds
    out = d.out("builder", "prune", "-f")
    assert spools[0]["ID"][:12] in out, out
    assert [r for r in df_cache(d) if r["Type"] != "regular"] == []
    r = dockyard(d, "build", "-q", str(ctx))
    assert r.returncode == 0, r.stderr
    # the cache mount is made again by a RUN that cannot take the cache
    build(d, ctx, "--no-cache")
    assert [r["Type"] for r in df_cache(d) if r["Type"] != "regular"] == \
        ["exec.cachemount", "source.local"]
    prune_all(d)
    assert df_cache(d) == []
