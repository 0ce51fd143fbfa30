"""A real `dockyard daemon`, started as a subprocess for a test.

    with running_daemon(tmp_path) as d:      # or the `dockyard_daemon` fixture
        d.host                               # "unix:///tmp/dy-xxxx/d.sock"
        d.docker("images")                   # the REAL docker CLI -> CompletedProcess (text)
        d.dockyard("images")                 # our CLI (python -m dockyard) -> CompletedProcess
        d.client()                           # dockyard.client.Client
        d.stop()                             # SIGTERM, wait; returns the exit code

Each daemon has its own data root, socket, pidfile and docker CLI config dir in
a short directory under /tmp (unix socket paths are limited to 108 bytes; the
supervisor's socket lives in the data root), a log file under tmp_path, and
everything is torn down even if the test fails: the daemon (SIGTERM, then
SIGKILL), the container supervisor it may have started, mounts below the data
root, and the directories.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DOCKER = "/usr/local/bin/docker"


class _UnixConn(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 5):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def unix_request(sock: str | Path, method: str, path: str, body: bytes | None = None,
                 headers: dict | None = None, timeout: float = 30
                 ) -> tuple[int, dict, bytes]:
    """One raw HTTP request over a unix socket: (status, headers, body)."""
    conn = _UnixConn(str(sock), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


@dataclass
class DockyardDaemon:
    host: str
    sock: Path
    data_root: Path
    pidfile: Path
    base: Path
    log: Path
    proc: subprocess.Popen
    env: dict = field(default_factory=dict)
    cmd: list = field(default_factory=list)

    def docker(self, *args: str, check: bool = False, input: bytes | str | None = None,
               timeout: float = 120, text: bool = True, env: dict | None = None
               ) -> subprocess.CompletedProcess:
        """Run the real Docker CLI against this daemon."""
        if isinstance(input, str) and not text:
            input = input.encode()
        return subprocess.run([DOCKER, *args], env={**self.env, **(env or {})}, check=check,
                              input=input, capture_output=True, timeout=timeout, text=text)

    def dockyard(self, *args: str, check: bool = False, input: bytes | str | None = None,
                 timeout: float = 120, text: bool = True, env: dict | None = None
                 ) -> subprocess.CompletedProcess:
        """Run our CLI (`python -m dockyard ...`) against this daemon."""
        if isinstance(input, str) and not text:
            input = input.encode()
        return subprocess.run([sys.executable, "-m", "dockyard", *args],
                              env={**self.env, **(env or {})}, check=check, input=input,
                              capture_output=True, timeout=timeout, text=text)

    def client(self):
        from dockyard.client import Client

        return Client(self.host, env={})

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None, timeout: float = 30) -> tuple[int, dict, bytes]:
        return unix_request(self.sock, method, path, body, headers, timeout)

    def logs(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def restart(self, kill: bool = False, timeout: float = 30) -> None:
        """Stop the daemon (SIGTERM, or SIGKILL with ``kill``) and start it again on the
        same data root and socket; waits until it answers."""
        if kill:
            self.proc.kill()
            self.proc.wait()
        else:
            self.stop()
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(self.cmd, stdout=logf, stderr=subprocess.STDOUT,
                                         env=self.env, start_new_session=True)
        _wait_ready(self, timeout)

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _stop_supervisor(data_root: Path) -> None:
    path = data_root / "supervisor" / "supervisor.sock"
    if not path.exists():
        return
    try:
        from dockyard.supervisor import client as supclient

        reply = supclient.SyncClient(str(path)).request("ping")
    except Exception:  # noqa: BLE001 - nothing answers: nothing to stop
        return
    # the holder (its parent) passes SIGTERM on; killed first, it restarts nothing
    for pid in [p for p in (reply.get("holder"), reply["pid"]) if p]:
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _unmount_below(path: Path) -> None:
    for _ in range(5):
        found = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mnt = line.split()[4].encode().decode("unicode_escape")
                if mnt == str(path) or mnt.startswith(str(path) + "/"):
                    found.append(mnt)
        if not found:
            return
        for m in sorted(found, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)


def daemon_env(host: str, cli_config: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=host, DOCKER_CONFIG=str(cli_config))
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _wait_ready(d: DockyardDaemon, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if d.proc.poll() is not None:
            raise RuntimeError(f"dockyard daemon exited with {d.proc.returncode}:\n"
                               f"{d.logs()[-4000:]}")
        try:
            if d.request("GET", "/_ping", timeout=5)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"dockyard daemon did not become ready:\n{d.logs()[-4000:]}")
        time.sleep(0.05)


def _daemon_knows(key: str) -> bool:
    try:
        from dockyard.daemon.config import FILE_KEYS
    except ImportError:
        return False
    return key in FILE_KEYS


@contextlib.contextmanager
def running_daemon(tmp_path: Path, extra_args: tuple[str, ...] = (), timeout: float = 30,
                   hosts: tuple[str, ...] | None = None, wait: bool = True,
                   networking: bool = False):
    """Start `dockyard daemon` with private directories; yield a :class:`DockyardDaemon`.

    ``hosts``: the -H values (default: one unix socket in the private directory).
    With ``wait=False`` the fixture does not wait for the socket (for daemons
    expected to fail at startup: look at ``d.proc``).  Without ``networking``
    the daemon runs with ``--bridge none`` (no bridge, no firewall rules).
    """
    tmp_path = Path(tmp_path)
    base = Path(tempfile.mkdtemp(prefix="dy-", dir="/tmp"))
    data_root = base / "root"
    sock = base / "d.sock"
    pidfile = base / "d.pid"
    cli_config = base / "cli"
    cli_config.mkdir()
    log = tmp_path / f"dockyard-daemon-{base.name}.log"
    host = f"unix://{sock}"
    hs = list(hosts) if hosts is not None else [host]
    cmd = [sys.executable, "-m", "dockyard", "daemon", "--data-root", str(data_root),
           "--pidfile", str(pidfile), "--config-file", "/dev/null"]
    for h in hs:
        cmd += ["-H", h]
    if not networking and _daemon_knows("bridge"):
        cmd += ["--bridge", "none"]
    cgroup_parent = f"/dockyard-test-{base.name}"
    if _daemon_knows("cgroup-parent") and "--cgroup-parent" not in extra_args:
        cmd += ["--cgroup-parent", cgroup_parent]
    cmd += list(extra_args)
    env = daemon_env(host, cli_config)
    logf = open(log, "wb")
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    d = DockyardDaemon(host=host, sock=sock, data_root=data_root, pidfile=pidfile, base=base,
                       log=log, proc=proc, env=env, cmd=cmd)
    try:
        if wait:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"dockyard daemon exited with {proc.returncode}:\n"
                                       f"{d.logs()[-4000:]}")
                if sock.exists() or hosts is not None:
                    try:
                        if hosts is None or host in hs:
                            status, _, _ = d.request("GET", "/_ping", timeout=5)
                        else:
                            status = 200 if "Daemon has completed initialization" in d.logs() \
                                else 0
                        if status == 200:
                            break
                    except OSError:
                        pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dockyard daemon did not become ready:\n"
                                       f"{d.logs()[-4000:]}")
                time.sleep(0.05)
        yield d
    finally:
        d.stop()
        logf.close()
        _stop_supervisor(data_root)
        _unmount_below(base)
        shutil.rmtree(base, ignore_errors=True)
        import glob

        for cg in glob.glob(f"/sys/fs/cgroup/*{cgroup_parent}"):
            try:
                os.rmdir(cg)
            except OSError:
                pass
