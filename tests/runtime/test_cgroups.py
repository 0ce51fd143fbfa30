"""Real cgroups on this host (v1 controllers + a hybrid cgroup2 tree).

Each test works in its own cgroup /dockyard-test-<random> and removes it, and
kills its processes, even when it fails. Child processes are started blocked on
their stdin so they can be moved into the cgroup before they do anything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from dockyard.runtime import cgroups
from dockyard.runtime.cgroups import CgroupError

HOST = cgroups.host_info()
needs_v1 = pytest.mark.skipif(HOST["layout"] == "v2", reason="host has no cgroup v1")
needs_v2_tree = pytest.mark.skipif(HOST["v2_mount"] is None, reason="host has no cgroup2 hierarchy")


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Cg:
    """Factory for managers that are always cleaned up."""

    def __init__(self):
        self.managers = []
        self.procs: list[subprocess.Popen] = []

    def open(self, path=None, cid=None):
        cid = cid or "t" + uuid.uuid4().hex[:8]
        if path is None:
            path = f"/dockyard-test-{uuid.uuid4().hex[:12]}"
        mgr = cgroups.open_manager(path, cid)
        self.managers.append(mgr)
        return mgr

    def child(self, code: str, mgr=None) -> subprocess.Popen:
        """A python child waiting for a line on stdin, then running ``code``."""
        script = "import sys, os, time\nsys.stdin.readline()\n" + code
        p = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.procs.append(p)
        if mgr is not None:
            mgr.add(p.pid)
        return p

    def cleanup(self):
        for mgr in self.managers:
            try:
                if mgr.is_frozen():
                    mgr.thaw()
                mgr.kill_all(signal.SIGKILL)
            except Exception:
                pass
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                if f:
                    f.close()
        for mgr in self.managers:
            try:
                mgr.destroy()
            except CgroupError:
                time.sleep(0.5)
                mgr.destroy()


@pytest.fixture
def cg():
    c = Cg()
    try:
        yield c
    finally:
        c.cleanup()


def go(p: subprocess.Popen) -> None:
    p.stdin.write(b"go\n")
    p.stdin.flush()


def dirs_of(mgr) -> list[str]:
    d = mgr.to_dict()
    if d["driver"] == "v2":
        return [d["path"]]
    return sorted(set(d["paths"].values()) | ({d["unified"]} if d["unified"] else set()))


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


# ------------------------------------------------------------------ paths


def test_systemd_style_path_is_refused():
    with pytest.raises(CgroupError, match="--systemd-cgroup"):
        cgroups.open_manager("system.slice:docker:abc", "abc")


def test_default_path_is_dockyard_id():
    mgr = cgroups.open_manager(None, "someid")
    assert mgr.to_dict()["cgroups_path"] == "/dockyard/someid"


@needs_v1
def test_absolute_path_is_under_each_hierarchy_root(cg):
    mgr = cg.open()
    d = mgr.to_dict()
    for ctrl, path in d["paths"].items():
        assert path == d["roots"][ctrl] + d["cgroups_path"]
    mgr.create()
    mgr.create()  # idempotent
    for path in dirs_of(mgr):
        assert os.path.isdir(path)
    mgr.destroy()
    for path in dirs_of(mgr):
        assert not os.path.exists(path)
    mgr.destroy()  # no error when already gone


@needs_v1
def test_relative_path_is_under_own_cgroup(cg):
    name = f"dockyard-test-rel-{uuid.uuid4().hex[:8]}"
    mgr = cg.open(path=name)
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.strip().split(":", 2)
            for c in ctrls.split(","):
                own[c] = path
    d = mgr.to_dict()
    expect = d["roots"]["memory"] + own["memory"].rstrip("/") + "/" + name
    assert d["paths"]["memory"] == expect
    mgr.create()
    assert os.path.isdir(expect)
    mgr.destroy()
    assert not os.path.exists(expect)


def test_dotdot_cannot_escape():
    mgr = cgroups.open_manager("/../../etc", "x")
    assert mgr.to_dict()["cgroups_path"] == "/etc"


def test_state_round_trip(cg):
    mgr = cg.open()
    again = cgroups.manager_from_dict(mgr.to_dict())
    assert again.to_dict() == mgr.to_dict()
    with pytest.raises(CgroupError):
        cgroups.manager_from_dict({"driver": "v9"})


# ------------------------------------------------------------------ v1 resources


@needs_v1
def test_memory_limit_oom_kills(cg):
    mgr = cg.open()
    mgr.create()
    limit = 48 << 20
    mgr.apply({"memory": {"limit": limit, "swap": limit if HOST["memory_swap"] else None}})
    with open(mgr.path("memory") + "/memory.limit_in_bytes") as f:
        assert int(f.read()) == limit
    assert not mgr.oom_killed()
    p = cg.child("x = bytearray(b'\\1') * (400 << 20)\nprint('survived', flush=True)\n", mgr)
    go(p)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL, out
    assert mgr.oom_killed()
    st = mgr.stats()["memory"]
    assert st["oom_kill"] >= 1
    assert st["limit"] == limit


@needs_v1
def test_pids_limit_makes_fork_fail(cg):
    mgr = cg.open()
    mgr.create()
    mgr.apply({"pids": {"limit": 4}})
    code = (
        "n = 0\n"
        "try:\n"
        "    for _ in range(10):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60); os._exit(0)\n"
        "        n += 1\n"
        "    print('forked', n, flush=True)\n"
        "except BlockingIOError:\n"
        "    print('EAGAIN', n, flush=True)\n"
    )
    p = cg.child(code, mgr)
    go(p)
    line = p.stdout.readline().decode().split()
    assert line == ["EAGAIN", "3"]
    assert mgr.stats()["pids"] == {"current": 4, "limit": 4}
    mgr.kill_all(signal.SIGKILL)
    p.wait(timeout=10)
    wait_for(lambda: mgr.pids() == [], what="pids to die")


@needs_v1
def test_cpu_settings_read_back(cg):
    mgr = cg.open()
    mgr.create()
    mgr.apply({"cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"}})

    def rd(ctrl, name):
        with open(os.path.join(mgr.path(ctrl), name)) as f:
            return f.read().strip()

    assert rd("cpu", "cpu.shares") == "512"
    assert rd("cpu", "cpu.cfs_quota_us") == "50000"
    assert rd("cpu", "cpu.cfs_period_us") == "100000"
    assert rd("cpuset", "cpuset.cpus") == "0"
    assert rd("cpuset", "cpuset.mems") == "0"
    # update: quota lifted, shares changed, other values untouched
    mgr.apply({"cpu": {"shares": 1024, "quota": -1}})
    assert rd("cpu", "cpu.shares") == "1024"
    assert rd("cpu", "cpu.cfs_quota_us") == "-1"
    assert rd("cpuset", "cpuset.cpus") == "0"


@needs_v1
def test_new_cpuset_inherits_parent_cpus(cg):
    mgr = cg.open(path=f"/dockyard-test-{uuid.uuid4().hex[:8]}/inner")
    mgr.create()
    try:
        d = mgr.path("cpuset")
        with open(os.path.join(d, "cpuset.cpus")) as f:
            assert f.read().strip() != ""
        p = cg.child("print('ok', flush=True)", mgr)  # joining needs cpus and mems
        go(p)
        assert p.stdout.readline() == b"ok\n"
    finally:
        cg.cleanup()
        for path in dirs_of(mgr):
            os.rmdir(os.path.dirname(path))


@needs_v1
def test_devices_deny_all_then_allow_list(cg):
    mgr = cg.open()
    mgr.create()
    rules = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": True, "type": "c", "major": 136, "minor": -1, "access": "rw"},
    ]
    mgr.apply({"devices": rules})
    with open(mgr.path("devices") + "/devices.list") as f:
        listed = sorted(f.read().split("\n"))
    assert [x for x in listed if x] == ["c 136:* rw", "c 1:3 rwm", "c 1:5 rwm"]
    code = (
        "res = []\n"
        "for dev in ('/dev/null', '/dev/zero', '/dev/full'):\n"
        "    try:\n"
        "        os.close(os.open(dev, os.O_RDONLY)); res.append('ok')\n"
        "    except PermissionError:\n"
        "        res.append('EPERM')\n"
        "print(*res, flush=True)\n"
    )
    p = cg.child(code, mgr)
    go(p)
    assert p.stdout.readline().split() == [b"ok", b"ok", b"EPERM"]
    # applying the same rules again (docker update) is a no-op, not a deny-all flash
    mgr.apply({"devices": rules})


@needs_v1
def test_freeze_stops_and_thaw_resumes(cg):
    mgr = cg.open()
    mgr.create()
    p = cg.child("while True: pass\n", mgr)
    go(p)
    wait_for(lambda: cpu_ticks(p.pid) > 0, what="child to burn cpu")
    mgr.freeze()
    assert mgr.is_frozen()
    before = cpu_ticks(p.pid)
    time.sleep(0.3)
    assert cpu_ticks(p.pid) == before
    mgr.thaw()
    assert not mgr.is_frozen()
    wait_for(lambda: cpu_ticks(p.pid) > before, what="child to run again")
    assert mgr.stats()["cpu"]["usage_ns"] > 0


GRANDCHILDREN = (
    "r, w = os.pipe()\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        os.write(w, b'x'); time.sleep(120)\n"
    "    os.write(w, b'x'); time.sleep(120)\n"
    "os.read(r, 1); os.read(r, 1)\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


def _kill_all_kills_descendants(cg, mgr):
    p = cg.child(GRANDCHILDREN, mgr)
    go(p)
    assert p.stdout.readline() == b"ready\n"
    pids = mgr.pids()
    assert p.pid in pids and len(pids) == 3
    mgr.kill_all(signal.SIGKILL)
    p.wait(timeout=10)
    assert p.returncode == -signal.SIGKILL
    wait_for(lambda: mgr.pids() == [], what="every process to die")
    for pid in pids:
        wait_for(lambda: not os.path.exists(f"/proc/{pid}") or _is_zombie(pid), what=f"{pid} to die")


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@needs_v1
def test_kill_all_kills_forked_grandchildren(cg):
    mgr = cg.open()
    mgr.create()
    _kill_all_kills_descendants(cg, mgr)
    mgr.destroy()
    for path in dirs_of(mgr):
        assert not os.path.exists(path)


@needs_v1
def test_kill_all_of_paused_container(cg):
    mgr = cg.open()
    mgr.create()
    p = cg.child("print('up', flush=True); time.sleep(120)\n", mgr)
    go(p)
    assert p.stdout.readline() == b"up\n"
    mgr.freeze()
    mgr.kill_all(signal.SIGKILL)
    p.wait(timeout=10)
    assert p.returncode == -signal.SIGKILL


@needs_v1
def test_hybrid_host_joins_unified_tree(cg):
    if HOST["layout"] != "hybrid":
        pytest.skip("not a hybrid host")
    mgr = cg.open()
    mgr.create()
    p = cg.child("time.sleep(60)\n", mgr)
    with open(f"/proc/{p.pid}/cgroup") as f:
        lines = f.read().splitlines()
    assert f"0::{mgr.to_dict()['cgroups_path']}" in lines
    assert f"4:memory:{mgr.to_dict()['cgroups_path']}" in lines or any(
        ln.endswith(":memory:" + mgr.to_dict()["cgroups_path"]) for ln in lines)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("resources, words", [
    ({"memory": {"limit": -5}}, "memory.limit"),
    ({"memory": {"limit": "lots"}}, "memory.limit must be an integer"),
    ({"memory": {"limit": 100 << 20, "swap": 50 << 20}}, "memory.swap"),
    ({"cpu": {"cpus": "0-x"}}, "cpu.cpus"),
    ({"cpu": {"cpus": "3-1"}}, "reversed"),
    ({"pids": {"limit": -7}}, "pids.limit"),
    ({"devices": [{"allow": True, "type": "z", "access": "rwm"}]}, "devices[0].type"),
    ({"devices": [{"allow": True, "access": "rwx"}]}, "devices[0].access"),
    ({"blockIO": {"weight": 5000}}, "blockIO.weight"),
    ({"unified": {"../etc": "1"}}, "unified key"),
])
def test_validate_rejects_bad_values(resources, words):
    with pytest.raises(CgroupError, match=words.replace("[", r"\[").replace("]", r"\]")):
        cgroups.validate_resources(resources)


@needs_v1
def test_bad_values_leave_nothing_behind(cg):
    mgr = cg.open()
    with pytest.raises(CgroupError, match="memory.limit"):
        mgr.apply({"memory": {"limit": -5}})  # refused before any file is touched
    for path in dirs_of(mgr):
        assert not os.path.exists(path)
    mgr.create()
    with pytest.raises(CgroupError, match=r"cpuset cpus.*refused.*this host offers cpus"):
        mgr.apply({"cpu": {"cpus": f"{os.cpu_count() + 60}"}})
    mgr.destroy()
    for path in dirs_of(mgr):
        assert not os.path.exists(path)


@needs_v1
def test_swap_limit(cg):
    mgr = cg.open()
    mgr.create()
    if HOST["memory_swap"]:
        mgr.apply({"memory": {"limit": 64 << 20, "swap": 128 << 20}})
        with open(mgr.path("memory") + "/memory.memsw.limit_in_bytes") as f:
            assert int(f.read()) == 128 << 20
        # lowering both works in either order
        mgr.apply({"memory": {"limit": 32 << 20, "swap": 32 << 20}})
        with open(mgr.path("memory") + "/memory.memsw.limit_in_bytes") as f:
            assert int(f.read()) == 32 << 20
        mgr.apply({"memory": {"limit": -1, "swap": -1}})
        assert mgr.stats()["memory"]["limit"] is None
    else:
        with pytest.raises(CgroupError, match="swap accounting"):
            mgr.apply({"memory": {"limit": 64 << 20, "swap": 128 << 20}})


@needs_v1
def test_missing_blkio_weight_is_a_clear_error(cg):
    mgr = cg.open()
    mgr.create()
    d = mgr.path("blkio")
    has = any(os.path.exists(os.path.join(d, f)) for f in ("blkio.weight", "blkio.bfq.weight"))
    if has:
        mgr.apply({"blockIO": {"weight": 300}})
        name = "blkio.weight" if os.path.exists(os.path.join(d, "blkio.weight")) else "blkio.bfq.weight"
        with open(os.path.join(d, name)) as f:
            assert "300" in f.read().split()
    else:
        with pytest.raises(CgroupError, match="block I/O weight"):
            mgr.apply({"blockIO": {"weight": 300}})


# ------------------------------------------------------------------ v2 driver (forced)


@pytest.fixture
def v2(monkeypatch):
    if HOST["v2_mount"] is None:
        pytest.skip("no cgroup2 hierarchy")
    monkeypatch.setenv("DOCKYARD_CGROUP_DRIVER", "v2")


def test_v2_lifecycle(v2, cg):
    mgr = cg.open()
    assert mgr.to_dict()["driver"] == "v2"
    mgr.create()
    p = cg.child("while True: pass\n", mgr)
    go(p)
    assert mgr.pids() == [p.pid]
    wait_for(lambda: cpu_ticks(p.pid) > 0, what="child to burn cpu")
    mgr.freeze()
    assert mgr.is_frozen()
    before = cpu_ticks(p.pid)
    time.sleep(0.3)
    assert cpu_ticks(p.pid) == before
    mgr.thaw()
    assert not mgr.is_frozen()
    wait_for(lambda: cpu_ticks(p.pid) > before, what="child to run again")
    assert mgr.stats()["cpu"]["usage_ns"] > 0
    mgr.kill_all(signal.SIGKILL)
    p.wait(timeout=10)
    wait_for(lambda: mgr.pids() == [], what="processes to leave")
    mgr.destroy()
    assert not os.path.exists(mgr.to_dict()["path"])


def test_v2_kill_all_kills_grandchildren(v2, cg):
    mgr = cg.open()
    mgr.create()
    _kill_all_kills_descendants(cg, mgr)


def test_v2_kill_all_with_other_signal(v2, cg):
    mgr = cg.open()
    mgr.create()
    p = cg.child("print('up', flush=True); time.sleep(120)\n", mgr)
    go(p)
    assert p.stdout.readline() == b"up\n"
    mgr.kill_all(signal.SIGTERM)
    p.wait(timeout=10)
    assert p.returncode == -signal.SIGTERM
    assert not mgr.is_frozen()


def test_v2_missing_controller_is_named(v2, cg):
    mgr = cg.open()
    mgr.create()
    avail = HOST["v2_controllers"]
    if "memory" in avail:
        pytest.skip("this host's cgroup2 tree has the memory controller")
    with pytest.raises(CgroupError, match=r"memory limit.*'memory' controller is not available"):
        mgr.apply({"memory": {"limit": 64 << 20}})
    if "pids" not in avail:
        with pytest.raises(CgroupError, match=r"pids limit.*'pids' controller is not available"):
            mgr.apply({"pids": {"limit": 10}})


OPEN_DEVICES = (
    "res = []\n"
    "for dev, flags in (('/dev/null', os.O_RDWR), ('/dev/zero', os.O_RDONLY), ('/dev/zero', os.O_WRONLY),\n"
    "                   ('/dev/full', os.O_RDONLY)):\n"
    "    try:\n"
    "        os.close(os.open(dev, flags)); res.append('ok')\n"
    "    except PermissionError:\n"
    "        res.append('EPERM')\n"
    "print(*res, flush=True)\n"
)


def test_v2_device_rules_through_ebpf(v2, cg):
    from dockyard.runtime.cgroups import devices_ebpf

    mgr = cg.open()
    mgr.create()
    rules = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"},
    ]
    mgr.apply({"devices": rules})
    d = mgr.to_dict()["path"]
    assert devices_ebpf.attached_count(d) == 1
    p = cg.child(OPEN_DEVICES, mgr)
    go(p)
    assert p.stdout.readline().split() == [b"ok", b"ok", b"EPERM", b"EPERM"]
    # update: the new program replaces the old one (allow all, then deny /dev/full writes)
    mgr.apply({"devices": [{"allow": True, "access": "rwm"},
                           {"allow": False, "type": "c", "major": 1, "minor": 7, "access": "w"}]})
    assert devices_ebpf.attached_count(d) == 1
    code = OPEN_DEVICES.replace("('/dev/full', os.O_RDONLY)", "('/dev/full', os.O_WRONLY)")
    p2 = cg.child(code, mgr)
    go(p2)
    assert p2.stdout.readline().split() == [b"ok", b"ok", b"ok", b"EPERM"]
    mgr.apply({"devices": []})
    assert devices_ebpf.attached_count(d) == 0


@needs_v1
def test_memory_reservation_swappiness_oom_killer(cg):
    mgr = cg.open()
    mgr.create()
    d = mgr.path("memory")
    mgr.apply({"memory": {"reservation": 32 << 20, "swappiness": 0, "disableOOMKiller": True, "kernel": 1 << 20}})

    def rd(name):
        with open(os.path.join(d, name)) as f:
            return f.read()

    assert int(rd("memory.soft_limit_in_bytes")) == 32 << 20
    assert rd("memory.swappiness").strip() == "0"
    assert "oom_kill_disable 1" in rd("memory.oom_control")
    assert any("memory.kernel" in w for w in mgr.warnings)
    mgr.apply({"memory": {"disableOOMKiller": False}})
    assert "oom_kill_disable 0" in rd("memory.oom_control")


def test_operations_on_missing_cgroup_are_clear(cg):
    mgr = cg.open()
    assert mgr.pids() == []
    mgr.kill_all(signal.SIGKILL)  # nothing to kill: not an error
    mgr.destroy()
    with pytest.raises(CgroupError, match="does not exist"):
        mgr.add(os.getpid())


# ------------------------------------------------------------------ pure conversions


def test_conversions_match_runc_semantics():
    from dockyard.runtime.cgroups._common import blkio_weight_to_io_weight, shares_to_weight, swap_to_v2

    assert [shares_to_weight(s) for s in (2, 1024, 262144)] == [1, 39, 10000]
    assert [blkio_weight_to_io_weight(w) for w in (10, 500, 1000)] == [1, 4950, 10000]
    assert swap_to_v2(200, 100) == 100          # OCI swap is memory+swap
    assert swap_to_v2(-1, 100) == -1
    assert swap_to_v2(None, 100) is None
    assert swap_to_v2(0, -1) == -1              # unlimited memory implies unlimited swap
    with pytest.raises(CgroupError, match="needs a memory limit"):
        swap_to_v2(200, None)
    with pytest.raises(CgroupError, match="must be >="):
        swap_to_v2(50, 100)


def test_device_rule_replay():
    from dockyard.runtime.cgroups.devices_ebpf import build_program, effective_rules
    from dockyard.runtime.cgroups.v1 import _devices_state_matches

    rules = [{"allow": True, "access": "rwm"}, {"allow": False, "type": "c", "major": 1, "minor": 7, "access": "w"},
             {"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}]
    default_allow, kept = effective_rules(rules)
    assert default_allow is False and kept == rules[3:]
    assert len(build_program(rules)) % 8 == 0
    assert _devices_state_matches(rules, "c 1:3 rw\n")
    assert not _devices_state_matches(rules, "c 1:3 rwm\n")
    assert not _devices_state_matches(rules, "a *:* rwm\n")
    assert _devices_state_matches([], "a *:* rwm\n")


def _a_block_device():
    """(major, minor) of a whole disk on this host, or None."""
    try:
        with open("/proc/partitions") as f:
            for line in f.read().splitlines()[2:]:
                major, minor, _blocks, name = line.split()
                if not name.startswith(("loop", "ram")) and os.path.exists(f"/sys/block/{name}"):
                    return int(major), int(minor)
    except OSError:
        pass
    return None


@needs_v1
def test_blkio_throttle(cg):
    dev = _a_block_device()
    if dev is None:
        pytest.skip("no block device")
    mgr = cg.open()
    mgr.create()
    major, minor = dev
    mgr.apply({"blockIO": {"throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}],
                           "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 100}]}})
    d = mgr.path("blkio")
    with open(os.path.join(d, "blkio.throttle.read_bps_device")) as f:
        assert f.read().split() == [f"{major}:{minor}", "1048576"]
    with open(os.path.join(d, "blkio.throttle.write_iops_device")) as f:
        assert f.read().split() == [f"{major}:{minor}", "100"]
    assert "io_service_bytes" in mgr.stats()["blkio"]
    with pytest.raises(CgroupError, match="block I/O"):
        mgr.apply({"blockIO": {"throttleReadBpsDevice": [{"major": 4095, "minor": 4095, "rate": 1}]}})
