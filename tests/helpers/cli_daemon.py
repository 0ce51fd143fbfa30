"""A private `dockyard daemon` for client tests, with our CLI and the real docker CLI.

    with running_daemon(tmp_path) as d:
        d.dockyard("ps", "-a")             # CompletedProcess (text), our CLI
        d.docker("ps", "-a")               # the same with /usr/local/bin/docker
        d.import_busybox(rootfs_dir)       # `docker import` of a directory as busybox:latest

Each instance has its own data root, socket, cgroup parent and docker config dir. On exit,
even after a failure: every container is removed, the daemon is stopped, the supervisor it
started is killed, everything mounted under the directory is detached and the cgroups made
for its containers are removed.
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
from dataclasses import dataclass, field
from pathlib import Path

DOCKER = "/usr/local/bin/docker"


@dataclass
class CliDaemon:
    root: Path
    host: str
    proc: subprocess.Popen
    cgroup_parent: str
    env: dict = field(default_factory=dict)

    def dockyard(self, *args: str, input: str | bytes | None = None, timeout: float = 60,
                 check: bool = False, text: bool = True, env: dict | None = None
                 ) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dockyard", *args],
                              env={**self.env, **(env or {})}, input=input, text=text,
                              capture_output=True, timeout=timeout, check=check)

    def docker(self, *args: str, input: str | bytes | None = None, timeout: float = 60,
               check: bool = False, text: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *args], env=self.env, input=input, text=text,
                              capture_output=True, timeout=timeout, check=check)

    def import_busybox(self, rootfs: Path, ref: str = "busybox") -> None:
        tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True,
                             check=True).stdout
        r = self.docker("import", "-c", 'CMD ["sh"]', "-", ref, input=tar, text=False)
        assert r.returncode == 0, r.stderr

    def logs(self) -> str:
        try:
            return (self.root / "daemon.log").read_text(errors="replace")
        except OSError:
            return ""

    def remove_all(self) -> None:
        ids = self.docker("ps", "-aq", timeout=30).stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, timeout=60)


def _wait_socket(path: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("daemon did not start")


def _daemon_knows(key: str) -> bool:
    try:
        from dockyard.daemon.config import FILE_KEYS
    except ImportError:
        return False
    return key in FILE_KEYS


@contextlib.contextmanager
def running_daemon(root: Path):
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sock = root / "d.sock"
    host = f"unix://{sock}"
    cgroup_parent = f"/dockyard-clitest-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=host, DOCKER_CONFIG=str(root / "dcfg"), DOCKER_CLI_HINTS="false")
    src = str(Path(__file__).resolve().parents[2] / "src")  # this tree's dockyard, always
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    (root / "dcfg").mkdir(exist_ok=True)
    log = open(root / "daemon.log", "ab")
    cmd = [sys.executable, "-m", "dockyard", "daemon", "--data-root", str(root / "data"),
           "-H", host, "--cgroup-parent", cgroup_parent, "--config-file", "/dev/null"]
    if _daemon_knows("bridge"):
        cmd += ["--bridge", "none"]  # no default bridge: daemons in parallel never collide
    proc = subprocess.Popen(cmd,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    log.close()
    d = CliDaemon(root=root, host=host, proc=proc, cgroup_parent=cgroup_parent, env=env)
    try:
        _wait_socket(str(sock), proc)
        yield d
    finally:
        _teardown(d)


def _teardown(d: CliDaemon) -> None:
    with contextlib.suppress(Exception):
        if d.proc.poll() is None:
            d.remove_all()
    if d.proc.poll() is None:
        d.proc.send_signal(signal.SIGTERM)
        try:
            d.proc.wait(20)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            d.proc.wait(10)
    sup_root = d.root / "data" / "supervisor"
    with contextlib.suppress(Exception):
        from dockyard.supervisor.client import SyncClient, socket_path

        reply = SyncClient(socket_path(str(sup_root))).request("ping")
        # its holder first (else it starts a new supervisor), then the supervisor
        for pid in [p for p in (reply.get("holder"), reply["pid"]) if p]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    # container processes left behind (the supervisor is gone): kill them by cgroup
    for procs in glob.glob(f"/sys/fs/cgroup/*{d.cgroup_parent}/**/cgroup.procs", recursive=True):
        with contextlib.suppress(OSError):
            for pid in open(procs).read().split():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(Exception):
        from dockyard.snapshots.mount import unmount_all

        unmount_all(d.root)
    for _ in range(20):
        dirs = sorted(glob.glob(f"/sys/fs/cgroup/*{d.cgroup_parent}/**/", recursive=True),
                      key=len, reverse=True)
        if not dirs:
            break
        for c in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(c)
        time.sleep(0.05)
