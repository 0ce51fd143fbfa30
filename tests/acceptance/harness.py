"""A private `dockyard daemon` driven by the real Docker CLI (and docker-py).

    d = Daemon(tmp_dir); d.start(); d.docker("run", "--rm", "busybox", "true")
    d.close()   # always: containers removed, daemon and supervisor stopped,
                # mounts under the directory detached, test cgroups removed

Each daemon has its own data root, socket, docker config dir and cgroup parent
(/dockyard-test-<rand>), so two run side by side under pytest-xdist.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from helpers.procs import processes_with_arg

DOCKER = "/usr/local/bin/docker"


def import_busybox(d: "Daemon", name: str = "busybox") -> None:
    from helpers.rootfs import build_busybox_rootfs

    root = d.dir / "bbroot"
    if not root.exists():
        build_busybox_rootfs(root)
    tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True).stdout
    d.docker("import", "-c", 'CMD ["sh"]', "-", name, input=tar)


@contextlib.contextmanager
def running(base: Path, close=None, **kw):
    """A started ``Daemon(base, **kw)`` with busybox imported, taken down at exit by
    ``close`` (default ``Daemon.close``) even if starting it failed half-way."""
    d = Daemon(base, **kw)
    try:
        d.start()
        import_busybox(d)
        yield d
    finally:
        (close or Daemon.close)(d)


class Daemon:
    def __init__(self, base: Path, *, extra_args: tuple[str, ...] = (), network: bool = False) -> None:
        self.dir = Path(base)
        self.data = self.dir / "data"
        self.sock = self.dir / "d.sock"
        self.cfg = self.dir / "cfg"
        self.cfg.mkdir(parents=True, exist_ok=True)
        self.cgroup_parent = f"/dockyard-test-{uuid.uuid4().hex[:10]}"
        # Without networking unless asked: a bridge per test daemon is slow to make and
        # must be taken down by hand (see _teardown_network).
        self.network = network
        self.extra_args = tuple(extra_args) + (() if network else ("--bridge", "none"))
        self.proc: subprocess.Popen | None = None
        self.host = f"unix://{self.sock}"
        self.env = {**os.environ, "DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.cfg)}
        self.env.pop("DOCKER_API_VERSION", None)
        self.log = self.dir / "daemon.log"

    # ---- process ---------------------------------------------------------------------
    def start(self, timeout: float = 30) -> None:
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dockyard", "daemon", "--data-root", str(self.data),
             "-H", self.host, "--cgroup-parent", self.cgroup_parent, *self.extra_args],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True)
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.log_text()}")
            r = subprocess.run([DOCKER, "version", "--format", "{{.Server.Version}}"], env=self.env,
                               capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"daemon did not answer:\n{self.log_text()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def supervisor_pid(self) -> int | None:
        from dockyard.supervisor.client import SyncClient

        try:
            return SyncClient(str(self.data / "supervisor" / "supervisor.sock")).request("ping")["pid"]
        except Exception:  # noqa: BLE001 - none running
            return None

    def holder_pid(self) -> int | None:
        """The supervisor's holder (its parent, which restarts a killed supervisor)."""
        return holder_pid(self.data / "supervisor")

    def close(self) -> None:
        try:
            if self.proc and self.proc.poll() is None:
                ids = self.docker("ps", "-aq", check=False, timeout=30).stdout.split()
                if ids:
                    self.docker("rm", "-f", *ids, check=False, timeout=120)
        finally:
            self.stop()
            holder = self.holder_pid()
            if holder:   # first, or it starts a new supervisor
                try:
                    os.kill(holder, signal.SIGKILL)
                except OSError:
                    pass
            pid = self.supervisor_pid()
            if pid:
                try:
                    os.killpg(pid, signal.SIGKILL)  # the supervisor and what is still under it
                except OSError:
                    pass
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            # a supervisor the holder had just started (not answering the ping yet)
            for pid in processes_with_arg(str(self.data / "supervisor")):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            _kill_cgroup_procs(self.cgroup_parent)
            from dockyard.snapshots.mount import mounts_under, unmount

            for _ in range(3):
                for m in reversed(mounts_under(self.dir)):
                    try:
                        unmount(m, 2)
                    except OSError:
                        pass
            _rmdir_cgroups(self.cgroup_parent)
            if self.network:
                _teardown_network(self.data)

    # ---- clients ---------------------------------------------------------------------
    def docker(self, *args: str, check: bool = True, input: bytes | str | None = None,
               timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
        text = not isinstance(input, bytes)
        r = subprocess.run([DOCKER, *args], env={**self.env, **(env or {})}, input=input,
                           capture_output=True, timeout=timeout, text=text)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {r.returncode}\nstdout: {r.stdout}\n"
                                 f"stderr: {r.stderr}\n--- daemon log ---\n{self.log_text()}")
        return r

    def out(self, *args: str, **kw) -> str:
        return self.docker(*args, **kw).stdout.strip()

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.host, timeout=120)


