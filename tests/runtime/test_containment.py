"""What a container can see and do: namespaces, capabilities, limits, masks."""

from __future__ import annotations

import json
import os
import time

import pytest

from runtime_helpers import DOCKER_CAPS, docker_caps
from dockyard.runtime.caps import mask

ALL_NS = ("pid", "network", "ipc", "uts", "mount", "cgroup")


def _status_field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in {text!r}")


def _run(runc, rootfs, script, **over):
    r = runc.run(runc.bundle(rootfs, ["sh", "-c", script], **over))
    return r


def test_pid1_and_host_processes_invisible(runc, busybox_rootfs):
    r = _run(runc, busybox_rootfs, "echo $$; ls /proc | grep -c '^[0-9]'")
    assert r.returncode == 0, r.stderr
    pid, count = r.stdout.split()
    assert pid == "1"
    assert int(count) <= 3          # sh, ls, grep — none of the host's processes


def test_program_starts_with_default_signal_dispositions(runc, busybox_rootfs):
    """Nothing the runtime ignores or blocks (Python ignores SIGPIPE and SIGXFSZ)
    reaches the user's program (`yes | head` must end by SIGPIPE, as under runc)."""
    r = runc.run(runc.bundle(busybox_rootfs, ["cat", "/proc/self/status"]))
    assert r.returncode == 0, r.stderr
    assert int(_status_field(r.stdout, "SigIgn"), 16) == 0
    assert int(_status_field(r.stdout, "SigBlk"), 16) == 0


def test_ambient_caps_without_inheritable_are_skipped_as_runc_does(runc, busybox_rootfs):
    """`runc spec` asks for ambient capabilities but no inheritable ones; the kernel
    refuses to raise those, and runc goes on without them: so must we."""
    caps = {**docker_caps(), "ambient": ["CAP_KILL", "CAP_NET_BIND_SERVICE"]}
    r = runc.run(runc.bundle(busybox_rootfs, ["cat", "/proc/self/status"],
                             process={"capabilities": caps}))
    assert r.returncode == 0, r.stderr
    assert int(_status_field(r.stdout, "CapAmb"), 16) == 0
    assert int(_status_field(r.stdout, "CapEff"), 16) != 0


def test_own_namespaces(runc, busybox_rootfs):
    r = _run(runc, busybox_rootfs, "for n in pid net ipc uts mnt cgroup; do "
             "readlink /proc/self/ns/$n; done")
    assert r.returncode == 0, r.stderr
    inside = r.stdout.split()
    host = [os.readlink(f"/proc/self/ns/{n}") for n in ("pid", "net", "ipc", "uts", "mnt",
                                                       "cgroup")]
    assert len(inside) == 6
    for a, b in zip(inside, host):
        assert a != b, a


def test_hostname_mounts_ipc_network(runc, busybox_rootfs):
    os.system("true")
    r = _run(runc, busybox_rootfs, "hostname; cat /proc/self/mounts; echo ---; "
             "ls /sys/class/net; echo ---; ipcs -q | grep -c 0x || true",
             hostname="box-containment")
    assert r.returncode == 0, r.stderr
    host_part, mounts, nets, _ipc = (r.stdout.split("\n", 1)[0],
                                     *r.stdout.split("\n", 1)[1].split("---\n"))
    assert host_part == "box-containment"
    assert str(busybox_rootfs) not in mounts and " /work" not in mounts
    assert nets.split() == ["lo"]


def test_cannot_mount_with_docker_caps(runc, busybox_rootfs):
    r = _run(runc, busybox_rootfs, "mount -t tmpfs none /mnt && echo MOUNTED",
             process={"capabilities": docker_caps()})
    assert "MOUNTED" not in r.stdout
    assert r.returncode != 0


