"""Lifecycle of real containers: create/start/state/kill/delete, run, exec, tty, hooks."""

from __future__ import annotations

import array
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from runtime_helpers import RUNC, cgroup_dirs, reap


def _wait_status(runc, cid, want, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = runc.cmd("state", cid)      # `run` may not have created it yet
        if r.returncode == 0 and json.loads(r.stdout)["status"] == want:
            return json.loads(r.stdout)
        time.sleep(0.05)
    raise AssertionError(f"{cid} never became {want}: {runc.cmd('state', cid)}")


def test_run_propagates_output_and_exit_code(runc, busybox_rootfs):
    b = runc.bundle(busybox_rootfs, ["sh", "-c", "echo hi; echo err >&2; exit 3"])
    r = runc.run(b)
    assert (r.returncode, r.stdout, r.stderr) == (3, "hi\n", "err\n")
    assert os.listdir(runc.root) == []           # run deletes the container afterwards


def test_run_with_dynamic_bash(runc, bash_rootfs):
    b = runc.bundle(bash_rootfs, ["bash", "-c", "echo $BASH_VERSION; exit 4"])
    r = runc.run(b)
    assert r.returncode == 4 and r.stdout.strip(), r.stderr


def test_create_start_state_kill_delete(runc, busybox_rootfs, tmp_path):
    b = runc.bundle(busybox_rootfs, ["sleep", "1000"])
    cid = runc.new_id()
    pidfile = tmp_path / "pid"
    runc.cmd("create", "--bundle", str(b), "--pid-file", str(pidfile), cid, check=True)
    st = runc.state(cid)
    assert st["status"] == "created" and st["id"] == cid and st["bundle"] == str(b)
    assert int(pidfile.read_text()) == st["pid"] > 0
    assert (runc.root / cid / "exec.fifo").exists()
    # the user's program has not started yet
    assert b"sleep" not in Path(f"/proc/{st['pid']}/cmdline").read_bytes()
    listed = json.loads(runc.cmd("list", "--format", "json", check=True).stdout)
    assert [c["id"] for c in listed] == [cid]
    runc.cmd("start", cid, check=True)
    assert _wait_status(runc, cid, "running")["pid"] == st["pid"]
    deadline = time.monotonic() + 10
    while b"sleep" not in Path(f"/proc/{st['pid']}/cmdline").read_bytes():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert "running" in runc.cmd("list", check=True).stdout
    r = runc.cmd("start", cid)
    assert r.returncode != 0 and "running" in r.stderr
    r = runc.cmd("delete", cid)
    assert r.returncode != 0 and "not stopped" in r.stderr
    runc.cmd("kill", cid, "KILL", check=True)
    assert reap(st["pid"]) == -signal.SIGKILL
    assert runc.state(cid)["status"] == "stopped"
    runc.cmd("delete", cid, check=True)
    assert not (runc.root / cid).exists()
    assert cgroup_dirs(cid) == []
    r = runc.cmd("state", cid)
    assert r.returncode != 0 and "does not exist" in r.stderr


def test_signal_gives_128_plus_n(runc, busybox_rootfs):
    b = runc.bundle(busybox_rootfs, ["sleep", "1000"])
    cid = runc.new_id()
    p = subprocess.Popen([*RUNC, "--root", str(runc.root), "run", "--bundle", str(b), cid])
    try:
        _wait_status(runc, cid, "running")
        runc.cmd("kill", cid, "SIGKILL", check=True)
        assert p.wait(timeout=30) == 128 + 9
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_run_forwards_signals(runc, busybox_rootfs):
    script = 'trap "echo got-term; exit 42" TERM; echo ready; while true; do sleep 0.05; done'
    b = runc.bundle(busybox_rootfs, ["sh", "-c", script])
    cid = runc.new_id()
    p = subprocess.Popen([*RUNC, "--root", str(runc.root), "run", "--bundle", str(b), cid],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "ready\n"
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 42 and "got-term" in out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_run_reaps_and_detach(runc, busybox_rootfs):
    b = runc.bundle(busybox_rootfs, ["sh", "-c", "sh -c 'exit 0' & wait; exit 5"])
    assert runc.run(b).returncode == 5
    b2 = runc.bundle(busybox_rootfs, ["sleep", "1000"])
    cid = runc.new_id()
    runc.run(b2, cid, "--detach", check=True)
    st = runc.state(cid)
    assert st["status"] == "running"
    runc.cmd("delete", "--force", cid, check=True)
    assert reap(st["pid"]) == -signal.SIGKILL


def test_exec_into_running_container(runc, busybox_rootfs):
    b = runc.bundle(busybox_rootfs, ["sleep", "1000"], process={"env": [
        "PATH=/usr/bin:/bin:/usr/sbin:/sbin", "FROM_SPEC=yes"]})
    cid = runc.start_detached(b)
    r = runc.cmd("exec", cid, "sh", "-c", "exit 7")
    assert r.returncode == 7, r.stderr
    r = runc.cmd("exec", "-e", "FOO=bar", cid, "sh", "-c", "echo $FOO $FROM_SPEC")
    assert r.stdout == "bar yes\n", r.stderr
    r = runc.cmd("exec", "--cwd", "/tmp", cid, "pwd")
    assert r.stdout == "/tmp\n", r.stderr
    r = runc.cmd("exec", "-u", "1000:1000", cid, "id")
    assert r.stdout.startswith("uid=1000(tester) gid=1000(tester)"), r.stdout + r.stderr
    r = runc.cmd("exec", cid, "cat", "/proc/1/cmdline")
    assert r.stdout.startswith("sleep"), r.stderr
    r = runc.cmd("exec", cid, "no-such-program")
    assert r.returncode != 0 and "not found" in r.stderr
    # exec --process (containerd's way), detached, with a pid file
    proc = {"args": ["sh", "-c", "echo from-process > /tmp/p.out"], "cwd": "/",
            "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}
    pf = runc.tmp / "process.json"
    pf.write_text(json.dumps(proc))
    pidfile = runc.tmp / "exec.pid"
    runc.cmd("exec", "--process", str(pf), "--detach", "--pid-file", str(pidfile), cid,
             check=True)
    pid = int(pidfile.read_text())
    assert reap(pid) == 0
    assert (busybox_rootfs / "tmp/p.out").read_text() == "from-process\n"
    ps = json.loads(runc.cmd("ps", "--format", "json", cid, check=True).stdout)
    assert runc.state(cid)["pid"] in ps


def _console_receiver(path: str):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    result = {}

    def accept():
        conn, _ = srv.accept()
        fds = array.array("i")
        msg, anc, _f, _a = conn.recvmsg(4096, socket.CMSG_SPACE(4))
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds.frombytes(data[:4])
        result["name"] = msg.decode()
        result["fd"] = fds[0]
        conn.close()
        srv.close()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    return t, result


def _read_pty(fd: int, timeout: float = 20) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if not r:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
    return out


def test_terminal_via_console_socket(runc, busybox_rootfs):
    sockdir = tempfile.mkdtemp(prefix="dyc-")
    try:
        path = os.path.join(sockdir, "console.sock")
        t, result = _console_receiver(path)
        b = runc.bundle(busybox_rootfs, ["sh", "-c", "tty; echo hello-tty; exit 6"],
                        process={"terminal": True})
        cid = runc.new_id()
        runc.cmd("create", "--bundle", str(b), "--console-socket", path, cid, check=True)
        t.join(10)
        assert result.get("name", "").startswith("/dev/pts/")
        pid = runc.state(cid)["pid"]
        runc.cmd("start", cid, check=True)
        out = _read_pty(result["fd"])
        os.close(result["fd"])
        assert b"/dev/pts/0" in out and b"hello-tty" in out, out
        assert reap(pid) == 6
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)


def test_run_with_terminal_proxies_pty(runc, busybox_rootfs):
    b = runc.bundle(busybox_rootfs, ["sh", "-c", "tty; read x; echo got-$x"],
                    process={"terminal": True})
    r = runc.run(b, None, input="line\n")
    assert r.returncode == 0, r.stderr
    assert "/dev/pts/0" in r.stdout and "got-line" in r.stdout


def _mounts_mentioning(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if path in line]


def test_delete_force_leaves_nothing(runc, busybox_rootfs):
    b = runc.bundle(busybox_rootfs, ["sh", "-c", "sleep 1000 & sleep 1000"])
    cid = runc.start_detached(b)
    st = runc.state(cid)
    dirs = cgroup_dirs(cid)
    assert dirs
    pids = json.loads(runc.cmd("ps", "--format", "json", cid, check=True).stdout)
    assert len(pids) >= 2
    runc.cmd("delete", "--force", cid, check=True)
    assert reap(st["pid"]) == -signal.SIGKILL
    assert cgroup_dirs(cid) == []
    assert not (runc.root / cid).exists()
    for p in pids:
        assert not os.path.exists(f"/proc/{p}") or open(f"/proc/{p}/stat").read().split(
            ")")[1].split()[0] == "Z"
    assert _mounts_mentioning(str(busybox_rootfs)) == []


def test_hooks_receive_state(runc, busybox_rootfs, tmp_path):
    def hook(name):
        return [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {tmp_path}/{name}.json"]}]
    b = runc.bundle(busybox_rootfs, ["true"], hooks={
        "prestart": hook("prestart"), "createRuntime": hook("createRuntime"),
        "poststart": hook("poststart"), "poststop": hook("poststop")})
    cid = runc.new_id()
    assert runc.run(b, cid).returncode == 0
    for name in ("prestart", "createRuntime", "poststart", "poststop"):
        st = json.loads((tmp_path / f"{name}.json").read_text())
        assert st["id"] == cid and st["bundle"] == str(b), name
        assert st["pid"] > 0 or name == "poststop"
    assert json.loads((tmp_path / "poststop.json").read_text())["status"] == "stopped"


def test_failing_prestart_hook_fails_create(runc, busybox_rootfs):
    b = runc.bundle(busybox_rootfs, ["true"], hooks={
        "prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 1"]}]})
    cid = runc.new_id()
    r = runc.cmd("create", "--bundle", str(b), cid)
    assert r.returncode != 0 and "prestart" in r.stderr and "nope" in r.stderr
    assert not (runc.root / cid).exists() and cgroup_dirs(cid) == []


