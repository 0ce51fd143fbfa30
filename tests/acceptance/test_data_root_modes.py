"""No local user but root reaches anything under the daemon's data root (issue 12).

A data root reachable by others let any local user run a setuid-root binary from
an imported image's snapshot (euid 0) and read containers' environment from
their config.json, the metadata database's WAL and the logs. The daemon's data
root here sits in a directory everyone may traverse, and an unprivileged user
(`nobody`, via setpriv) tries to reach each of these.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from acceptance.harness import Daemon, import_busybox, running

pytestmark = pytest.mark.slow

# setpriv looks up the program to exec while it still has its capabilities: a shell
# without any runs it
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
          "/bin/sh", "-c", 'exec "$0" "$@"']
SECRET = "hunter2-issue12"

#: the documented exceptions to "no permission bits for group and others"
#: (daemon/dataroot.py), relative to the data root, "*" for one name
EXCEPTIONS = {
    ("containers", "*", "hostname"): 0o644,     # bind-mounted into the container
    ("containers", "*", "hosts"): 0o644,
    ("containers", "*", "resolv.conf"): 0o644,
    ("runtime", "*", "exec.fifo"): 0o622,       # until start, as runc's
}


def _base() -> Path:
    """A directory every user may traverse (pytest's own basetemp is 0700, which would
    hide the data root's own modes)."""
    base = Path(tempfile.mkdtemp(prefix="dky-modes-", dir="/tmp"))
    os.chmod(base, 0o755)
    return base


@pytest.fixture(scope="module")
def daemon():
    """With networking: network.json, and hosts/resolv.conf made by the network side."""
    base = _base()
    try:
        with running(base, network=True) as d:
            yield d
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def own_daemon():
    base = _base()
    try:
        with running(base) as d:
            yield d
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _import_setuid_image(d, name: str = "suidbox") -> None:
    """busybox with /bin/busybox setuid root, as an image could ship it."""
    root = d.dir / "suidroot"
    subprocess.run(["cp", "-a", str(d.dir / "bbroot"), str(root)], check=True)
    os.chmod(root / "bin" / "busybox", 0o4755)
    tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True,
                         check=True).stdout
    d.docker("import", "-c", 'CMD ["sh"]', "-", name, input=tar)


def _as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(NOBODY + list(argv), capture_output=True, text=True, timeout=30)


def _setuid_binaries(data: Path) -> list[Path]:
    return [p for p in data.glob("snapshots/*/*/fs/bin/busybox")
            if os.stat(p).st_mode & stat.S_ISUID]


def test_nobody_reaches_nothing(daemon):
    d = daemon
    _import_setuid_image(d)
    cid = d.out("run", "-d", "-e", f"SECRET_TOKEN={SECRET}", "suidbox", "sh", "-c",
                f"echo log-{SECRET}; sleep 300")
    stopped = d.out("run", "-e", f"SECRET_TOKEN={SECRET}", "suidbox", "sh", "-c", "echo done")
    assert stopped == "done"
    data = d.data
    # what an attacker would go for, and proof that it holds what they want
    suid = _setuid_binaries(data)
    assert suid, "the setuid-root busybox should be in a snapshot"
    config = data / "containers" / cid / "bundle" / "config.json"
    assert SECRET in config.read_text()
    log = data / "containers" / cid / f"{cid}-json.log"
    assert SECRET in log.read_text()
    files = [config, log, data / "metadata.db", data / "metadata.db-wal",
             data / "runtime" / cid / "state.json",
             data / "supervisor" / "supervisor.log",
             data / "supervisor" / "tasks" / cid / "task.json",
             data / "engine-id", data / "dockyard.lock",
             *[p for p in (data / "content" / "blobs" / "sha256").iterdir()]]
    for f in files:
        assert f.exists(), f
    dirs = [data, data / "snapshots", suid[0].parent.parent, data / "containers" / cid,
            data / "containers" / cid / "rootfs", data / "supervisor", data / "runtime",
            data / "content", data / "bin"]
    # the escalation itself: the setuid binary run by nobody
    for p in suid:
        r = _as_nobody(str(p), "id", "-u")
        assert r.returncode != 0 and r.stdout.strip() != "0", (p, r.stdout, r.stderr)
    through_rootfs = data / "containers" / cid / "rootfs" / "bin" / "busybox"
    r = _as_nobody(str(through_rootfs), "id", "-u")
    assert r.returncode != 0 and "0" != r.stdout.strip(), (r.stdout, r.stderr)
    for f in files:
        r = _as_nobody("/bin/cat", str(f))
        assert r.returncode != 0 and "Permission denied" in r.stderr, (f, r.stdout[:200])
    for p in dirs:
        r = _as_nobody("/bin/ls", str(p))
        assert r.returncode != 0 and "Permission denied" in r.stderr, (p, r.stdout[:200])