def test_capability_masks_equal_request(runc, busybox_rootfs):
    r = _run(runc, busybox_rootfs, "cat /proc/self/status",
             process={"capabilities": docker_caps()})
    assert r.returncode == 0, r.stderr
    want = mask(DOCKER_CAPS)
    for field in ("CapBnd", "CapEff", "CapPrm"):
        assert int(_status_field(r.stdout, field), 16) == want, field
    assert int(_status_field(r.stdout, "CapInh"), 16) == 0
    assert int(_status_field(r.stdout, "CapAmb"), 16) == 0


def test_ambient_capabilities_for_non_root(runc, busybox_rootfs):
    caps = ["CAP_NET_BIND_SERVICE"]
    r = _run(runc, busybox_rootfs, "cat /proc/self/status", process={
        "user": {"uid": 1000, "gid": 1000},
        "capabilities": {s: caps for s in ("bounding", "effective", "permitted", "inheritable",
                                            "ambient")}})
    assert r.returncode == 0, r.stderr
    assert int(_status_field(r.stdout, "CapAmb"), 16) == mask(caps)
    assert int(_status_field(r.stdout, "CapEff"), 16) == mask(caps)


def test_no_new_privs_and_user(runc, busybox_rootfs):
    r = _run(runc, busybox_rootfs, "cat /proc/self/status", process={
        "noNewPrivileges": True,
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [100, 2000]}})
    assert r.returncode == 0, r.stderr
    assert _status_field(r.stdout, "NoNewPrivs") == "1"
    assert _status_field(r.stdout, "Uid").split() == ["1000"] * 4
    assert _status_field(r.stdout, "Gid").split() == ["1000"] * 4
    assert sorted(_status_field(r.stdout, "Groups").split()) == ["100", "2000"]


def test_rlimits_and_umask(runc, busybox_rootfs):
    r = _run(runc, busybox_rootfs, "ulimit -n; ulimit -Hn; umask", process={
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}],
        "user": {"uid": 0, "gid": 0, "umask": 0o077}})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["123", "456", "0077"]


def test_readonly_root(runc, busybox_rootfs):
    r = _run(runc, busybox_rootfs, "touch /x 2>&1; touch /tmp/y 2>&1; echo done",
             root={"readonly": True})
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("Read-only file system") == 2
    assert not (busybox_rootfs / "x").exists()


MASKED = ["/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
          "/proc/latency_stats", "/proc/timer_list", "/proc/sched_debug", "/proc/scsi",
          "/sys/firmware", "/sys/devices/virtual/powercap"]


def test_masked_readonly_paths_and_sys(runc, busybox_rootfs):
    files = [p for p in MASKED if os.path.isfile(p)]      # this kernel's subset
    dirs = [p for p in MASKED if os.path.isdir(p)]
    assert files and dirs
    script = "".join(f"wc -c < {p}; " for p in files) + "".join(
        f"ls -A {p} | wc -l; " for p in dirs) + (
        "echo 1 > /proc/sys/kernel/panic || echo RO1; "
        "touch /sys/kernel/x || echo RO2; "
        "mkdir /sys/fs/cgroup/x || echo RO3; "
        "touch /proc/irq/x || echo RO4")
    r = _run(runc, busybox_rootfs, script, process={"capabilities": docker_caps()},
             linux={"maskedPaths": MASKED})
    lines = r.stdout.split()
    n = len(files) + len(dirs)
    assert lines[:n] == ["0"] * n, r.stdout + r.stderr
    assert lines[n:] == ["RO1", "RO2", "RO3", "RO4"], r.stdout + r.stderr
    assert "Read-only file system" in r.stderr