@pytest.fixture
def userns_rootfs(busybox_template):
    """A rootfs owned by 100000 in a world-traversable directory (the
    container's root, uid 100000 on the host, must be able to reach it)."""
    top = tempfile.mkdtemp(prefix="dyuserns-")
    os.chmod(top, 0o755)
    root = Path(top) / "rootfs"
    subprocess.run(["cp", "-a", str(busybox_template), str(root)], check=True)
    subprocess.run(["chown", "-R", "100000:100000", str(root)], check=True)
    try:
        yield root
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_user_namespace_maps_root(runc, userns_rootfs):
    b = runc.bundle(userns_rootfs, ["sh", "-c", "id -u; touch /tmp/made-inside; "
                                    "cat /proc/self/uid_map"], linux={
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount",
                                              "cgroup", "user")],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]})
    r = runc.run(b)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", "100000", "65536"]
    st = os.stat(userns_rootfs / "tmp/made-inside")
    assert (st.st_uid, st.st_gid) == (100000, 100000)


def test_join_network_namespace_by_path(runc, busybox_rootfs, tmp_path):
    nsfile = tmp_path / "netns"
    nsfile.touch()
    subprocess.run(["unshare", f"--net={nsfile}", "true"], check=True)
    try:
        ino = os.stat(nsfile).st_ino
        b = runc.bundle(busybox_rootfs, ["readlink", "/proc/self/ns/net"], linux={
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                           {"type": "mount"}, {"type": "network", "path": str(nsfile)}]})
        r = runc.run(b)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"net:[{ino}]"
    finally:
        subprocess.run(["umount", str(nsfile)], check=False)


