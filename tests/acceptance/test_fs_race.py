"""The daemon reads a running container's filesystem (export, commit, diff, cp) while the
container does its worst: swapping a regular file or a directory with a symlink to a host
path in a tight loop (renameat2(RENAME_EXCHANGE), CVE-2018-15664's class), creating and
deleting files, naming files with bytes that are not UTF-8, carrying a bare whiteout in an
image layer. Nothing of the host may come out, every call must succeed, names must come
out byte for byte.

The swapping program is C (``swapper.c``), built static once per session: busybox's
``mv`` cannot exchange two names atomically.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from acceptance.harness import DOCKER

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def swapper(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("swapper") / "swapper"
    r = subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(HERE / "swapper.c")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def uniq() -> str:
    return "race-" + uuid.uuid4().hex[:10]


def raw(daemon, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """A docker CLI call whose stdout is bytes (a tar)."""
    return subprocess.run([DOCKER, *args], env=daemon.env, capture_output=True,
                          timeout=timeout)


def tar_names(data: bytes) -> dict[bytes, tarfile.TarInfo]:
    """Every entry of a tar by its exact name bytes (the whole tar is read: a cut or
    corrupt one raises)."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), encoding="utf-8",
                      errors="surrogateescape") as tf:
        for m in tf:
            out[m.name.encode("utf-8", "surrogateescape")] = m
    return out


def saved_layers(daemon, image: str) -> list[bytes]:
    """The layer tars of ``image`` as ``docker save`` writes them (uncompressed)."""
    r = raw(daemon, "save", image)
    assert r.returncode == 0, r.stderr
    layers = []
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
        for m in tf:
            if not m.isreg():
                continue
            data = tf.extractfile(m).read()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            if len(data) >= 512 and data[257:262] == b"ustar":
                layers.append(data)
    assert layers, "docker save wrote no layer"
    return layers


