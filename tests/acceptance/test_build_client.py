"""`dockyard build` (our client) against `dockyard daemon`: contexts from a directory (with
.dockerignore applied on the client: what it excludes never travels), a Dockerfile outside
the context or on stdin, `-` (a tar or a Dockerfile), an http URL and a git URL served from
loopback; flags; the output modes (plain, quiet, iidfile, a terminal's live view); a failing
step's exit code."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def dockyard(d, *args: str, input: bytes | None = None, env: dict | None = None,
             host: str | None = None) -> subprocess.CompletedProcess:
    e = {**d.env, **(env or {})}
    if host:
        e["DOCKER_HOST"] = host
    return subprocess.run([sys.executable, "-m", "dockyard", *args], env=e, input=input,
                          capture_output=True, timeout=180)


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (r.returncode, r.stdout.decode(), r.stderr.decode())
    return r.stdout.decode()


def built(out: str) -> str:
    m = re.search(r"Successfully built ([0-9a-f]{12})", out)
    assert m, out
    return m.group(1)


@contextlib.contextmanager
def counting_proxy(target: str):
    """A unix-socket proxy in front of the daemon that counts the bytes the client sends
    (and, second, the POST requests among them)."""
    import tempfile
    d = tempfile.mkdtemp()
    path = os.path.join(d, "p.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(8)
    sent = [0, 0]
    stop = threading.Event()

    def pump(a, b, count):
        try:
            while True:
                data = a.recv(1 << 16)
                if not data:
                    break
                if count:
                    sent[0] += len(data)
                    sent[1] += data.count(b"POST /")
                b.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                b.shutdown(socket.SHUT_WR)

    def serve():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                return
            u = socket.socket(socket.AF_UNIX)
            u.connect(target)
            threading.Thread(target=pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=pump, args=(u, c, False), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield "unix://" + path, sent
    finally:
        stop.set()
        srv.close()
        import shutil
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def http_serving(directory: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_directory_context_ignores_on_the_client_and_flags(daemon, tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src" / "app.sh").write_text("echo app\n")
    os.chmod(ctx / "src" / "app.sh", 0o750)
    (ctx / "src" / "keep.log").write_text("kept by an exception\n")
    (ctx / "logs").mkdir()
    (ctx / "logs" / "x.log").write_text("ignored\n")
    # 64 MiB the client must neither read nor send (sparse: nothing on disk)
    with open(ctx / "big.iso", "wb") as f:
        f.truncate(64 << 20)
    (ctx / ".dockerignore").write_text("*.iso\nlogs\n**/*.log\n!src/keep.log\nDockerfile\n")
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS base\nARG WHO=nobody\nRUN echo base-$WHO > /who\n"
        "FROM base AS final\nCOPY . /ctx/\nLABEL stage=final\n"
        "RUN find /ctx | sort > /listing\n"
        "FROM busybox AS unused\nRUN exit 9\n")
    tag = f"cl-{uuid.uuid4().hex[:6]}"
    iid_file = tmp_path / "iid"
    with counting_proxy(str(daemon.sock)) as (host, sent):
        out = ok(dockyard(daemon, "build", "-t", tag, "-t", tag + ":two", "--build-arg",
                          "WHO=me", "--label", "by=test", "--target", "final", "--iidfile",
                          str(iid_file), "--progress", "plain", str(ctx), host=host))
        assert sent[0] < (1 << 20), sent[0]    # the ignored 64 MiB never travelled
    assert f"Successfully tagged {tag}:latest" in out and f"{tag}:two" in out
    iid = iid_file.read_text()
    assert iid.startswith("sha256:" + built(out))
    listing = daemon.out("run", "--rm", tag, "cat", "/listing", "/who").splitlines()
    # the Dockerfile and .dockerignore travel even when ignored; the daemon applies the
    # ignore file again (so the Dockerfile is not copied)
    assert listing == ["/ctx", "/ctx/.dockerignore", "/ctx/src", "/ctx/src/app.sh", "/ctx/src/keep.log",
                       "base-me"], listing
    assert daemon.out("run", "--rm", tag, "stat", "-c", "%a", "/ctx/src/app.sh") == "750"
    labels = daemon.out("image", "inspect", "--format", "{{json .Config.Labels}}", tag)
    assert '"by":"test"' in labels and '"stage":"final"' in labels

    # -q: only the ID; a no-change rebuild is the same image
    out = ok(dockyard(daemon, "build", "-q", "--build-arg", "WHO=me", "--label", "by=test",
                      "--target", "final", str(ctx)))
    assert out.strip() == iid


def test_dockerfile_outside_on_stdin_and_stdin_contexts(daemon, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f.txt").write_text("from the context\n")
    outside = tmp_path / "elsewhere.Dockerfile"
    outside.write_text("FROM busybox\nCOPY f.txt /f.txt\nCMD [\"cat\", \"/f.txt\"]\n")
    tag = f"cl-{uuid.uuid4().hex[:6]}"
    ok(dockyard(daemon, "build", "-f", str(outside), "-t", tag, str(ctx)))
    assert daemon.out("run", "--rm", tag) == "from the context"
    # -f -: the Dockerfile from stdin, the context from the directory
    ok(dockyard(daemon, "build", "-f", "-", "-t", tag + "-2", str(ctx),
                input=b"FROM busybox\nCOPY f.txt /g.txt\n"))
    assert daemon.out("run", "--rm", tag + "-2", "cat", "/g.txt") == "from the context"
    # -: a Dockerfile alone
    ok(dockyard(daemon, "build", "-t", tag + "-3", "-",
                input=b"FROM busybox\nRUN echo stdin > /s\n"))
    assert daemon.out("run", "--rm", tag + "-3", "cat", "/s") == "stdin"
    # -: a gzipped tar with a Dockerfile elsewhere than the default name
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("build/Dockerfile.x", b"FROM busybox\nCOPY data /data\n"),
                           ("data", b"tarred\n")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    ok(dockyard(daemon, "build", "-f", "build/Dockerfile.x", "-t", tag + "-4", "-",
                input=gzip.compress(buf.getvalue())))
    assert daemon.out("run", "--rm", tag + "-4", "cat", "/data") == "tarred"
    # both on stdin: refused
    r = dockyard(daemon, "build", "-f", "-", "-", input=b"")
    assert r.returncode != 0 and b"stdin for both" in r.stderr


def test_url_and_git_contexts(daemon, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "Dockerfile").write_text("FROM busybox\nRUN echo from-url > /u\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (("Dockerfile", b"FROM busybox\nCOPY x /x\n"), ("x", b"tar-url\n")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    (site / "ctx.tar.gz").write_bytes(buf.getvalue())
    # a git repository served over dumb http, with a branch and a subdirectory
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "sub" / "Dockerfile").write_text("FROM busybox\nCOPY y /y\n")
    (work / "sub" / "y").write_text("from-git\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(work)]
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "c"],
                 ["branch", "feature"]):
        subprocess.run(git + args, check=True, capture_output=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(site / "repo.git")],
                   check=True, capture_output=True)
    subprocess.run(["git", "-C", str(site / "repo.git"), "update-server-info"], check=True)
    tag = f"cl-{uuid.uuid4().hex[:6]}"
    with http_serving(site) as url:
        ok(dockyard(daemon, "build", "-t", tag, url + "/Dockerfile"))
        assert daemon.out("run", "--rm", tag, "cat", "/u") == "from-url"
        ok(dockyard(daemon, "build", "-t", tag + "-t", url + "/ctx.tar.gz"))
        assert daemon.out("run", "--rm", tag + "-t", "cat", "/x") == "tar-url"
        ok(dockyard(daemon, "build", "-t", tag + "-g", url + "/repo.git#feature:sub"))
        assert daemon.out("run", "--rm", tag + "-g", "cat", "/y") == "from-git"
        r = dockyard(daemon, "build", url + "/missing")
        assert r.returncode != 0 and b"unable to download remote context" in r.stderr


def test_failure_exit_code_and_terminal_view(daemon, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo step-output; exit 3\n")
    r = dockyard(daemon, "build", str(ctx))
    assert r.returncode == 3
    assert b"step-output" in r.stdout
    assert b"The command '/bin/sh -c echo step-output; exit 3' returned a non-zero code: 3" \
        in r.stderr
    r = dockyard(daemon, "build", "-q", str(ctx))
    assert r.returncode == 3 and r.stdout == b"" and b"step-output" in r.stderr
    r = dockyard(daemon, "build", "--progress", "bogus", str(ctx))
    assert r.returncode == 125

    # on a terminal: the live step list, CACHED on a rebuild, the failing step's output
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo tty-run\nCMD [\"true\"]\n")
    first = run_in_pty(daemon, ["build", str(ctx)])
    assert "[+] Building" in first and "[2/3] RUN echo tty-run" in first
    second = run_in_pty(daemon, ["build", str(ctx)])
    assert re.search(r"\[2/3\] RUN echo tty-run.*CACHED", second), second
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo bad-line; exit 5\n")
    failed = run_in_pty(daemon, ["build", str(ctx)], code=5)
    assert "ERROR" in failed and "bad-line" in failed


def run_in_pty(d, args: list[str], code: int = 0) -> str:
    import pty
    master, slave = pty.openpty()
    env = {**d.env, "COLUMNS": "160", "LINES": "50", "TERM": "xterm"}
    p = subprocess.Popen([sys.executable, "-m", "dockyard", *args], env=env, stdin=slave,
                         stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:
            break
        if not b:
            break
        chunks.append(b)
    os.close(master)
    assert p.wait(timeout=120) == code
    text = b"".join(chunks).decode("utf-8", "replace")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_context_session_sends_only_changes(daemon, tmp_path):
    ctx = tmp_path / "sess"
    (ctx / "files").mkdir(parents=True)
    for i in range(200):
        (ctx / "files" / f"f{i:03}").write_bytes(os.urandom(8192))     # 1.6 MB
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY files/ /files/\n")
    tag = f"sess-{uuid.uuid4().hex[:6]}"

    posts = []

    def build() -> tuple[str, int]:
        with counting_proxy(str(daemon.sock)) as (host, sent):
            out = ok(dockyard(daemon, "build", "-q", "-t", tag, str(ctx), host=host))
            posts.append(sent[1])
            return out.strip(), sent[0]

    def kept_inodes() -> set[int]:
        return {p.stat().st_ino for p in (daemon.data / "builder" / "sessions").glob("*.spool")}

    first, n1 = build()
    assert n1 > 1_600_000
    before = kept_inodes()
    again, n2 = build()       # nothing changed: the manifest, no file content
    assert again == first and n2 < 200_000, n2
    # ... in one request: the offer's answer is the build
    assert posts == [2, 1], posts
    # nor is anything copied on the daemon: the kept spool serves as it is
    assert kept_inodes() == before and before
    # ... and its files are read from it at their old offsets (the COPY runs again)
    fresh = ok(dockyard(daemon, "build", "-q", "--no-cache", str(ctx))).strip()
    assert kept_inodes() == before
    assert daemon.out("run", "--rm", fresh, "sh", "-c", "cd /files && md5sum * | md5sum") \
        == daemon.out("run", "--rm", first, "sh", "-c", "cd /files && md5sum * | md5sum")
    (ctx / "files" / "f007").write_bytes(b"changed\n")
    os.chmod(ctx / "files" / "f008", 0o600)
    (ctx / "files" / "f009").unlink()
    (ctx / "files" / "new").write_text("new\n")
    changed, n3 = build()
    assert changed != first and n3 < 200_000 + 2 * 8192, n3
    assert posts[-1] == 2, posts
    # the sent files were added to the kept spool: the unchanged ones were not copied
    assert kept_inodes() == before
    got = daemon.out("run", "--rm", tag, "sh", "-c",
                     "cat /files/f007 /files/new; stat -c %a /files/f008; "
                     "ls /files | wc -l; test -e /files/f009 || echo gone")
    assert got.splitlines() == ["changed", "new", "600", "200", "gone"], got
    # what the session built equals a whole-context build of the same directory
    full = ok(dockyard(daemon, "build", "-q", "--no-cache", str(ctx),
                       env={"DOCKYARD_BUILD_FULL_CONTEXT": "1"})).strip()
    a = daemon.out("run", "--rm", tag, "sh", "-c", "cd /files && md5sum * | md5sum")
    b = daemon.out("run", "--rm", full, "sh", "-c", "cd /files && md5sum * | md5sum")
    assert a == b


def test_context_session_refuses_bad_manifests_and_stale_tokens(daemon):
    import json as _json
    import docker
    api = docker.APIClient(base_url=daemon.host)
    try:
        def offer(items, key="ab" * 16):
            return api._post(api._url("/build/session"), params={"key": key},
                             data=_json.dumps(items),
                             headers={"Content-Type": "application/json"})
        for items in ([["../etc/passwd", "file", 420, 1, 0, ""]],
                      [["a", "file", 420, 1, 0, ""], ["a/b", "file", 420, 1, 0, ""]],
                      [["l", "symlink", 511, 0, 0, "/"], ["l/x", "file", 420, 1, 0, ""]],
                      [["p", "fifo", 420, 0, 0, ""]], {"not": "a list"}):
            r = offer(items)
            assert r.status_code == 400, (items, r.text)
        assert offer([], key="not-hex").status_code == 400
        r = offer([["a", "file", 420, 1, 0, ""]])
        assert r.status_code == 200 and r.json()["Missing"] == ["a"]
        # a token is used once; an unknown one is a 409 (the client then sends it all)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            ti = tarfile.TarInfo("Dockerfile")
            ti.size = 0
            tf.addfile(ti, io.BytesIO(b""))
        r = api._post(api._url("/build"), params={"contextsession": "0" * 32},
                      data=buf.getvalue(), headers={"Content-Type": "application/x-tar"})
        assert r.status_code == 409 and "send the whole context" in r.text
        # a file the manifest names that neither came nor was kept: refused
        tok = offer([["Dockerfile", "file", 420, 13, 1, ""], ["a", "file", 420, 1, 0, ""]]
                    ).json()["Token"]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            data = b"FROM busybox\n"
            ti = tarfile.TarInfo("Dockerfile")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        r = api._post(api._url("/build"), params={"contextsession": tok},
                      data=buf.getvalue(), headers={"Content-Type": "application/x-tar"})
        assert r.status_code == 409 and "neither sent nor kept" in r.text
        assert os.listdir(daemon.data / "builder" / "tmp") == []
    finally:
        api.close()


def test_context_session_sends_only_what_the_build_reads(daemon, tmp_path):
    ctx = tmp_path / "reads"
    (ctx / "sub").mkdir(parents=True)
    with open(ctx / "big.bin", "wb") as f:
        f.truncate(64 << 20)      # not ignored, but no step reads it
    (ctx / "a.txt").write_text("a\n")
    (ctx / "b.txt").write_text("b\n")
    (ctx / "sub" / "c.dat").write_text("c\n")
    (ctx / "link").symlink_to("sub")
    tag = f"reads-{uuid.uuid4().hex[:6]}"

    def build(dockerfile: str) -> int:
        (ctx / "Dockerfile").write_text(dockerfile)
        with counting_proxy(str(daemon.sock)) as (host, sent):
            ok(dockyard(daemon, "build", "-q", "-t", tag, str(ctx), host=host))
            return sent[0]

    n = build("FROM busybox\nCOPY *.txt /t/\nCOPY link/ /l/\n"
              "RUN --mount=type=bind,source=sub,target=/m cat /m/c.dat > /from-mount\n")
    assert n < (1 << 20), n
    got = daemon.out("run", "--rm", tag, "sh", "-c", "ls /t /l; cat /from-mount")
    assert got.split() == ["/l:", "c.dat", "/t:", "a.txt", "b.txt", "c"], got
    # a step that reads everything: the big file travels now (and lands)
    n = build("FROM busybox\nCOPY . /all/\n")
    assert n > (64 << 20), n
    assert daemon.out("run", "--rm", tag, "stat", "-c", "%s", "/all/big.bin") == str(64 << 20)


def test_context_session_kept_spool_grows_then_is_rewritten(daemon, tmp_path):
    """A changed file goes to the end of the kept spool (the others stay where they are);
    once more than half of it is old bytes no build reads, a compact spool replaces it."""
    ctx = tmp_path / "grow"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY big small /d/\n")
    (ctx / "small").write_text("small\n")
    tag = f"grow-{uuid.uuid4().hex[:6]}"

    def build(content: bytes) -> tuple[int, int]:
        (ctx / "big").write_bytes(content)
        ok(dockyard(daemon, "build", "-q", "-t", tag, str(ctx)))
        assert daemon.out("run", "--rm", tag, "sh", "-c", "cat /d/big /d/small | md5sum") \
            .split()[0] == hashlib.md5(content + b"small\n").hexdigest()
        # (the session key our client uses for this directory: cli/cmd_build.py)
        key = hashlib.sha256(f"{os.path.realpath(ctx)}\0Dockerfile".encode()).hexdigest()
        spools = list((daemon.data / "builder" / "sessions").glob(f"{key[:32]}-*.spool"))
        assert len(spools) == 1, spools
        return spools[0].stat().st_ino, spools[0].stat().st_size

    ino1, size1 = build(os.urandom(2 << 20))
    ino2, size2 = build(os.urandom(2 << 20))     # grown: the new big at the end
    assert ino2 == ino1 and size2 >= size1 + (2 << 20)
    ino3, size3 = build(os.urandom(2 << 20))     # 2/3 would be old bytes: rewritten
    assert ino3 != ino2 and size3 < size2


def test_context_session_plans_again_when_a_base_changes(daemon, tmp_path):
    """An offer the same as the last one is not planned again, unless a base image it
    names is another image now (here one whose ONBUILD reads another context file)."""
    ctx = tmp_path / "onb"
    ctx.mkdir()
    base = f"onbase-{uuid.uuid4().hex[:6]}"
    (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY a.txt /a\n")
    (ctx / "a.txt").write_text("a\n")
    (ctx / "extra.txt").write_text("extra\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "Dockerfile").write_text("FROM busybox\nONBUILD COPY extra.txt /extra\n")
    tag = f"onb-{uuid.uuid4().hex[:6]}"
    daemon.out("tag", "busybox", base)
    ok(dockyard(daemon, "build", "-q", "-t", tag, str(ctx)))
    ok(dockyard(daemon, "build", "-q", "-t", base, str(other)))
    ok(dockyard(daemon, "build", "-q", "-t", tag, str(ctx)))
    assert daemon.out("run", "--rm", tag, "cat", "/a", "/extra").split() == ["a", "extra"]