def test_cannot_set_clock_reboot_or_load_modules(runc, busybox_rootfs):
    # first make sure the dangerous calls below would at worst hit the container
    pre = _run(runc, busybox_rootfs, "readlink /proc/self/ns/pid; cat /proc/self/status",
               process={"capabilities": docker_caps()})
    assert pre.returncode == 0
    assert pre.stdout.split()[0] != os.readlink("/proc/self/ns/pid")
    assert not int(_status_field(pre.stdout, "CapBnd"), 16) & mask(
        ["CAP_SYS_TIME", "CAP_SYS_BOOT", "CAP_SYS_MODULE"])
    # setting the clock to "now" is harmless even if it were allowed
    r = _run(runc, busybox_rootfs,
             'date -s "@$(date +%s)" 2>&1 | grep -q "not permitted" && echo NOCLOCK; '
             "insmod /bin/busybox 2>&1 | grep -q \"can't insert\" && echo NOMODULE; "
             "reboot -f -n 2>&1 | grep -q 'not permitted' && echo NOREBOOT; echo alive",
             process={"capabilities": docker_caps()})
    # (a kernel without module support refuses insmod with ENOSYS instead of
    # EPERM; the bounding set above is what denies CAP_SYS_MODULE either way)
    assert r.stdout.split() == ["NOCLOCK", "NOMODULE", "NOREBOOT", "alive"], r.stdout


def test_memory_limit_oom_kills_hog(runc, busybox_rootfs):
    b = runc.bundle(busybox_rootfs, ["dd", "if=/dev/zero", "of=/dev/null", "bs=256M",
                                     "count=1"],
                    linux={"resources": {"memory": {"limit": 32 << 20, "swap": 32 << 20}}})
    r = runc.run(b)
    assert r.returncode == 137, r.stdout + r.stderr


def test_pids_limit_contains_fork_bomb(runc, busybox_rootfs):
    # a subshell forks far past the limit (and dies of it: ash treats a
    # failed fork as fatal); PID 1 survives and reports with a builtin
    script = ("(i=0; while [ $i -lt 60 ]; do sleep 1000 & i=$((i+1)); done) 2>/tmp/err; "
              "echo done > /tmp/done; sleep 1000")
    b = runc.bundle(busybox_rootfs, ["sh", "-c", script],
                    linux={"resources": {"pids": {"limit": 16}}})
    cid = runc.start_detached(b)
    deadline = time.monotonic() + 30
    while not (busybox_rootfs / "tmp/done").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pids = json.loads(runc.cmd("ps", "--format", "json", cid, check=True).stdout)
    assert 10 <= len(pids) <= 16
    assert "fork" in (busybox_rootfs / "tmp/err").read_text()


def test_pause_freezes_and_resume_thaws(runc, busybox_rootfs):
    ticks = busybox_rootfs / "tmp/ticks"
    b = runc.bundle(busybox_rootfs, ["sh", "-c",
                                     "while true; do echo x >> /tmp/ticks; sleep 0.02; done"])
    cid = runc.start_detached(b)

    def count():
        return len(ticks.read_text()) if ticks.exists() else 0

    deadline = time.monotonic() + 10
    while count() == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    runc.cmd("pause", cid, check=True)
    assert runc.state(cid)["status"] == "paused"
    frozen = count()
    time.sleep(0.5)
    assert count() == frozen
    r = runc.cmd("exec", cid, "true")
    assert r.returncode != 0 and "paused" in r.stderr
    runc.cmd("resume", cid, check=True)
    assert runc.state(cid)["status"] == "running"
    deadline = time.monotonic() + 10
    while count() == frozen:
        assert time.monotonic() < deadline
        time.sleep(0.05)


SECCOMP_DENY_MKDIR = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
}


@pytest.mark.parametrize("nnp", [False, True])
def test_seccomp_denied_syscall_fails_eperm(runc, busybox_rootfs, nnp):
    r = _run(runc, busybox_rootfs, "mkdir /tmp/nope; echo rc=$?; touch /tmp/ok && echo ok",
             process={"noNewPrivileges": nnp}, linux={"seccomp": SECCOMP_DENY_MKDIR})
    assert r.returncode == 0, r.stderr
    assert "Operation not permitted" in r.stderr
    assert "rc=1" in r.stdout and "ok" in r.stdout
    assert not (busybox_rootfs / "tmp/nope").exists()


