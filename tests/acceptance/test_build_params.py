"""The build parameters applied to RUN containers (network, hosts, shm, limits, ulimits),
platform, pull, remote contexts (http tar, plain Dockerfile, git), and reproducible builds
with SOURCE_DATE_EPOCH. The real docker CLI and docker-py against a private daemon."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from acceptance.test_build_add import http_server  # noqa: F401 - fixture
from acceptance.test_build_cli import build, image_id

pytestmark = pytest.mark.slow


def _ctx(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    ctx = tmp_path / f"p-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    for name, text in (files or {}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(text)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def _cat(d, image: str, path: str) -> str:
    return d.out("run", "--rm", image, "cat", path)


def test_run_containers_get_the_build_parameters(daemon, tmp_path):
    df = ("FROM busybox\n"
          "RUN grep -c . /proc/net/dev > /ifaces && grep myhost /etc/hosts > /hosts "
          "&& df -k /dev/shm | tail -1 | awk '{print $2}' > /shm && ulimit -n > /nofile "
          "&& (cat /sys/fs/cgroup/memory.max 2>/dev/null "
          "|| cat /sys/fs/cgroup/memory/memory.limit_in_bytes) > /mem "
          "&& (cat /sys/fs/cgroup/cpu.weight 2>/dev/null "
          "|| cat /sys/fs/cgroup/cpu/cpu.shares) > /shares\n")
    ctx = _ctx(tmp_path, df)
    tag = f"params-{uuid.uuid4().hex[:6]}"
    build(daemon, ctx, "-t", tag, "--network", "none", "--add-host", "myhost:10.1.2.3",
          "--shm-size", "32m", "--ulimit", "nofile=512:1024", "-m", "96m",
          "--cpu-shares", "512")
    assert _cat(daemon, tag, "/ifaces") == "3"          # two header lines + lo
    assert _cat(daemon, tag, "/hosts").split() == ["10.1.2.3", "myhost"]
    assert _cat(daemon, tag, "/shm") == str(32 * 1024)
    assert _cat(daemon, tag, "/nofile") == "512"
    assert _cat(daemon, tag, "/mem") == str(96 << 20)
    assert _cat(daemon, tag, "/shares") in ("512", "20")   # v1 shares, v2 weight
    build(daemon, ctx, "-t", tag, "--no-cache", "--network", "host", "--add-host",
          "myhost:10.1.2.4")
    host_ifaces = len(Path("/proc/net/dev").read_text().splitlines())
    assert _cat(daemon, tag, "/ifaces") == str(host_ifaces)
    assert daemon.out("ps", "-aq") == ""


def test_platform(daemon, tmp_path):
    ctx = _ctx(tmp_path, "FROM busybox\nRUN true\n")
    assert "Successfully built" in build(daemon, ctx, "--platform", "linux/amd64").stdout
    r = build(daemon, ctx, "--platform", "linux/s390x", check=False)
    assert r.returncode != 0 and "platform linux/s390x is not supported" in r.stderr


def test_reproducible_with_source_date_epoch(daemon, tmp_path):
    df = ("FROM busybox\nARG SOURCE_DATE_EPOCH\nENV A=1\nCOPY app /app\n"
          "RUN mkdir /made && echo x > /made/file\nWORKDIR /w\nCMD [\"sh\"]\n")
    ctx = _ctx(tmp_path, df, {"app/a.txt": "a\n", "app/sub/b.txt": "b\n"})
    epoch = "1700000000"
    ids = [image_id(build(daemon, ctx, "--no-cache", "--build-arg",
                          f"SOURCE_DATE_EPOCH={epoch}").stdout) for _ in range(2)]
    assert ids[0] == ids[1]
    info = json.loads(daemon.out("image", "inspect", ids[0]))[0]
    assert info["Created"].startswith("2023-11-14T22:13:20")
    hist = json.loads(daemon.out("history", "--no-trunc", "--format", "{{json .}}", ids[0])
                      .splitlines()[0])
    assert hist["CreatedAt"].startswith("2023-11-14T22:13:20")
    # layer times clamped: nothing in the image is newer than the epoch
    cid = daemon.out("create", ids[0], "x")
    try:
        data = subprocess.run(["docker", "export", cid], env=daemon.env,
                              capture_output=True, check=True).stdout
    finally:
        daemon.docker("rm", cid)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        times = {m.name: m.mtime for m in tf if m.name.startswith(("made", "app", "w"))}
    assert times and max(times.values()) <= int(epoch)
    # without the epoch two builds differ (the times are the build's)
    other = [image_id(build(daemon, ctx, "--no-cache").stdout) for _ in range(2)]
    assert other[0] != other[1]


def test_remote_contexts(daemon, tmp_path, http_server):  # noqa: F811
    base, handler = http_server
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (("Dockerfile", b"FROM busybox\nCOPY f /f\n"), ("f", b"remote\n")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    handler.files["/ctx.tar.gz"] = buf.getvalue()
    handler.files["/Dockerfile"] = b"FROM busybox\nRUN echo only-dockerfile > /o\n"
    api = daemon.client().api

    def run(**kw):
        out = list(api.build(decode=True, rm=True, **kw))
        errs = [o for o in out if "error" in o]
        assert not errs, errs
        return next(o["aux"]["ID"] for o in out if "aux" in o)

    assert _cat(daemon, run(path=f"{base}/ctx.tar.gz"), "/f") == "remote"
    assert _cat(daemon, run(path=f"{base}/Dockerfile"), "/o") == "only-dockerfile"
    # git: a repository served by `git daemon` on loopback, #ref:subdir
    with git_served(tmp_path, {"sub/Dockerfile": "FROM busybox\nCOPY v /v\n"}) as url:
        assert _cat(daemon, run(path=f"{url}#main:sub"), "/v") == "from-main"
        assert _cat(daemon, run(path=f"{url}#feature:sub"), "/v") == "from-branch"
        with pytest.raises(Exception, match="not a directory in the repository"):
            run(path=f"{url}#main:nope")
    assert not list((daemon.data / "builder" / "tmp").iterdir())


def test_pull_refreshes_the_base(daemon, tmp_path):
    import sys
    sys.path.insert(0, str(Path(__file__).parents[1] / "registry"))
    from registry_helpers import start_registry, stop_registry_proc
    reg = start_registry(tmp_path / "reg")
    try:
        ref = f"{reg.addr}/base:1"
        a = _ctx(tmp_path, "FROM busybox\nRUN echo a > /marker\n")
        b = _ctx(tmp_path, "FROM busybox\nRUN echo b > /marker\n")
        build(daemon, a, "-t", ref)
        daemon.docker("push", ref)
        build(daemon, b, "-t", ref)        # the local name now points at b
        ctx = _ctx(tmp_path, f"FROM {ref}\nRUN cat /marker > /seen\n")
        assert _cat(daemon, image_id(build(daemon, ctx).stdout), "/seen") == "b"
        assert _cat(daemon, image_id(build(daemon, ctx, "--pull").stdout), "/seen") == "a"
    finally:
        stop_registry_proc(reg.proc)


def test_cache_from_an_image_without_its_build_cache(fresh_daemon, tmp_path):
    """dockerd's legacy --cache-from: a loaded image (no parent chain, no cache rows)
    stands for the steps whose history it shares; the rebuild is all cache hits and
    gives the very same image."""
    d = fresh_daemon
    ctx = _ctx(tmp_path, "FROM busybox\nENV A=1\nCOPY f /f\nRUN echo ran > /r\n"
                         "LABEL x=y\n", {"f": "data\n"})
    first = image_id(build(d, ctx, "-t", "cf:1").stdout)
    saved = tmp_path / "cf.tar"
    d.docker("save", "-o", str(saved), "cf:1")
    busybox = d.out("images", "-q", "busybox")
    d.docker("rmi", "cf:1")
    left = [i for i in d.out("images", "-aq").split() if i != busybox]
    if left:
        d.docker("rmi", "-f", *left)
    d.docker("load", "-i", str(saved))
    r = build(d, ctx, "--cache-from", "cf:1", "--cache-from", "does-not-exist:1")
    assert r.stdout.count("Using cache") == 4 and "Running in" not in r.stdout, r.stdout
    assert image_id(r.stdout) == first
    # a changed file: COPY and what follows run again, what came before is still a hit
    (ctx / "f").write_text("changed\n")
    r = build(d, ctx, "--cache-from", "cf:1")
    assert r.stdout.count("Using cache") == 1 and "Running in" in r.stdout


def test_network_mode_of_another_container(daemon, tmp_path):
    """--network container:<name>: RUN shares that container's network namespace (as
    dockerd's legacy builder does); an unknown container fails the step clearly."""
    name = f"netbox-{uuid.uuid4().hex[:6]}"
    daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "120")
    try:
        theirs = daemon.out("exec", name, "readlink", "/proc/self/ns/net")
        ctx = _ctx(tmp_path, "FROM busybox\nRUN readlink /proc/self/ns/net > /ns\n")
        tag = f"netc-{uuid.uuid4().hex[:6]}"
        build(daemon, ctx, "-t", tag, "--network", f"container:{name}")
        assert _cat(daemon, tag, "/ns") == theirs
        r = build(daemon, ctx, "--no-cache", "--network", "container:nosuchbox", check=False)
        assert r.returncode != 0 and "nosuchbox" in r.stdout + r.stderr
    finally:
        daemon.docker("rm", "-f", name, check=False)
    assert daemon.out("ps", "-aq", "--filter", "label=com.dockyard.build.step") == ""