def holder_pid(sup_root: Path) -> int | None:
    """The pid of the holder of ``sup_root`` if one runs (from its lock file; it also
    runs while no supervisor answers)."""
    try:
        pid = int((sup_root / "holder.lock").read_text().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except (OSError, ValueError):
        return None
    if b"supervisor.holder" in cmd and str(sup_root).encode() in cmd:
        return pid
    return None


def _cgroup_dirs(parent: str) -> list[str]:
    return sorted(glob.glob(f"/sys/fs/cgroup/*{parent}") + glob.glob(f"/sys/fs/cgroup/*{parent}/**/",
                                                                        recursive=True),
                  key=lambda p: p.count("/"), reverse=True)


def _kill_cgroup_procs(parent: str) -> None:
    for d in _cgroup_dirs(parent):
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                for pid in f.read().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except OSError:
                        pass
        except OSError:
            pass


def _rmdir_cgroups(parent: str) -> None:
    for _ in range(20):
        left = []
        for d in _cgroup_dirs(parent):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                left.append(d)
        if not left:
            return
        _kill_cgroup_procs(parent)
        time.sleep(0.1)


def leftovers(d: Daemon, settle: float = 10) -> dict:
    """What a failed create may have left: records, container dirs, mounts, cgroups.

    Removals of `run --rm` containers still under way are waited for first (up to
    ``settle`` seconds): the daemon answers the CLI's `wait condition=removed` before
    their runtime state, mount, cgroups and directory are gone (containers/lifecycle.py
    `_on_exit`), so a snapshot taken right after an earlier test's `run --rm` would
    otherwise hold a directory that goes a few ms later. One that never ends stays in
    the answer."""
    from dockyard.snapshots.mount import mounts_under

    deadline = time.monotonic() + settle
    while removing_ids(d) and time.monotonic() < deadline:
        time.sleep(0.02)
    # containers made ahead for the next `run --rm` come and go on their own
    warm = set(warm_ids(d))
    cdirs = os.listdir(d.data / "containers") if (d.data / "containers").exists() else []
    cdirs = [c for c in cdirs if c not in warm]
    cgroups = [p for p in glob.glob(f"/sys/fs/cgroup/*{d.cgroup_parent}/*")
               if os.path.isdir(p) and os.path.basename(p) not in warm]
    mounts = mounts_under(d.data)
    warm |= set(warm_ids(d))   # one made meanwhile has its row before its dir and mount
    cdirs = [c for c in cdirs if c not in warm]
    cgroups = [p for p in cgroups if os.path.basename(p) not in warm]
    mounts = [m for m in mounts if not any(w in m for w in warm)]
    return {"containers": d.out("ps", "-aq"), "dirs": sorted(cdirs),
            "mounts": mounts, "cgroups": cgroups}


def warm_ids(d: Daemon) -> list[str]:
    """Ids of the daemon's warm pool (containers/warm.py). Their rows are written
    before anything else of them exists and deleted after everything else is gone."""
    return _ids_named(d, "/ warm %")


def removing_ids(d: Daemon) -> list[str]:
    """Ids of containers gone from the daemon's view whose files are still being
    removed (`run --rm`: their rows, named `/ removing <id>`, go last)."""
    return _ids_named(d, "/ removing %")


def _ids_named(d: Daemon, pattern: str) -> list[str]:
    import sqlite3

    db = d.data / "metadata.db"
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return sorted(r[0] for r in con.execute(
            "SELECT id FROM containers WHERE name LIKE ?", (pattern,)))
    finally:
        con.close()


def _teardown_network(data_root: Path) -> None:
    """Delete the bridges and iptables chains a networked test daemon made (names derived
    from its data root, so nothing else is touched)."""
    from dockyard.daemon.config import DaemonConfig

    cfg = DaemonConfig()
    cfg.data_root = str(data_root)
    settings = cfg.network_settings()
    if not settings:
        return
    bp, chain = settings["bridge_prefix"], settings["prefix"]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(bp):
            subprocess.run(["ip", "link", "del", name], capture_output=True)
    for tool, table in (("iptables", "filter"), ("iptables", "nat"), ("ip6tables", "filter")):
        dump = subprocess.run([f"{tool}-save", "-t", table], capture_output=True, text=True).stdout
        for line in dump.splitlines():
            if line.startswith("-A ") and chain in line and not line.split()[1].startswith(chain):
                subprocess.run([tool, "-t", table, "-D", *line.split()[1:]], capture_output=True)
        for line in dump.splitlines():
            if line.startswith(":" + chain):
                name = line[1:].split()[0]
                subprocess.run([tool, "-t", table, "-F", name], capture_output=True)
        for line in dump.splitlines():
            if line.startswith(":" + chain):
                subprocess.run([tool, "-t", table, "-X", line[1:].split()[0]], capture_output=True)
