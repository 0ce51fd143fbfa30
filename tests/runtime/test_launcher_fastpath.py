"""The launcher's sh fast path (runtime/launcher.py, runtime/fastfile.py) on real containers.

The launcher under test is ``launcher.render`` with a Python part that first
notes each call in a file: so each test knows whether the shell served a call
or handed it to the Python runtime. ``PY_REFUSES`` makes that Python part exit
99 instead of running the runtime (to show what the shell alone did).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from runtime_helpers import Runc, cgroup_dirs, reap

from dockyard.runtime import launcher, runtime_argv


class ShRunc(Runc):
    """The Runc driver, through a launcher whose Python part is noted in ``calls``."""

    def __init__(self, root: Path, tmp: Path) -> None:
        super().__init__(root, tmp)
        self.calls = tmp / "python-calls"
        argv = runtime_argv()
        code = (f"import posix; fd = posix.open({str(self.calls)!r}, posix.O_WRONLY | "
                f"posix.O_APPEND | posix.O_CREAT, 0o600); posix.write(fd, b'py\\n'); "
                f"posix.close(fd)\n"
                f"if posix.environ.get(b'PY_REFUSES'): posix._exit(99)\n" + argv[-1])
        self.launcher = tmp / "dockyard-runc"
        self.launcher.write_text(launcher.render(argv[0], code))
        self.launcher.chmod(0o755)

    def sh(self, *args: str, refuse: bool = False):
        """Run the launcher; (result, whether its Python part ran)."""
        before = self.python_calls()
        env = {"PATH": "/usr/bin:/bin"}
        if refuse:
            env["PY_REFUSES"] = "1"
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            r = subprocess.run([str(self.launcher), "--root", str(self.root), "--log",
                                str(self.tmp / "log.json"), "--log-format", "json", *args],
                               stdout=out, stderr=err, text=True, env=env, timeout=60)
            out.seek(0)
            err.seek(0)
            r.stdout, r.stderr = out.read(), err.read()
        return r, self.python_calls() > before

    def python_calls(self) -> int:
        try:
            return len(self.calls.read_text().splitlines())
        except FileNotFoundError:
            return 0

    def py_state(self, cid: str) -> str:
        """`state` as the Python runtime prints it."""
        return self.cmd("state", cid, check=True).stdout


@pytest.fixture
def shrunc(tmp_path):
    r = ShRunc(tmp_path / "state", tmp_path)
    try:
        yield r
    finally:
        r.cleanup()


HOSTILE = {"a'b": "$(touch /tmp/dyk-pwned)`id`\n\\\"\u00e9'\"'", "x": "", "%s%d": "\t"}


def _running(r: ShRunc, rootfs: Path, **spec) -> tuple[str, int]:
    b = r.bundle(rootfs, ["sleep", "1000"], **spec)
    cid = r.start_detached(b)
    return cid, r.state(cid)["pid"]


def test_start_and_stop_sequence_served_by_sh(shrunc, busybox_template, tmp_path):
    """start, and the calls containerd's shim makes to stop a container (kill 9,
    kill --all 9, delete, delete --force), none of them starting Python; state as
    Python prints it."""
    r = shrunc
    out = tmp_path / "rootfs-out"
    b = r.bundle(busybox_template, ["sh", "-c", "echo started > /out/x; exec sleep 1000"],
                 annotations=HOSTILE,
                 mounts=[*default_mounts(), {"destination": "/out", "type": "bind",
                                             "source": str(_mkdir(out)), "options": ["rbind"]}])
    cid = r.new_id()
    r.cmd("create", "--bundle", str(b), cid, check=True)
    pid = r.state(cid)["pid"]
    res, py = r.sh("start", cid)
    assert (res.returncode, py) == (0, False), res.stderr
    assert not (r.root / cid / "exec.fifo").exists()
    deadline = time.monotonic() + 20
    # the shell makes the file, then writes to it: wait for the line itself
    while time.monotonic() < deadline and not ((out / "x").exists()
                                                and (out / "x").read_text() == "started\n"):
        time.sleep(0.02)
    assert (out / "x").read_text() == "started\n"
    dirs = cgroup_dirs(cid)
    assert dirs and (r.root / cid / "fast").exists()
    res, py = r.sh("state", cid)
    assert (res.returncode, py) == (0, False), res.stderr
    assert res.stdout == r.py_state(cid)
    assert json.loads(res.stdout)["status"] == "running"
    res, py = r.sh("kill", cid, "9")
    assert (res.returncode, py) == (0, False), res.stderr
    assert reap(pid) == -signal.SIGKILL
    for _ in range(2):
        res, py = r.sh("kill", "--all", cid, "9")
        assert (res.returncode, py) == (0, False), res.stderr
    res, py = r.sh("state", cid)
    assert (res.returncode, py) == (0, False)
    assert res.stdout == r.py_state(cid)
    assert json.loads(res.stdout)["status"] == "stopped" and json.loads(res.stdout)["pid"] == 0
    res, py = r.sh("delete", cid)
    assert (res.returncode, py) == (0, False), res.stderr
    assert not (r.root / cid).exists()
    assert not [d for d in dirs if os.path.exists(d)]
    res, py = r.sh("delete", "--force", cid)
    assert (res.returncode, py, res.stderr) == (0, False, "")
    assert not os.path.exists("/tmp/dyk-pwned")


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def default_mounts() -> list:
    from dockyard.runtime.spec import default_spec
    return default_spec()["mounts"]


def test_start_cases_left_to_python(shrunc, busybox_template, tmp_path):
    """start with poststart hooks, of a running container, of one whose init died:
    Python's (the hook runs; the errors are Python's)."""
    r = shrunc
    mark = tmp_path / "poststart-ran"
    hooks = {"poststart": [{"path": "/bin/sh", "args": ["sh", "-c", f"echo ran > {mark}"]}]}
    b = r.bundle(busybox_template, ["sleep", "1000"], hooks=hooks)
    cid = r.new_id()
    r.cmd("create", "--bundle", str(b), cid, check=True)
    res, py = r.sh("start", cid)
    assert (res.returncode, py) == (0, True), res.stderr
    assert mark.read_text() == "ran\n" and r.state(cid)["status"] == "running"
    res, py = r.sh("start", cid)
    assert (res.returncode, py) == (1, True) and "already running" in res.stderr
    b2 = r.bundle(busybox_template, ["sleep", "1000"])
    cid2 = r.new_id()
    r.cmd("create", "--bundle", str(b2), cid2, check=True)
    pid2 = r.state(cid2)["pid"]
    os.kill(pid2, signal.SIGKILL)
    reap(pid2)
    res, py = r.sh("start", cid2)
    assert (res.returncode, py) == (1, True) and "stopped" in res.stderr, res.stderr


def test_created_and_paused_states_match_python(shrunc, busybox_template):
    r = shrunc
    b = r.bundle(busybox_template, ["sleep", "1000"], annotations=HOSTILE)
    cid = r.new_id()
    r.cmd("create", "--bundle", str(b), cid, check=True)
    res, py = r.sh("state", cid)
    assert (res.returncode, py) == (0, False)
    assert res.stdout == r.py_state(cid) and json.loads(res.stdout)["status"] == "created"
    r.cmd("start", cid, check=True)
    r.cmd("pause", cid, check=True)
    try:
        res, py = r.sh("state", cid)
        assert (res.returncode, py) == (0, False)
        assert res.stdout == r.py_state(cid) and json.loads(res.stdout)["status"] == "paused"
    finally:
        r.cmd("resume", cid, check=True)
    # deleting a created container (init alive: it is killed, as runc does) is Python's
    cid2 = r.new_id()
    r.cmd("create", "--bundle", str(b), cid2, check=True)
    pid2 = r.state(cid2)["pid"]
    res, py = r.sh("delete", cid2)
    assert (res.returncode, py) == (0, True), res.stderr
    reap(pid2)
    assert not (r.root / cid2).exists() and not cgroup_dirs(cid2)


def test_reused_pid_is_never_signalled(shrunc, busybox_template):
    """The recorded pid now names another process (its start time differs from the
    recorded one): the shell does not signal it, it hands the call to Python."""
    r = shrunc
    cid, pid = _running(r, busybox_template)
    other = subprocess.Popen(["sleep", "1000"])
    try:
        fast = r.root / cid / "fast"
        text = fast.read_text()
        assert f"dy_pid={pid}\n" in text
        fast.write_text(text.replace(f"dy_pid={pid}\n", f"dy_pid={other.pid}\n"))
        res, py = r.sh("kill", cid, "9", refuse=True)
        assert (res.returncode, py) == (99, True)
        time.sleep(0.1)
        assert other.poll() is None, "the other process was signalled"
        res, py = r.sh("state", cid, refuse=True)
        assert (res.returncode, py) == (0, False)
        assert json.loads(res.stdout)["status"] == "stopped"
    finally:
        other.kill()
        other.wait()
    # the start time differs for the recorded pid itself: not signalled either
    fast.write_text(text.replace("dy_start=", "dy_start=1"))
    res, py = r.sh("kill", cid, "9", refuse=True)
    assert (res.returncode, py) == (99, True)
    time.sleep(0.1)
    assert r.state(cid)["status"] == "running"


def test_dead_init_is_stopped_and_not_signalled(shrunc, busybox_template):
    r = shrunc
    cid, pid = _running(r, busybox_template)
    os.kill(pid, signal.SIGKILL)
    reap(pid)
    res, py = r.sh("state", cid)
    assert (res.returncode, py) == (0, False)
    assert json.loads(res.stdout)["status"] == "stopped" and res.stdout == r.py_state(cid)
    # kill of a stopped container: Python's error, as containerd reads it
    res, py = r.sh("kill", cid, "9")
    assert (res.returncode, py) == (1, True)
    assert "container not running" in res.stderr
    log = (r.tmp / "log.json").read_text().splitlines()[-1]
    assert json.loads(log)["msg"] == "container not running"


def test_delete_with_poststop_hooks_goes_to_python(shrunc, busybox_template, tmp_path):
    r = shrunc
    mark = tmp_path / "poststop-ran"
    hooks = {"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"echo ran > {mark}"]}]}
    cid, pid = _running(r, busybox_template, hooks=hooks)
    res, py = r.sh("kill", cid, "9")
    assert (res.returncode, py) == (0, False)
    reap(pid)
    res, py = r.sh("delete", cid)
    assert (res.returncode, py) == (0, True), res.stderr
    assert mark.read_text() == "ran\n"
    assert not (r.root / cid).exists()


def test_processes_left_in_the_cgroup_go_to_python(shrunc, busybox_template):
    """init died but an exec'd process lives on in the cgroup: kill --all and
    delete are Python's (freeze, signal, wait); the shell removes nothing."""
    r = shrunc
    # no PID namespace of its own: the exec'd process outlives init
    cid, pid = _running(r, busybox_template, hostname="",
                        linux={"namespaces": [{"type": t} for t in ("mount", "uts", "ipc")]})
    r.cmd("exec", "--detach", cid, "sleep", "1000", check=True)
    os.kill(pid, signal.SIGKILL)
    reap(pid)
    res, py = r.sh("delete", cid, refuse=True)
    assert (res.returncode, py) == (99, True)
    assert (r.root / cid / "state.json").exists() and cgroup_dirs(cid)
    res, py = r.sh("kill", "--all", cid, "9")
    assert (res.returncode, py) == (0, True), res.stderr
    res, py = r.sh("delete", "--force", cid)
    assert res.returncode == 0, res.stderr
    assert not (r.root / cid).exists() and not cgroup_dirs(cid)


