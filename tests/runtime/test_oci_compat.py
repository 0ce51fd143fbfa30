"""What OCI callers (containerd's runc shim, the kubelet through CRI) ask of a runtime
beyond docker's use: update with device rules, namespaces joined by path (the mount
and UTS ones too), no namespaces at all, the program's own process name, and errors
that name the step that failed."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from runtime_helpers import cgroup_dirs, reap


def _wait(pred, what: str, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _ns(pid, name: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{name}")


@pytest.fixture
def holder():
    """`unshare <flags> sleep` on the host: a process holding namespaces of its own,
    killed and reaped afterwards."""
    procs: list[subprocess.Popen] = []

    def start(*flags: str) -> int:
        p = subprocess.Popen(["unshare", *flags, "sleep", "1000"])
        procs.append(p)
        kinds = [f.removeprefix("--") for f in flags if f.startswith("--") and "=" not in f
                 and f != "--propagation"]
        names = {"mount": "mnt", "uts": "uts", "ipc": "ipc", "net": "net"}
        for k in kinds:
            n = names[k]
            _wait(lambda: _ns(p.pid, n) != _ns("self", n), f"unshare --{k}")
        return p.pid

    yield start
    for p in procs:
        p.kill()
        p.wait()


# ------------------------------------------------------------------ update


def test_update_with_devices_keeps_the_device_allow_list(runc, busybox_rootfs, tmp_path):
    """containerd sends a deny-all device list with every CRI UpdateContainerResources:
    runc ignores devices on update, and so must we (it left no /dev/null, no /dev/ptmx)."""
    cid = runc.start_detached(runc.bundle(busybox_rootfs, ["sleep", "1000"]))
    probe = ("echo x > /dev/null && head -c 3 /dev/zero | wc -c && "
             "exec 3<>/dev/ptmx && echo ptmx-ok")
    r = runc.cmd("exec", cid, "sh", "-c", probe)
    assert r.returncode == 0 and "ptmx-ok" in r.stdout, r.stderr
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"devices": [{"allow": False, "access": "rwm"}],
                               "cpu": {"shares": 512}}))
    runc.cmd("update", "--resources", str(res), cid, check=True)
    r = runc.cmd("exec", cid, "sh", "-c", probe)
    assert r.returncode == 0 and r.stdout.split() == ["3", "ptmx-ok"], r.stdout + r.stderr
    shares = [d for d in cgroup_dirs(cid) if os.path.exists(os.path.join(d, "cpu.shares"))]
    if shares:   # the rest of the update still applies
        with open(os.path.join(shares[0], "cpu.shares")) as f:
            assert f.read().strip() == "512"


# -------------------------------------------------------- namespaces by path


def _spec_ns(**paths) -> list[dict]:
    out = []
    for t in ("pid", "network", "ipc", "uts", "mount", "cgroup"):
        out.append({"type": t, "path": paths[t]} if t in paths else {"type": t})
    return out


def test_mount_namespace_joined_by_path(runc, busybox_rootfs, holder):
    """runc joins a mount namespace given by path and sets the root up in it; the
    host's mount table is left alone."""
    hpid = holder("--mount", "--propagation", "private")
    (busybox_rootfs / "marker").write_text("in-joined-ns\n")
    b = runc.bundle(busybox_rootfs, ["sleep", "1000"],
                    linux={"namespaces": _spec_ns(mount=f"/proc/{hpid}/ns/mnt")})
    host_mounts = open("/proc/self/mountinfo").read()
    cid = runc.start_detached(b)
    pid = runc.state(cid)["pid"]
    assert _ns(pid, "mnt") == _ns(hpid, "mnt") != _ns("self", "mnt")
    r = runc.cmd("exec", cid, "sh", "-c", "cat /marker; test -e /proc/self/status && echo proc")
    assert r.returncode == 0 and r.stdout.split() == ["in-joined-ns", "proc"], r.stderr
    assert str(busybox_rootfs) not in open("/proc/self/mountinfo").read().replace(
        host_mounts, "")


def test_uts_namespace_joined_by_path_gets_the_hostname(runc, busybox_rootfs, holder):
    hpid = holder("--uts")
    host_name = os.uname().nodename
    b = runc.bundle(busybox_rootfs, ["hostname"], hostname="joined-name",
                    linux={"namespaces": _spec_ns(uts=f"/proc/{hpid}/ns/uts")})
    r = runc.run(b)
    assert (r.returncode, r.stdout) == (0, "joined-name\n"), r.stderr
    named = subprocess.run(["nsenter", "-t", str(hpid), "-u", "hostname"],
                           capture_output=True, text=True, check=True)
    assert named.stdout == "joined-name\n"
    assert os.uname().nodename == host_name


def test_hostname_without_uts_namespace_is_still_refused(runc, busybox_rootfs):
    b = runc.bundle(busybox_rootfs, ["true"], hostname="x",
                    linux={"namespaces": [n for n in _spec_ns() if n["type"] != "uts"]})
    r = runc.run(b)
    assert r.returncode != 0 and "hostname needs a uts namespace" in r.stderr


def _no_ns_spec() -> dict:
    return {"hostname": "", "mounts": [],
            "linux": {"namespaces": [], "maskedPaths": [], "readonlyPaths": []}}