def until(fn, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def sleeper(daemon, image: str = "busybox"):
    name = uniq()
    daemon.docker("run", "-d", "--name", name, image, "sleep", "1000")
    try:
        yield name
    finally:
        daemon.docker("rm", "-f", name, check=False)


@contextlib.contextmanager
def racing(daemon, swapper: Path, setup: str, a: str, b: str):
    """A running container whose ``setup`` script ran, swapping ``a`` and ``b`` meanwhile."""
    with sleeper(daemon) as name:
        daemon.docker("cp", str(swapper), f"{name}:/swapper")
        daemon.docker("exec", name, "sh", "-c", setup)
        daemon.docker("exec", "-d", name, "/swapper", a, b, "300")
        assert until(lambda: daemon.docker("exec", name, "pidof", "swapper",
                                           check=False).returncode == 0)
        yield name


SECRET_MARK = b"HOST-SECRET-"
INNOCENT = b"innocent-content"


def _host_secret(tmp_path: Path) -> tuple[bytes, Path]:
    """(the secret's first 16 bytes, a host directory holding a file with the secret).
    A tar header made from the container's file (17 bytes) and data read through the
    swapped-in symlink holds that much of the secret."""
    token = uuid.uuid4().hex
    secret = SECRET_MARK + token.encode()
    d = tmp_path / f"hostdir-{token}"
    d.mkdir()
    (d / f"hostonly-{token}").write_bytes(secret)
    os.chmod(tmp_path, 0o755)
    return secret[:len(SECRET_MARK) + 4], d


def _hammer(daemon, name: str, secret: bytes, host_names: list[bytes], *, exports: int,
            commits: int, diffs: int, cps: int, expect: bytes) -> None:
    """Many exports, commits (no pause), diffs and cps of the racing container: none may
    hold ``secret`` or a name of the host's directory; ``expect`` (the container's own
    content) must be there."""
    leaks = []
    seen = 0
    for i in range(exports):
        r = raw(daemon, "export", name)
        assert r.returncode == 0, r.stderr.decode() + daemon.log_text()
        tar_names(r.stdout)
        if secret in r.stdout or any(h in r.stdout for h in host_names):
            leaks.append(f"export {i}")
        seen += expect in r.stdout
    img = "race-commit-" + uuid.uuid4().hex[:8]
    try:
        for i in range(commits):
            daemon.docker("commit", "--pause=false", name, f"{img}:{i}")
            layers = saved_layers(daemon, f"{img}:{i}")
            for layer in layers:
                tar_names(layer)
            top = layers   # every layer: the committed one is among them
            if any(secret in t or any(h in t for h in host_names) for t in top):
                leaks.append(f"commit {i}")
            seen += any(expect in t for t in top)
            daemon.docker("rmi", f"{img}:{i}")
    finally:
        ids = daemon.out("images", "-q", img).split()
        if ids:
            daemon.docker("rmi", "-f", *ids, check=False)
    for i in range(diffs):
        r = daemon.docker("diff", name, check=False)
        assert r.returncode == 0, r.stderr
        if any(h.decode() in r.stdout for h in host_names) or secret.decode() in r.stdout:
            leaks.append(f"diff {i}")
    for i in range(cps):
        r = raw(daemon, "cp", f"{name}:/race", "-")
        assert r.returncode == 0, r.stderr
        if secret in r.stdout or any(h in r.stdout for h in host_names):
            leaks.append(f"cp {i}")
    assert not leaks, f"host data read through the container's symlink: {leaks}"
    assert seen >= (exports + commits) // 2   # the reads did see the racing entries


def test_file_symlink_swap_never_leaks(daemon, swapper, tmp_path):
    secret, hostdir = _host_secret(tmp_path)
    secret_file = next(hostdir.iterdir())
    setup = (f"mkdir /race && echo {INNOCENT.decode()} > /race/file && "
             f"ln -s {secret_file} /race/link")
    with racing(daemon, swapper, setup, "/race/file", "/race/link") as name:
        _hammer(daemon, name, secret, [], exports=40, commits=20, diffs=20, cps=10,
                expect=INNOCENT)


def test_directory_symlink_swap_never_leaks(daemon, swapper, tmp_path):
    secret, hostdir = _host_secret(tmp_path)
    host_names = [p.name.encode() for p in hostdir.iterdir()]
    setup = (f"mkdir -p /race/dir && echo {INNOCENT.decode()} > /race/dir/inner && "
             f"ln -s {hostdir} /race/link")
    with racing(daemon, swapper, setup, "/race/dir", "/race/link") as name:
        _hammer(daemon, name, secret, host_names, exports=40, commits=20, diffs=40, cps=10,
                expect=INNOCENT)


def test_non_utf8_names_round_trip(daemon):
    raw_name = b"caf\xe9-\xff\xfe"
    with sleeper(daemon) as name:
        daemon.docker("exec", name, "sh", "-c",
                      "mkdir /nu && echo latin1 > \"/nu/$(printf 'caf\\351-\\377\\376')\"")
        # diff: 200, the name with U+FFFD for the invalid bytes (as Go's JSON)
        r = daemon.docker("diff", name, check=False)
        assert r.returncode == 0, r.stderr
        shown = raw_name.decode("utf-8", "replace")
        assert f"A /nu/{shown}" in r.stdout.splitlines()
        changes = daemon.client().api.diff(name)
        assert {"Path": f"/nu/{shown}", "Kind": 1} in changes
        # export: the exact bytes, and the content
        r = raw(daemon, "export", name)
        assert r.returncode == 0, r.stderr
        entries = tar_names(r.stdout)
        assert b"nu/" + raw_name in entries
        with tarfile.open(fileobj=io.BytesIO(r.stdout), encoding="utf-8",
                          errors="surrogateescape") as tf:
            m = tf.getmember("nu/" + raw_name.decode("utf-8", "surrogateescape"))
            assert tf.extractfile(m).read() == b"latin1\n"
        # cp
        r = raw(daemon, "cp", f"{name}:/nu", "-")
        assert r.returncode == 0, r.stderr
        assert b"nu/" + raw_name in tar_names(r.stdout)
        dest = daemon.dir / f"cp-{name}"   # the CLI (Go's archive/tar) extracts it exactly
        daemon.docker("cp", f"{name}:/nu", str(dest))
        try:
            assert os.listdir(os.fsencode(dest)) == [raw_name]
        finally:
            subprocess.run(["rm", "-rf", str(dest)])
        # commit, with and without pause: the layer holds the exact bytes
        img = "nonutf8-" + uuid.uuid4().hex[:8]
        for pause in ("true", "false"):
            daemon.docker("commit", f"--pause={pause}", name, f"{img}:{pause}")
            try:
                layers = saved_layers(daemon, f"{img}:{pause}")
                assert any(b"nu/" + raw_name in tar_names(t) for t in layers)
            finally:
                daemon.docker("rmi", f"{img}:{pause}", check=False)
        # and the committed layer unpacks to the same name
        daemon.docker("commit", name, f"{img}:run")
        try:
            r = daemon.docker("run", "--rm", f"{img}:run", "sh", "-c",
                              "cat /nu/\"$(printf 'caf\\351-\\377\\376')\"")
            assert r.stdout == "latin1\n"
        finally:
            daemon.docker("rmi", f"{img}:run", check=False)


def _ping(daemon) -> None:
    assert daemon.client().ping()


def test_export_of_image_with_bare_whiteout(daemon, tmp_path):
    """A layer holding ``dir/.wh.name`` for a name no lower layer has: the whiteout is
    not part of the container's filesystem, and export works."""
    root = daemon.dir / "bbroot"
    base = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True,
                          check=True).stdout
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(base)) as src, \
            tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for m in src:
            dst.addfile(m, src.extractfile(m) if m.isreg() else None)
        for n, kind in (("wdir/", tarfile.DIRTYPE), ("wdir/.wh.gone", tarfile.REGTYPE),
                        ("etc/.wh.never-there", tarfile.REGTYPE),
                        ("wdir/kept", tarfile.REGTYPE)):
            ti = tarfile.TarInfo(n)
            ti.type, ti.mode = kind, 0o755 if kind == tarfile.DIRTYPE else 0o644
            dst.addfile(ti, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    img = "whiteout-" + uuid.uuid4().hex[:8]
    daemon.docker("import", "-c", 'CMD ["sh"]', "-", img, input=buf.getvalue())
    try:
        with sleeper(daemon, img) as name:
            for _ in range(2):
                r = raw(daemon, "export", name)
                assert r.returncode == 0, r.stderr.decode() + daemon.log_text()
                entries = tar_names(r.stdout)
                assert b"wdir/kept" in entries and b"bin/busybox" in entries
                assert not any(b".wh." in n for n in entries)
                assert not any(m.ischr() and m.devmajor == 0 and m.devminor == 0
                               for m in entries.values())
                daemon.docker("stop", "-t", "0", name)   # and from a stopped container
            _ping(daemon)
    finally:
        daemon.docker("rmi", "-f", img, check=False)


def test_export_while_container_churns(daemon):
    script = ("while :; do for i in 1 2 3 4 5 6 7 8; do mkdir -p /churn/d$i/e; "
              "echo x > /churn/d$i/f; echo y > /churn/d$i/e/g; ln -sf f /churn/d$i/l; done; "
              "rm -rf /churn/*; done")
    name = uniq()
    daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c", script)
    try:
        for _ in range(15):
            r = raw(daemon, "export", name)
            assert r.returncode == 0, r.stderr.decode() + daemon.log_text()
            assert b"bin/busybox" in tar_names(r.stdout)
            r = daemon.docker("diff", name, check=False)
            assert r.returncode == 0, r.stderr
        img = "churn-" + uuid.uuid4().hex[:8]
        for i in range(5):
            daemon.docker("commit", "--pause=false", name, f"{img}:{i}")
            daemon.docker("rmi", f"{img}:{i}")
        _ping(daemon)
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_start_checks_the_command_inside_the_root(daemon, tmp_path):
    """The start-time check of an absolute command (a directory, not executable) looks
    inside the container: a symlink in the image to a host directory tells nothing of
    the host (the old lstat by host path answered "is a directory" for it)."""
    hostdir = tmp_path / "hostdir"
    (hostdir / "sub").mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    img = "cmdcheck-" + uuid.uuid4().hex[:8]
    name = uniq()
    daemon.docker("run", "--name", name, "busybox", "ln", "-s", str(hostdir), "/x")
    try:
        daemon.docker("commit", name, img)
        r = daemon.docker("run", "--rm", img, "/x/sub", check=False)
        assert r.returncode == 127, r.stderr
        assert "is a directory" not in r.stderr
        r = daemon.docker("run", "--rm", img, "/bin", check=False)   # the check still works
        assert r.returncode == 126 and "is a directory" in r.stderr
    finally:
        daemon.docker("rm", "-f", name, check=False)
        daemon.docker("rmi", "-f", img, check=False)


def test_size_never_counts_host_files(daemon, swapper, tmp_path):
    """``SizeRw`` (ps -s, inspect --size) walks the container's upper directory: a
    directory swapped with a symlink to a host directory (holding a 1 GiB sparse file)
    must never be entered."""
    hostdir = tmp_path / "big"
    hostdir.mkdir()
    with open(hostdir / "sparse", "wb") as f:
        f.truncate(1 << 30)
    os.chmod(tmp_path, 0o755)
    setup = (f"mkdir -p /race/dir && echo {INNOCENT.decode()} > /race/dir/inner && "
             f"ln -s {hostdir} /race/link")
    with racing(daemon, swapper, setup, "/race/dir", "/race/link") as name:
        sizes = [int(daemon.out("inspect", "--size", "-f", "{{.SizeRw}}", name))
                 for _ in range(60)]
    assert max(sizes) < 100 << 20, sizes
    assert min(sizes) > 0