@pytest.mark.parametrize("args", [
    ["--debug", "kill", "{cid}", "9"],
    ["--systemd-cgroup", "state", "{cid}"],
    ["kill", "{cid}"],                      # the default signal: Python's business
    ["kill", "{cid}", "KILL"],
    ["kill", "{cid}", "09"],
    ["kill", "--all=true", "{cid}", "9"],
    ["delete", "{cid}", "{cid}"],
    ["state", "../{cid}"],
    ["list"],
])
def test_unusual_calls_go_to_python(shrunc, busybox_template, args):
    r = shrunc
    cid, pid = _running(r, busybox_template)
    res, py = r.sh(*[a.format(cid=cid) for a in args], refuse=True)
    assert (res.returncode, py) == (99, True)
    assert r.state(cid)["status"] == "running"


@pytest.mark.parametrize("how", ["missing", "other owner", "other version"])
def test_no_usable_fast_file_goes_to_python(shrunc, busybox_template, how):
    r = shrunc
    cid, pid = _running(r, busybox_template)
    fast = r.root / cid / "fast"
    if how == "missing":
        fast.unlink()
    elif how == "other owner":      # not written by this user's runtime: never sourced
        fast.write_text("touch /tmp/dyk-pwned\n" + fast.read_text())
        os.chown(fast, 65534, 65534)
    else:
        fast.write_text(fast.read_text().replace("dy_v=1\n", "dy_v=0\n"))
    for args in (["state", cid], ["kill", cid, "9"], ["delete", "--force", cid]):
        res, py = r.sh(*args, refuse=True)
        assert (res.returncode, py) == (99, True)
    assert not os.path.exists("/tmp/dyk-pwned")
    assert r.state(cid)["status"] == "running"
    res, py = r.sh("delete", "--force", "no-such-container", refuse=True)
    assert (res.returncode, py, res.stderr) == (0, False, "")