def test_no_namespaces_runs_in_the_hosts(runc, busybox_rootfs):
    """A config without namespaces runs in the host's (as runc allows), chrooted into
    its root; exec enters the same root."""
    (busybox_rootfs / "marker").write_text("chrooted\n")
    b = runc.bundle(busybox_rootfs, ["sleep", "1000"], **_no_ns_spec())
    cid = runc.start_detached(b)
    pid = runc.state(cid)["pid"]
    for n in ("pid", "net", "ipc", "uts", "mnt", "cgroup"):
        assert _ns(pid, n) == _ns("self", n), n
    assert os.path.realpath(f"/proc/{pid}/root") == str(busybox_rootfs)
    r = runc.cmd("exec", cid, "cat", "/marker")
    assert (r.returncode, r.stdout) == (0, "chrooted\n"), r.stderr
    runc.cmd("kill", cid, "KILL", check=True)
    reap(pid)
    runc.cmd("delete", cid, check=True)


@pytest.mark.parametrize("over, words", [
    ({"mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]},
     "mounts need a mount namespace"),
    ({"linux": {"maskedPaths": ["/proc/kcore"]}}, "need a mount namespace"),
    ({"root": {"readonly": True}}, "root.readonly needs a mount namespace"),
])
def test_no_mount_namespace_refuses_what_would_change_the_hosts_mounts(
        runc, busybox_rootfs, over, words):
    spec = _no_ns_spec()
    for k, v in over.items():
        spec[k] = {**spec[k], **v} if isinstance(v, dict) and k in spec else v
    r = runc.run(runc.bundle(busybox_rootfs, ["true"], **spec))
    assert r.returncode != 0 and words in r.stderr, r.stderr
    assert not runc.root.exists() or os.listdir(runc.root) == []


# ------------------------------------------------------------- process name


def _fds(pid: int) -> list[str]:
    return sorted(os.listdir(f"/proc/{pid}/fd"))


def test_program_gets_its_own_name(runc, busybox_rootfs, tmp_path):
    """comm (what ps, pidof and pgrep see) is the program's name, as runc's execve by
    path gives: not the number of the descriptor it was executed by (kernels before
    6.14), nor the name of the file a symlink leads to (busybox). Nothing of the
    runtime's reaches it: fds 0-2 only, its cwd inside the root. Same for exec."""
    cid = runc.start_detached(runc.bundle(busybox_rootfs, ["sleep", "1000"],
                                          process={"cwd": "/tmp"}))
    pid = runc.state(cid)["pid"]
    assert open(f"/proc/{pid}/comm").read() == "sleep\n"
    assert _fds(pid) == ["0", "1", "2"]
    assert os.path.samefile(f"/proc/{pid}/cwd", busybox_rootfs / "tmp")
    assert os.path.samefile(f"/proc/{pid}/exe", busybox_rootfs / "bin/busybox")
    r = runc.cmd("exec", cid, "sh", "-c", "pidof sleep; cat /proc/1/comm")
    assert r.returncode == 0 and r.stdout.split() == ["1", "sleep"], r.stdout + r.stderr

    pidfile = tmp_path / "exec.pid"
    runc.cmd("exec", "--detach", "--pid-file", str(pidfile), "--cwd", "/", cid,
             "sleep", "999", check=True)
    xpid = int(pidfile.read_text())
    assert open(f"/proc/{xpid}/comm").read() == "sleep\n"
    assert _fds(xpid) == ["0", "1", "2"]
    assert os.path.samefile(f"/proc/{xpid}/cwd", busybox_rootfs)
    os.kill(xpid, 9)     # reparented to us (the tests' subreaper): reap it
    reap(xpid)


def test_script_is_named_after_itself(runc, busybox_rootfs):
    script = busybox_rootfs / "usr/local/bin/my-script"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("#!/bin/sh\ncat /proc/$$/comm\n")
    script.chmod(0o755)
    r = runc.run(runc.bundle(busybox_rootfs, ["my-script"]))
    assert (r.returncode, r.stdout) == (0, "my-script\n"), r.stderr


# ------------------------------------------------------------------ errors


def test_errors_name_the_failing_step(runc, busybox_rootfs):
    """As runc's do: "error during container init: <step>: <why>", not a bare errno."""
    userns = {"namespaces": _spec_ns() + [{"type": "user"}],
              "uidMappings": [{"containerID": 0, "hostID": 0, "size": 65536}],
              "gidMappings": [{"containerID": 0, "hostID": 0, "size": 65536}]}
    # lowering oom_score_adj needs CAP_SYS_RESOURCE in the host's user namespace
    r = runc.run(runc.bundle(busybox_rootfs, ["true"], process={"oomScoreAdj": -999},
                             linux=userns))
    assert r.returncode != 0
    assert ("error during container init: oom_score_adj and rlimits: "
            "write -999 to /proc/self/oom_score_adj: Permission denied") in r.stderr, r.stderr
    assert "[Errno" not in r.stderr

    r = runc.run(runc.bundle(busybox_rootfs, ["true"], mounts=[
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/x", "type": "no-such-fs", "source": "none"}]))
    assert r.returncode != 0
    assert "error during container init: mounting the config's mounts: " in r.stderr, r.stderr
    assert "no-such-fs" in r.stderr and "[Errno" not in r.stderr

    r = runc.run(runc.bundle(busybox_rootfs, ["true"],
                             linux={"namespaces": _spec_ns(ipc="/proc/self/ns/net")}))
    assert r.returncode != 0
    assert "joining the ipc namespace /proc/self/ns/net: " in r.stderr, r.stderr
    assert not runc.root.exists() or os.listdir(runc.root) == []
