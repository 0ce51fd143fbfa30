"""How `create` forks the container's processes.

Most containers get their init forked straight into its PID namespace by
the runtime's own process (``init.fork_init``: unshare(CLONE_NEWPID) or setns
of a PID namespace given by path, fork, setns back); a user namespace goes
through stage 1. These tests hold the runtime to both paths: the runtime's
process gets its own PID namespace back for later children, init is its
child, and the stage-1 cases still put the container where the spec says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from runtime_helpers import reap

PROBE = textwrap.dedent("""
    import json, os, sys
    from dockyard.runtime import sync
    from dockyard.runtime.container import CreateOptions, Runtime
    root, bundle, cid = sys.argv[1:4]
    got = []                  # the message types create received (stage 1 sends child-pid)
    recv = sync.recv
    def noting(sock):
        msg = recv(sock)
        got.append(msg and msg.get("type"))
        return msg
    sync.recv = noting
    rt = Runtime(root)
    try:
        st = rt.create(cid, CreateOptions(bundle=bundle))
        with open(f"/proc/{st['pid']}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        child = os.fork()          # a child forked after create, e.g. a hook
        if child == 0:
            os._exit(0)
        os.waitpid(child, 0)
        with open(f"/proc/{st['pid']}/status") as f:
            nspid = [l.split()[1:] for l in f if l.startswith("NSpid:")][0]
        tasks_net = {os.readlink(f"/proc/self/task/{t}/ns/net")
                     for t in os.listdir("/proc/self/task")}
        out = {"own_net": os.readlink("/proc/self/ns/net"), "tasks_net": sorted(tasks_net),
               "init_net": os.readlink(f"/proc/{st['pid']}/ns/net"),
               "own_ns": os.readlink("/proc/self/ns/pid"),
               "children_ns": os.readlink("/proc/self/ns/pid_for_children"),
               "init_ns": os.readlink(f"/proc/{st['pid']}/ns/pid"),
               "init_parent_is_us": ppid == os.getpid(), "init_nspid": nspid,
               "later_child_pid": child, "received": got}
    finally:
        rt.delete(cid, force=True)
    print(json.dumps(out))
""")


def test_direct_init_leaves_the_runtime_in_its_own_namespaces(runc, busybox_rootfs):
    b = runc.bundle(busybox_rootfs, ["sleep", "30"])
    cid = runc.new_id()
    r = subprocess.run([sys.executable, "-c", PROBE, str(runc.root), str(b), cid],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["children_ns"] == out["own_ns"]          # switched back after the fork
    assert out["init_ns"] != out["own_ns"]              # init got a PID namespace of its own
    assert out["init_nspid"][-1] == "1"                 # ... as its PID 1
    assert out["init_parent_is_us"]                     # forked by the runtime itself
    # init's network namespace was made on a thread of the runtime: a new one,
    # and no thread of the runtime is left in it
    assert out["init_net"] != out["own_net"]
    assert out["tasks_net"] == [out["own_net"]]
    assert not (runc.root / cid).exists()


def test_pid_namespace_joined_by_path_needs_no_stage1(runc, busybox_rootfs):
    """A PID namespace given by path (a Kubernetes pod's containers join the
    sandbox's) is joined by the runtime for its next child only: init is forked
    straight into it, no stage 1 (create receives no child-pid message), and the
    runtime's later children are in its own namespace again."""
    first = runc.start_detached(runc.bundle(busybox_rootfs, ["sleep", "30"]))
    pid = runc.saved(first)["pid"]
    try:
        b = runc.bundle(busybox_rootfs, ["sleep", "30"], linux={
            "namespaces": [{"type": "pid", "path": f"/proc/{pid}/ns/pid"}, {"type": "ipc"},
                           {"type": "uts"}, {"type": "mount"}, {"type": "network"}]})
        cid = runc.new_id()
        r = subprocess.run([sys.executable, "-c", PROBE, str(runc.root), str(b), cid],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert "child-pid" not in out["received"], out["received"]
        assert out["init_ns"] == os.readlink(f"/proc/{pid}/ns/pid")
        assert out["children_ns"] == out["own_ns"]          # switched back after the fork
        assert out["init_parent_is_us"]
        assert out["init_nspid"][-1] != "1"                 # the first container's sleep is 1
        assert out["init_net"] != out["own_net"] and out["tasks_net"] == [out["own_net"]]
        assert not (runc.root / cid).exists()
    finally:
        runc.cmd("delete", "--force", first)
        # the probe's init (killed, not reaped by the probe) came to us: a PID
        # namespace's first process is gone only once every process in it is reaped
        _reap_all_until(pid)


def _reap_all_until(pid: int, timeout: float = 10) -> None:
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if got == pid:
            return
        if got == 0:
            time.sleep(0.02)
    raise TimeoutError(f"process {pid} did not exit")


def test_pid_namespace_joined_by_path_runs_there(runc, busybox_rootfs):
    first = runc.start_detached(runc.bundle(busybox_rootfs, ["sleep", "30"]))
    pid = runc.saved(first)["pid"]
    try:
        b = runc.bundle(busybox_rootfs, ["sh", "-c", "readlink /proc/self/ns/pid; "
                                         "ls /proc | grep -c '^[0-9]'"], linux={
            "namespaces": [{"type": "pid", "path": f"/proc/{pid}/ns/pid"}, {"type": "ipc"},
                           {"type": "uts"}, {"type": "mount"}, {"type": "network"}]})
        r = runc.run(b)
        assert r.returncode == 0, r.stderr
        ns, count = r.stdout.split()
        assert ns == os.readlink(f"/proc/{pid}/ns/pid")
        assert int(count) >= 2          # sees the first container's sleep beside itself
    finally:
        runc.cmd("delete", "--force", first)
        reap(pid, timeout=10)


def test_pid_namespace_path_that_is_not_one_is_refused(runc, busybox_rootfs):
    """A path that is no PID namespace: create fails, naming the step, and leaves
    nothing behind."""
    b = runc.bundle(busybox_rootfs, ["true"], linux={
        "namespaces": [{"type": "pid", "path": "/proc/self/ns/net"}, {"type": "ipc"},
                       {"type": "uts"}, {"type": "mount"}, {"type": "network"}]})
    cid = runc.new_id()
    r = runc.cmd("create", "--bundle", str(b), cid)
    assert r.returncode == 1
    assert "joining the pid namespace /proc/self/ns/net: " in r.stderr, r.stderr
    assert not (runc.root / cid).exists()