def test_every_entry_is_owner_only(daemon):
    """A walk of the whole data root (not into snapshot content or a container's root
    filesystem): no permission bit for group or others beyond the documented ones."""
    d = daemon
    d.docker("run", "-d", "--name", "walk-running", "-e", f"SECRET_TOKEN={SECRET}", "busybox",
             "sleep", "300")
    d.docker("create", "--name", "walk-created", "busybox", "true")
    d.docker("run", "--name", "walk-exited", "busybox", "sh", "-c", "echo some output")
    d.docker("run", "--rm", "busybox", "true")     # twice: a warm container is made
    d.docker("run", "--rm", "busybox", "true")
    d.docker("exec", "walk-running", "true")
    (d.dir / "copied").write_text("x")
    d.docker("cp", str(d.dir / "copied"), "walk-running:/tmp/")     # spools in tmp/
    d.docker("commit", "walk-exited", "walk:committed")
    d.docker("tag", "busybox", "walk:tagged")
    data = d.data
    st = os.lstat(data)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == 0
    bad, seen = [], 0
    for dirpath, dirnames, filenames in os.walk(data):
        rel = Path(dirpath).relative_to(data).parts
        if len(rel) == 3 and rel[0] == "snapshots":
            dirnames[:] = [n for n in dirnames if n != "fs"]      # layer content
        if len(rel) == 2 and rel[0] == "containers":
            dirnames[:] = [n for n in dirnames if n != "rootfs"]  # the container's /
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                continue
            seen += 1
            mode = stat.S_IMODE(st.st_mode)
            parts = p.relative_to(data).parts
            allowed = next((m for pat, m in EXCEPTIONS.items() if len(pat) == len(parts) and
                            all(a in ("*", b) for a, b in zip(pat, parts))), None)
            if allowed is not None:
                if mode != allowed:
                    bad.append(f"{oct(mode)} {'/'.join(parts)} (expected {oct(allowed)})")
            elif mode & 0o077:
                bad.append(f"{oct(mode)} {'/'.join(parts)}")
    assert seen > 40
    for name in ("network.json", "tmp", "engine-id", "metadata.db-wal"):
        assert (data / name).exists(), name
    assert not bad, "reachable by others:\n" + "\n".join(bad)


def test_container_files_still_readable_by_a_non_root_user(daemon):
    """hostname, hosts and resolv.conf are bind-mounted from the 0700 container
    directory: a container's non-root user still reads them."""
    out = daemon.out("run", "--rm", "--user", "65534:65534", "--hostname", "h12", "busybox",
                     "sh", "-c", "cat /etc/hostname /etc/hosts /etc/resolv.conf >/dev/null && "
                                 "cat /etc/hostname && id -u")
    assert out.split() == ["h12", "65534"]


def test_an_old_world_readable_data_root_is_fixed_at_start(own_daemon):
    d = own_daemon
    cid = d.out("run", "-d", "-e", f"SECRET_TOKEN={SECRET}", "busybox", "sleep", "300")
    d.stop()
    data = d.data
    # what an older version left: 0755 directories, 0644 files
    old = [data, *[p for p in data.iterdir() if not p.is_symlink()],
           data / "bin" / "dockyard-runc",
           *data.glob("snapshots/*"), *data.glob("snapshots/*/*"),
           *data.glob("containers/*"), *data.glob("runtime/*"),
           *data.glob("supervisor/tasks"), *data.glob("supervisor/tasks/*")]
    for p in old:
        if p.is_dir():
            os.chmod(p, 0o755)
        elif p.is_file():
            os.chmod(p, 0o644)
    content_modes = {p: os.stat(p).st_mode for p in data.glob("snapshots/*/*/fs")}
    r = _as_nobody("/bin/ls", str(data / "containers" / cid))
    assert r.returncode == 0    # as an older version left it
    d.start()
    for p in old:
        if p.is_dir():
            assert stat.S_IMODE(os.stat(p).st_mode) == 0o700, p
        elif p.is_file():
            want = 0o700 if p.name == "dockyard-runc" else 0o600
            assert stat.S_IMODE(os.stat(p).st_mode) == want, p
    # content (the layers' own root directories) keeps its modes
    assert {p: os.stat(p).st_mode for p in data.glob("snapshots/*/*/fs")} == content_modes
    for p in (data, data / "metadata.db", data / "containers" / cid):
        r = _as_nobody("/bin/ls", str(p))
        assert r.returncode != 0 and "Permission denied" in r.stderr, p
    # and the daemon still works with the container it found
    assert json.loads(d.out("inspect", cid))[0]["State"]["Running"]
    assert d.out("exec", cid, "echo", "ok") == "ok"



@pytest.fixture
def strict_umask_daemon():
    """A daemon (so its supervisor and runtime too) started under umask 077; the test's
    own files (busybox's root filesystem) are made with the usual one."""
    base = _base()
    d = Daemon(base)
    try:
        old = os.umask(0o077)
        try:
            d.start()
        finally:
            os.umask(old)
        import_busybox(d)
        yield d
    finally:
        d.close()
        shutil.rmtree(base, ignore_errors=True)


def test_a_strict_umask_changes_nothing_a_container_sees(strict_umask_daemon):
    """The daemon's own state is owner-only anyway; what containers see keeps its modes:
    the image's (directories a layer only implies too), files copied in, /etc/hosts & co."""
    import io
    import tarfile

    d = strict_umask_daemon
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(str(d.dir / "bbroot"), arcname=".")
        ti = tarfile.TarInfo("implied/dir/file")      # no entries for implied/ and dir/
        ti.mode, ti.size = 0o644, 2
        tf.addfile(ti, io.BytesIO(b"x\n"))
    d.docker("import", "-c", 'CMD ["sh"]', "-", "implied", input=buf.getvalue())
    src = d.dir / "copied"
    src.mkdir()
    (src / "f").write_text("y")
    os.chmod(src / "f", 0o644)
    os.chmod(src, 0o755)
    cid = d.out("run", "-d", "--user", "65534:65534", "--hostname", "h12", "implied",
                "sleep", "300")
    d.docker("cp", str(src), f"{cid}:/tmp/")
    out = d.out("exec", cid, "sh", "-c",
                "cat /etc/hostname /etc/hosts /etc/resolv.conf >/dev/null && "
                "stat -c %a /implied /implied/dir /implied/dir/file /bin /etc/passwd "
                "/tmp/copied /tmp/copied/f && cat /implied/dir/file /tmp/copied/f")
    assert out.split() == ["755", "755", "644", "755", "644", "755", "644", "x", "y"]
    assert stat.S_IMODE(os.stat(d.data).st_mode) == 0o700