@contextlib.contextmanager
def git_served(tmp_path: Path, files: dict[str, str]):
    """A repository served by `git daemon` on loopback (its URL): ``files`` plus
    sub/v, committed on branch feature ("from-branch"), then main moves on ("from-main")."""
    import socket
    import time
    repo = tmp_path / "repos" / "proj.git"
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    (work / "sub" / "v").write_text("from-branch\n")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "x"],
                 ["branch", "feature"]):
        subprocess.run(["git", *args], cwd=work, env=env, check=True)
    (work / "sub" / "v").write_text("from-main\n")
    subprocess.run(["git", "commit", "-qam", "y"], cwd=work, env=env, check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(repo)], env=env, check=True)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    gd = subprocess.Popen(["git", "daemon", "--export-all", f"--base-path={tmp_path / 'repos'}",
                           "--listen=127.0.0.1", f"--port={port}", "--reuseaddr",
                           str(tmp_path / "repos")], env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"git://127.0.0.1:{port}/proj.git"
    finally:
        gd.kill()
        gd.wait()


def test_add_git_repository(daemon, tmp_path):
    """BuildKit's ADD <git url>#ref:subdir: the tree at that ref (no .git) into the
    destination; keyed by the commit, so a moved branch is fetched again."""
    with git_served(tmp_path, {"top.txt": "top\n", "sub/run.sh": "#!/bin/sh\n"}) as url:
        os.chmod(tmp_path / "work" / "sub" / "run.sh", 0o755)
        ctx = _ctx(tmp_path, f"FROM busybox\nADD {url}#feature /src/\n"
                             f"ADD --chown=7:8 {url}#main:sub /sub\n")
        tag = f"addgit-{uuid.uuid4().hex[:6]}"
        build(daemon, ctx, "-t", tag)
        assert _cat(daemon, tag, "/src/top.txt") == "top"
        assert _cat(daemon, tag, "/src/sub/v") == "from-branch"
        assert _cat(daemon, tag, "/sub/v") == "from-main"
        assert daemon.out("run", "--rm", tag, "stat", "-c", "%u:%g", "/sub/v") == "7:8"
        assert daemon.docker("run", "--rm", tag, "test", "-e", "/src/.git",
                             check=False).returncode != 0
        r = build(daemon, ctx, "-t", tag)
        assert r.stdout.count("Using cache") == 2
        r = build(daemon, _ctx(tmp_path, f"FROM busybox\nADD {url}#nosuchref /x\n"),
                  check=False)
        assert r.returncode != 0 and "nosuchref" in r.stderr, r.stderr
    assert not list((daemon.data / "builder" / "tmp").iterdir())
