"""Helpers for the runtime tests (a module of its own: `from conftest import` can
pick another directory's conftest.py when the whole suite runs in one session).

``Runc`` is a small driver: every test gets its own --root under tmp_path,
ids are random, and on teardown every container left in that root is
force-deleted (processes killed, cgroups removed) even if the test failed.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from dockyard.runtime.spec import make_spec, write_bundle

RUNC = [sys.executable, "-m", "dockyard.runtime.cli"]

DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


def docker_caps() -> dict:
    return {s: list(DOCKER_CAPS) for s in ("bounding", "effective", "permitted")}


def cgroup_dirs(cid: str) -> list[str]:
    """Every cgroup directory named after the container, at any depth up to 8
    (v1 controllers, a v2 tree, a cgroupsPath under our own cgroup)."""
    found: list[str] = []
    for depth in range(1, 9):
        found += glob.glob("/sys/fs/cgroup/" + "*/" * depth + cid)
    return found


def reap(pid: int, timeout: float = 20) -> int | None:
    """Wait for a (reparented) container process; its exit status or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if got == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    raise TimeoutError(f"process {pid} did not exit")


class Runc:
    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp
        self.n = 0
        self.ids: set[str] = set()   # every id handed out, for the cgroup sweep

    def new_id(self) -> str:
        cid = "t" + uuid.uuid4().hex[:12]
        self.ids.add(cid)
        return cid

    def cmd(self, *args: str, check: bool = False, timeout: float = 60, **kw):
        """Run the runtime; output goes through files, not pipes: a created
        container inherits our stdio and would hold a pipe open forever."""
        kw.setdefault("text", True)
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            r = subprocess.run([*RUNC, "--root", str(self.root), *args], timeout=timeout,
                               stdout=out, stderr=err, **kw)
            out.seek(0)
            err.seek(0)
            r.stdout, r.stderr = out.read(), err.read()
        if check and r.returncode != 0:
            raise AssertionError(f"dockyard-runc {' '.join(args)} failed ({r.returncode}):\n"
                                 f"{r.stdout}\n{r.stderr}")
        return r

    def bundle(self, rootfs: Path, args: list[str], **overrides) -> Path:
        self.n += 1
        b = self.tmp / f"bundle{self.n}"
        write_bundle(str(b), make_spec(str(rootfs), args, **overrides))
        return b

    def run(self, bundle: Path, cid: str | None = None, *flags: str, **kw):
        return self.cmd("run", "--bundle", str(bundle), *flags, cid or self.new_id(), **kw)

    def state(self, cid: str) -> dict:
        r = self.cmd("state", cid, check=True)
        return json.loads(r.stdout)

    def saved(self, cid: str) -> dict:
        return json.loads((self.root / cid / "state.json").read_text())

    def start_detached(self, bundle: Path, cid: str | None = None) -> str:
        """create + start; returns the id (init is reparented to the test)."""
        cid = cid or self.new_id()
        self.cmd("create", "--bundle", str(bundle), cid, check=True)
        self.cmd("start", cid, check=True)
        return cid

    def cleanup(self) -> None:
        try:
            self._delete_all()
        finally:
            # a create that failed half-way (or a test that stopped mid-way) may leave a
            # container's cgroup under the runtime's default parent: empty ones go
            for cid in self.ids:
                for d in glob.glob(f"/sys/fs/cgroup/*/dockyard/{cid}") + \
                        glob.glob(f"/sys/fs/cgroup/dockyard/{cid}"):
                    try:
                        os.rmdir(d)
                    except OSError:
                        pass

    def _delete_all(self) -> None:
        if not self.root.exists():
            return
        for cid in os.listdir(self.root):
            self.ids.add(cid)
            if not (self.root / cid).is_dir():
                continue
            try:
                pid = self.saved(cid)["pid"]
            except (OSError, ValueError, KeyError):
                pid = 0
            self.cmd("delete", "--force", cid)
            if pid > 0:
                try:
                    reap(pid, timeout=5)
                except TimeoutError:
                    pass