def test_sysctl_in_own_namespace(runc, busybox_rootfs):
    host = open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read().strip()
    r = _run(runc, busybox_rootfs, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start",
             linux={"sysctl": {"net.ipv4.ip_unprivileged_port_start": "80"},
                    "readonlyPaths": []})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "80"
    assert open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read().strip() == host


def test_linux_devices_created(runc, busybox_rootfs):
    r = _run(runc, busybox_rootfs, "ls -ln /dev/mydev /dev/null /dev/zero /dev/ptmx",
             linux={"devices": [{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 7,
                                 "fileMode": 0o640, "uid": 1000, "gid": 1000}],
                    "resources": {"devices": [{"allow": False, "access": "rwm"},
                                              {"allow": True, "type": "c", "major": 1,
                                               "minor": 7, "access": "rwm"}]}})
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if "mydev" in ln][0]
    assert line.startswith("crw-r-----") and " 1000 " in line and "1,   7" in line
    assert "ptmx -> pts/ptmx" in r.stdout


def test_cgroup_mount_shows_own_cgroup(runc, busybox_rootfs):
    r = _run(runc, busybox_rootfs,
             "cat /proc/self/cgroup; echo ---; cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
             "2>/dev/null || cat /sys/fs/cgroup/memory.max",
             linux={"resources": {"memory": {"limit": 64 << 20}}})
    assert r.returncode == 0, r.stderr
    cgroups, limit = r.stdout.split("---\n")
    assert all(line.endswith(":/") for line in cgroups.split()), cgroups   # cgroup namespace
    assert limit.strip() == str(64 << 20)


def test_oom_score_adj_domainname_and_no_pivot(runc, busybox_rootfs):
    b = runc.bundle(busybox_rootfs, ["sh", "-c", "cat /proc/self/oom_score_adj; "
                                     "cat /proc/sys/kernel/domainname; ls /"],
                    domainname="dom.example", process={"oomScoreAdj": 500})
    for flags in ((), ("--no-pivot",)):
        r = runc.run(b, None, *flags)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.split()
        assert lines[:2] == ["500", "dom.example"], r.stdout
        assert "bin" in lines and "work" not in lines


def test_default_dev_entries_leave_existing_ones_and_follow_no_symlink(runc, busybox_rootfs,
                                                                      tmp_path):
    """Without a tmpfs on /dev, the image's own /dev gets the default entries: an entry
    that already exists (of any kind) is left as it is, and a symlink planted at a
    device's name is not followed out of the rootfs."""
    from dockyard.runtime.spec import make_spec
    outside = tmp_path / "outside"
    outside.mkdir()
    dev = busybox_rootfs / "dev"
    dev.mkdir(exist_ok=True)
    (dev / "zero").symlink_to(outside / "zero-target")      # dangling, points out
    (dev / "stdout").write_text("image's own file\n")
    (dev / "random").mkdir()
    mounts = [m for m in make_spec(str(busybox_rootfs), ["true"])["mounts"]
              if m["destination"] != "/dev"]
    b = runc.bundle(busybox_rootfs, ["sh", "-c", "ls -l /dev; cat /dev/stdout"])
    spec = json.loads((b / "config.json").read_text())
    spec["mounts"] = mounts
    (b / "config.json").write_text(json.dumps(spec))
    r = runc.run(b)
    assert r.returncode == 0, r.stderr
    assert list(outside.iterdir()) == []                   # nothing made through the link
    assert (dev / "zero").is_symlink() and (dev / "random").is_dir()
    assert "image's own file" in r.stdout
    lines = {ln.split()[-1]: ln for ln in r.stdout.splitlines() if ln.startswith(("c", "l"))}
    assert lines["null"].startswith("crw-rw-rw-") and lines["urandom"].startswith("crw-rw-rw-")
    assert "fd -> /proc/self/fd" in r.stdout and "ptmx -> pts/ptmx" in r.stdout
