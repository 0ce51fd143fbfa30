"""Debian's dockerd (20.10), started privately for a test.

    with running_dockerd(tmp_path) as d:
        d.docker("version")                  # CompletedProcess, check=True
        d.host                               # "unix:///tmp/dkd-xxxx/docker.sock"

Each instance has its own data root, exec root, socket, pidfile and config file,
no bridge and no iptables/ip-forward changes, and runs in a network namespace and a
mount namespace of its own (``unshare --net --mount``; /sys remounted there so that it
shows that namespace's interfaces, the host's cgroup hierarchies bound onto it again, as
``ip netns exec`` does but keeping the cgroups): a dockerd whose bridge is disabled
deletes any ``docker0`` it sees at start, and this one sees none of the host's.
Its containers' ``--network host`` is that namespace (only ``lo``); a test that needs
dockerd to reach a server on the host's loopback (a registry) asks for it with
``d.forward(port)``. On exit (even after a failure) the daemon and its managed
containerd are stopped, every mount under its directories is detached and the
directories are removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/local/bin/docker"


def dockerd_available() -> bool:
    return os.path.exists(DOCKERD) and os.path.exists(DOCKER)


@dataclass
class Dockerd:
    host: str
    data_root: Path
    exec_root: Path
    pid: int
    log: Path
    env: dict = field(default_factory=dict)

    def docker(self, *args: str, check: bool = True, input: bytes | None = None,
               timeout: float = 120, text: bool = False) -> subprocess.CompletedProcess:
        """Run the real docker CLI against this daemon."""
        return subprocess.run([DOCKER, *args], env=self.env, check=check, input=input,
                              capture_output=True, timeout=timeout, text=text)

    def logs(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    _listeners: list = field(default_factory=list)

    def forward(self, port: int) -> None:
        """Make 127.0.0.1:``port`` in dockerd's network namespace reach 127.0.0.1:``port``
        on the host (a registry a test started), through a relay in this process."""
        listener = _listen_in_netns(f"/proc/{self.pid}/ns/net", port)
        self._listeners.append(listener)
        threading.Thread(target=_accept_loop, args=(listener, port), daemon=True).start()

    def close_forwards(self) -> None:
        for lst in self._listeners:
            try:
                lst.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            lst.close()
        self._listeners.clear()


_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def _listen_in_netns(ns_path: str, port: int) -> socket.socket:
    """A listening TCP socket on 127.0.0.1:port in the network namespace at ns_path. It
    is made by a thread of its own that enters that namespace (a thread's network
    namespace is its own) and ends there; the socket stays in the namespace it was made in."""
    out: dict = {}

    def make() -> None:
        try:
            fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(64)
            out["sock"] = s
        except OSError as e:
            out["error"] = e

    t = threading.Thread(target=make)   # ends in the other namespace: never reused
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["sock"]


def _accept_loop(listener: socket.socket, port: int) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        try:
            up = socket.create_connection(("127.0.0.1", port), timeout=10)
            up.settimeout(None)
        except OSError:
            conn.close()
            continue
        for a, b in ((conn, up), (up, conn)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _namespaced(cmd: list[str], scratch: Path) -> list[str]:
    """``cmd`` in a new network namespace (lo up) and a new, private mount namespace in which
    /sys is a sysfs of that network namespace with the host's mounts below /sys (the cgroup
    hierarchies, securityfs, bpf...) bound onto it again."""
    tops: list[str] = []
    with open("/proc/self/mountinfo") as f:
        points = [ln.split()[4].encode().decode("unicode_escape") for ln in f]
    below = sorted({p for p in points if p.startswith("/sys/")}, key=len)
    for p in below:
        if not any(p.startswith(t + "/") for t in tops):
            tops.append(p)
    keep = scratch / "sys-keep"
    lines = ["set -e", "ip link set lo up"]
    for i, t in enumerate(tops):
        lines += [f"mkdir -p {keep}/{i}", f"mount --rbind {shlex.quote(t)} {keep}/{i}"]
    # the old /sys goes entirely (a mount table listing it twice confuses runtimes); the
    # kept trees come back by a new rbind, so they are listed after the new /sys, in order
    lines += ["umount -l /sys", "mount -t sysfs sysfs /sys"]
    for i, t in enumerate(tops):
        lines += [f"mount --rbind {keep}/{i} {shlex.quote(t)}", f"umount -l {keep}/{i}"]
    lines.append('exec "$@"')
    return ["unshare", "--net", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", "\n".join(lines), "sh", *cmd]


def _mounts_under(paths: list[Path]) -> list[str]:
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].encode().decode("unicode_escape")
            for p in paths:
                if mnt == str(p) or mnt.startswith(str(p) + "/"):
                    found.append(mnt)
    return found


def _unmount_all(paths: list[Path]) -> None:
    for _ in range(5):
        mounts = _mounts_under(paths)
        if not mounts:
            return
        for mnt in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mnt], capture_output=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours still answers kill(0): check its state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().split(")")[-1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(d))
    return out


@contextlib.contextmanager
def running_dockerd(tmp_path: Path, extra_args: tuple[str, ...] = (), timeout: float = 60):
    """Start dockerd with private directories; yield a :class:`Dockerd`."""
    if not dockerd_available():
        import pytest
        pytest.skip("dockerd (docker.io) or /usr/local/bin/docker is not installed")
    tmp_path = Path(tmp_path)
    data_root = tmp_path / "dockerd-data"
    data_root.mkdir(parents=True, exist_ok=True)
    # unix socket paths are limited to 108 bytes: keep the exec root short
    short = Path(tempfile.mkdtemp(prefix="dkd-", dir="/tmp"))
    exec_root = short / "exec"
    sock = short / "docker.sock"
    pidfile = short / "docker.pid"
    config = short / "daemon.json"
    config.write_text(json.dumps({}))
    log = tmp_path / "dockerd.log"
    cli_config = short / "cli"
    cli_config.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(cli_config))
    cmd = [DOCKERD, "--data-root", str(data_root), "--exec-root", str(exec_root),
           "-H", f"unix://{sock}", "--pidfile", str(pidfile), "--config-file", str(config),
           "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip-forward=false",
           "--userland-proxy=false", *extra_args]
    logf = open(log, "wb")
    proc = subprocess.Popen(_namespaced(cmd, short), stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")})
    d = Dockerd(host=f"unix://{sock}", data_root=data_root, exec_root=exec_root, pid=proc.pid,
                log=log, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {proc.returncode}:\n{d.logs()[-4000:]}")
            if sock.exists():
                r = d.docker("version", "--format", "{{.Server.Version}}", check=False, timeout=20)
                if r.returncode == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not become ready:\n{d.logs()[-4000:]}")
            time.sleep(0.2)
        yield d
    finally:
        d.close_forwards()
        # dockerd's managed containerd (and its shims) are its children: stop them too
        kids = _children(proc.pid)
        grandkids = [g for k in kids for g in _children(k)]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in kids + grandkids:
            if _pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        logf.close()
        _unmount_all([data_root, short])
        shutil.rmtree(short, ignore_errors=True)
        shutil.rmtree(data_root, ignore_errors=True)