def test_preserve_fds_passes_extra_descriptors(runc, busybox_rootfs, tmp_path):
    (tmp_path / "passed.txt").write_text("through fd 3\n")
    b = runc.bundle(busybox_rootfs, ["sh", "-c", "cat <&3; (: <&4) 2>/dev/null && echo LEAK; "
                                     "echo end"])
    cmd = " ".join([*RUNC, "--root", str(runc.root), "run", "--preserve-fds", "1", "--bundle",
                    str(b), runc.new_id()])
    r = subprocess.run(["sh", "-c", f"exec 3<{tmp_path}/passed.txt 4<{tmp_path}; {cmd}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert " ".join(lines[:3]) == "through fd 3"
    assert lines[3:] == ["end"]       # fd 4 was not preserved


def test_update_resources_from_stdin(runc, busybox_rootfs):
    b = runc.bundle(busybox_rootfs, ["sleep", "1000"],
                    linux={"resources": {"memory": {"limit": 64 << 20}}})
    cid = runc.start_detached(b)
    read = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || "
            "cat /sys/fs/cgroup/memory.max")
    assert runc.cmd("exec", cid, "sh", "-c", read).stdout.strip() == str(64 << 20)
    r = runc.cmd("update", "--resources", "-", cid,
                 input=json.dumps({"memory": {"limit": 96 << 20}}))
    assert r.returncode == 0, r.stderr
    assert runc.cmd("exec", cid, "sh", "-c", read).stdout.strip() == str(96 << 20)
    r = runc.cmd("update", "--resources", "-", cid, input="{not json")
    assert r.returncode != 0 and "invalid JSON" in r.stderr


def test_shebang_scripts_run_like_the_kernel_runs_them(runc, busybox_rootfs):
    script = busybox_rootfs / "bin/myscript"
    script.write_text("#!/bin/sh -e\necho ok $0 $1\n")
    script.chmod(0o755)
    nested = busybox_rootfs / "bin/nested"
    nested.write_text("#!/bin/myscript\n")
    nested.chmod(0o755)
    r = runc.run(runc.bundle(busybox_rootfs, ["myscript", "arg1"]))
    assert (r.returncode, r.stdout) == (0, "ok /bin/myscript arg1\n"), r.stderr
    r = runc.run(runc.bundle(busybox_rootfs, ["nested", "x"]))
    assert (r.returncode, r.stdout) == (0, "ok /bin/myscript /bin/nested\n"), r.stderr


def test_attached_arms_sigpipe_only_when_asked_and_disarm_restores():
    """`run` arms signal forwarding before create but leaves SIGPIPE alone until the
    container exists (a SIGPIPE during create is the runtime's own); disarm puts
    back what was there."""
    from dockyard.runtime.foreground import Attached
    before = {s: signal.getsignal(s) for s in (signal.SIGPIPE, signal.SIGTERM, signal.SIGCHLD)}
    a = Attached().arm(later=(signal.SIGPIPE,))
    try:
        assert signal.getsignal(signal.SIGPIPE) == before[signal.SIGPIPE]
        assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
        a.catch(signal.SIGPIPE)
        assert signal.getsignal(signal.SIGPIPE) != before[signal.SIGPIPE]
    finally:
        a.disarm()
    assert {s: signal.getsignal(s) for s in before} == before
    assert signal.set_wakeup_fd(-1) == -1
