"""How `create` forks the container's processes.

Most containers get their init forked straight into a new PID namespace by
the runtime's own process (``init.fork_init``: unshare(CLONE_NEWPID), fork,
setns back); a user namespace or a PID namespace joined by path goes through
stage 1. These tests hold the runtime to both paths: the runtime's process
gets its own PID namespace back for later children, init is its child, and
the stage-1 cases still put the container where the spec says.
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
    from dockyard.runtime.container import CreateOptions, Runtime
    root, bundle, cid = sys.argv[1:4]
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
               "later_child_pid": child}
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


def test_pid_namespace_joined_by_path_goes_through_stage1(runc, busybox_rootfs):
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