def _fake_created(r: ShRunc, cid: str, proc: subprocess.Popen) -> Path:
    """A state directory whose 'init' is ``proc`` (a process of the test's), with an
    exec FIFO, as create leaves it."""
    from dockyard.runtime.state import proc_stat
    d = r.root / cid
    d.mkdir(parents=True)
    (d / "state.json").write_text("{}")
    os.mkfifo(d / "exec.fifo", 0o622)
    cg = r.tmp / "no-cgroup"
    (d / "fast").write_text(f"dy_v=1\ndy_pid={proc.pid}\ndy_start={proc_stat(proc.pid)[1]}\n"
                            f"dy_hooks=0\ndy_poststart=0\ndy_procs='{cg}'\ndy_freezer=''\n"
                            f"dy_frozen=FROZEN\ndy_cgroups='{cg}'\ndy_pre='{{'\ndy_post='}}'\n")
    return d


@pytest.mark.parametrize("delay", [0, 0.3])
def test_start_waits_for_a_late_byte(shrunc, delay):
    """init opens the FIFO and writes its byte some time after start began: the
    shell's start waits for it (reading without blocking, again while init lives)."""
    r = shrunc
    cid = r.new_id()
    init = None
    r.root.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(["sleep", "30"])
    try:
        d = _fake_created(r, cid, holder)
        init = subprocess.Popen(["sh", "-c", f"sleep {delay}; printf 0 > {d}/exec.fifo"])
        res, py = r.sh("start", cid, refuse=True)
        assert (res.returncode, py) == (0, False), res.stderr
        assert init.wait(10) == 0
        assert not (d / "exec.fifo").exists()
    finally:
        holder.kill()
        holder.wait()
        if init is not None and init.poll() is None:
            init.kill()
            init.wait()


def test_start_gives_up_when_init_dies_without_its_byte(shrunc):
    r = shrunc
    cid = r.new_id()
    r.root.mkdir(parents=True, exist_ok=True)
    init = subprocess.Popen(["sleep", "0.5"])
    try:
        d = _fake_created(r, cid, init)
        t0 = time.monotonic()
        res, py = r.sh("start", cid, refuse=True)
        assert (res.returncode, py) == (99, True)
        assert time.monotonic() - t0 < 10
        assert (d / "exec.fifo").exists()
    finally:
        init.kill()
        init.wait()


def test_python_gets_the_callers_environment_unchanged(tmp_path):
    """The shell's own variables (dy_*) and its PATH/IFS do not reach the Python
    runtime: it sees the caller's environment as it was."""
    script = tmp_path / "dockyard-runc"
    code = ("import posix, sys\n"
            "for k in sorted(posix.environ): sys.stdout.write(k.decode() + '=' + "
            "posix.environ[k].decode() + chr(10))\n")
    script.write_text(launcher.render(sys.executable, code))
    script.chmod(0o755)
    env = {"PATH": "/nowhere:/usr/bin:/bin", "root": "r", "dir": "d", "cmd": "c", "id": "i",
           "s": "s", "LC_ALL": "C.UTF-8"}
    root = tmp_path / "root"
    (root / "x").mkdir(parents=True)
    (root / "x" / "state.json").write_text("{}")
    (root / "x" / "fast").write_text("dy_v=1\ndy_pid=1\ndy_start=1\n")
    for args in (["--version"], ["--root", str(root), "kill", "x", "9"],
                 ["--root", str(root), "state", "nope"]):
        r = subprocess.run([str(script), *args], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        got = dict(line.split("=", 1) for line in r.stdout.splitlines())
        got.pop("PWD", None)
        assert got == env, got


def _wait_blocked_in_fifo_open(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/wchan") as f:
            if f.read().strip() == "wait_for_partner":
                return
        time.sleep(0.01)
    raise TimeoutError(f"process {pid} did not block opening the FIFO")


def test_start_of_a_waiting_init_runs_no_other_program(shrunc):
    """init already waits in its open of the FIFO (the usual case when the shim
    calls start): the shell releases it and reads the byte with its own builtins
    (a blocking read, no polling with dd and sleep); the only program it runs is the
    rm of the FIFO. Counted in a PID namespace of the call's own: the process
    made right after the launcher gets pid 4 (1: the wrapper, 2: the launcher, 3: rm)."""
    r = shrunc
    cid = r.new_id()
    r.root.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(["sleep", "30"])
    writer = None
    try:
        d = _fake_created(r, cid, holder)
        writer = subprocess.Popen(["sh", "-c", f"printf 0 > {d}/exec.fifo"])
        _wait_blocked_in_fifo_open(writer.pid)
        res = subprocess.run(
            ["unshare", "--pid", "--fork", "sh", "-c",
             '"$0" --root "$1" start "$2"; rc=$?; sh -c \'echo $$\'; exit $rc',
             str(r.launcher), str(r.root), cid],
            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin",
                                                            "PY_REFUSES": "1"})
        assert (res.returncode, r.python_calls()) == (0, 0), res.stderr
        assert writer.wait(10) == 0
        assert not (d / "exec.fifo").exists()
        assert res.stdout.split() == ["4"], res.stdout
    finally:
        for p in (holder, writer):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_start_gives_up_when_init_dies_holding_the_fifo_open(shrunc):
    """init's open of the FIFO completed (start released it) but it dies before
    writing its byte: the shell's blocking read ends (end-of-file: no writer is
    left) and the call goes to Python, which says why; nothing waits for ever."""
    r = shrunc
    cid = r.new_id()
    d = r.root / cid
    d.mkdir(parents=True)
    os.mkfifo(d / "exec.fifo", 0o622)
    init = subprocess.Popen(["sh", "-c", f"exec 3> {d}/exec.fifo; sleep 0.5"])
    try:
        from dockyard.runtime.state import proc_stat
        (d / "state.json").write_text("{}")
        cg = r.tmp / "no-cgroup"
        (d / "fast").write_text(f"dy_v=1\ndy_pid={init.pid}\ndy_start={proc_stat(init.pid)[1]}\n"
                                f"dy_hooks=0\ndy_poststart=0\ndy_procs='{cg}'\ndy_freezer=''\n"
                                f"dy_frozen=FROZEN\ndy_cgroups='{cg}'\ndy_pre='{{'\ndy_post='}}'\n")
        t0 = time.monotonic()
        res, py = r.sh("start", cid, refuse=True)
        assert (res.returncode, py) == (99, True)
        assert time.monotonic() - t0 < 10
        assert init.wait(10) == 0
        assert (d / "exec.fifo").exists()
    finally:
        if init.poll() is None:
            init.kill()
            init.wait()
