"""Fields of POST /containers/create (and /update) are applied or refused, never
accepted and dropped: each test here failed when the daemon stored the field and
ignored it (the container ran without the setting)."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from acceptance.harness import leftovers
from dockyard.runtime import cgroups

pytestmark = pytest.mark.slow

HOST_V2 = cgroups.host_info()["driver"] == "v2"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _api(daemon):
    return daemon.client().api


def _create(daemon, body: dict, name: str | None = None):
    """The raw create (fields docker-py has no argument for); the response."""
    api = _api(daemon)
    r = api._post_json(api._url("/containers/create"), data=body,
                       params={"name": name} if name else None)
    api._raise_for_status(r)
    return r


def test_seccomp_profile_given_is_applied(daemon, tmp_path):
    prof = tmp_path / "deny-mkdir.json"
    prof.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    r = daemon.docker("run", "--rm", "--security-opt", f"seccomp={prof}", "busybox",
                      "sh", "-c", "mkdir /made && echo MADE", check=False)
    assert "MADE" not in r.stdout and "Operation not permitted" in r.stderr, (r.stdout, r.stderr)
    # an exec gets the container's profile too
    name = _name("sc")
    daemon.docker("run", "-d", "--name", name, "--security-opt", f"seccomp={prof}", "busybox",
                  "sleep", "1000")
    try:
        r = daemon.docker("exec", name, "mkdir", "/made", check=False)
        assert r.returncode != 0 and "Operation not permitted" in r.stderr, r.stderr
    finally:
        daemon.docker("rm", "-f", name, check=False)
    # and a profile that is no profile: refused at create, nothing left behind
    before = leftovers(daemon)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"syscalls": []}))
    r = daemon.docker("run", "--rm", "--security-opt", f"seccomp={bad}", "busybox", "true",
                      check=False)
    assert r.returncode == 125 and "Decoding seccomp profile failed" in r.stderr, r.stderr
    assert leftovers(daemon) == before


def _proc_mounts(daemon, *args: str) -> str:
    return daemon.out("run", "--rm", *args, "busybox", "cat", "/proc/self/mountinfo")


def test_systempaths_unconfined_and_masked_paths_are_applied(daemon):
    default = _proc_mounts(daemon)
    assert " /proc/timer_list " in default and " /proc/sys " in default
    # the CLI sends MaskedPaths [] and ReadonlyPaths [] for it
    free = _proc_mounts(daemon, "--security-opt", "systempaths=unconfined")
    assert " /proc/timer_list " not in free and " /proc/sys " not in free
    # given through the API: they replace the defaults
    name = _name("mp")
    _create(daemon, {"Image": "busybox", "Cmd": ["cat", "/proc/self/mountinfo"],
                     "HostConfig": {"MaskedPaths": ["/proc/cpuinfo"], "ReadonlyPaths": []}},
            name)
    try:
        daemon.docker("start", "-a", name)
        out = daemon.out("logs", name)
        assert " /proc/cpuinfo " in out and " /proc/timer_list " not in out
        assert " /proc/sys " not in out
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_console_size_of_host_config_is_applied(daemon):
    name = _name("cs")
    _create(daemon, {"Image": "busybox", "Tty": True, "Cmd": ["stty", "size"],
                     "HostConfig": {"ConsoleSize": [31, 97]}}, name)
    try:
        daemon.docker("start", name)
        assert daemon.out("wait", name).strip() == "0"
        assert daemon.out("logs", name).split() == ["31", "97"]
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_domainname_is_the_containers(daemon):
    out = daemon.out("run", "--rm", "--domainname", "example.org", "busybox",
                     "cat", "/proc/sys/kernel/domainname")
    assert out.strip() == "example.org"


def test_pid_mode_container_joins_its_pid_namespace(daemon):
    name = _name("pidsrc")
    daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "1234")
    try:
        out = daemon.out("run", "--rm", "--pid", f"container:{name}", "busybox", "ps", "-o",
                         "args")
        assert "sleep 1234" in out, out
    finally:
        daemon.docker("rm", "-f", name, check=False)
    r = daemon.docker("run", "--rm", "--pid", "container:no-such-ctr", "busybox", "true",
                      check=False)
    assert r.returncode != 0 and "No such container: no-such-ctr" in r.stderr, r.stderr


def test_ipc_mode_none_has_no_dev_shm(daemon):
    assert " /dev/shm " in _proc_mounts(daemon)
    assert " /dev/shm " not in _proc_mounts(daemon, "--ipc", "none")


def test_cgroupns_private_is_the_containers_own(daemon):
    host_view = daemon.out("run", "--rm", "busybox", "cat", "/proc/self/cgroup")
    assert daemon.cgroup_parent in host_view
    own = daemon.out("run", "--rm", "--cgroupns", "private", "busybox", "cat",
                     "/proc/self/cgroup")
    assert daemon.cgroup_parent not in own
    assert all(line.endswith(":/") for line in own.split()), own


def _devices_list(daemon, *args: str) -> list[str]:
    name = _name("dev")
    cid = daemon.out("run", "-d", "--name", name, *args, "busybox", "sleep", "1000").strip()
    try:
        if HOST_V2:
            pytest.skip("cgroup v2: device rules are an eBPF program")
        with open(f"/sys/fs/cgroup/devices{daemon.cgroup_parent}/{cid}/devices.list") as f:
            return f.read().split("\n")
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_device_cgroup_rule_is_applied(daemon):
    assert "b 7:* rw" not in _devices_list(daemon)
    assert "b 7:* rw" in _devices_list(daemon, "--device-cgroup-rule", "b 7:* rw")
    # and enforced: a loop device's node opens only with the rule
    cmd = ["busybox", "sh", "-c", "mknod /tmp/l b 7 0 && head -c1 /tmp/l >/dev/null && echo READ"]
    r = daemon.docker("run", "--rm", *cmd, check=False)
    assert "READ" not in r.stdout and "Operation not permitted" in r.stderr, r.stderr
    r = daemon.docker("run", "--rm", "--device-cgroup-rule", "b 7:0 rwm", *cmd, check=False)
    assert "Operation not permitted" not in r.stderr, r.stderr
    r = daemon.docker("run", "--rm", "--device-cgroup-rule", "x 1:1 m", "busybox", "true",
                      check=False)
    assert r.returncode == 125 and "invalid device cgroup format 'x 1:1 m'" in r.stderr


def test_memory_swappiness_is_applied_or_discarded_with_a_warning(daemon):
    name = _name("sw")
    r = daemon.docker("run", "-d", "--name", name, "--memory-swappiness", "37", "busybox",
                      "sleep", "1000")
    try:
        cid = r.stdout.strip()
        host = json.loads(daemon.out("inspect", name))[0]["HostConfig"]
        path = f"/sys/fs/cgroup/memory{daemon.cgroup_parent}/{cid}/memory.swappiness"
        if not HOST_V2 and os.path.exists(path):
            with open(path) as f:
                assert f.read().strip() == "37"
            assert host["MemorySwappiness"] == 37
        else:
            assert "Memory swappiness discarded" in r.stderr
            assert host["MemorySwappiness"] is None
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_kernel_memory_is_discarded_with_dockerds_warning(daemon):
    name = _name("km")
    r = _create(daemon, {"Image": "busybox", "HostConfig": {
        "KernelMemory": 50 << 20, "KernelMemoryTCP": 50 << 20}}, name).json()
    try:
        assert ("Your kernel does not support kernel memory limit capabilities or the cgroup "
                "is not mounted. Limitation discarded.") in r["Warnings"]
        assert ("Your kernel does not support kernel memory TCP limit capabilities or the "
                "cgroup is not mounted. Limitation discarded.") in r["Warnings"]
        host = json.loads(daemon.out("inspect", name))[0]["HostConfig"]
        assert host["KernelMemory"] == 0 and host["KernelMemoryTCP"] == 0
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_annotations_reach_the_runtime_spec(daemon):
    name = _name("ann")
    cid = _create(daemon, {"Image": "busybox", "Cmd": ["sleep", "1000"],
                           "HostConfig": {"Annotations": {"org.example.a": "b"}}}, name).json()["Id"]
    try:
        daemon.docker("start", name)
        with open(daemon.data / "containers" / cid / "bundle" / "config.json") as f:
            assert json.load(f)["annotations"] == {"org.example.a": "b"}
    finally:
        daemon.docker("rm", "-f", name, check=False)


@pytest.mark.parametrize("host, words", [
    ({"CpuCount": 2}, "CpuCount=2: Dockyard does not support it"),
    ({"CpuPercent": 50}, "CpuPercent=50: Dockyard does not support it"),
    ({"IOMaximumIOps": 5}, "linux does not support configuration of maximum IOPs"),
    ({"IOMaximumBandwidth": 5}, "linux does not support configuration of maximum bandwidth"),
    ({"Isolation": "hyperv"}, "Invalid isolation: \"hyperv\" - linux only supports 'default'"),
    ({"DeviceRequests": [{"Count": -1, "Capabilities": [["gpu"]]}]},
     "DeviceRequests=[{'Count': -1, 'Capabilities': [['gpu']]}]: Dockyard does not support it"),
    ({"Cgroup": "container:x"}, "Cgroup='container:x': Dockyard does not support it"),
    ({"CgroupParent": "mine"}, "CgroupParent='mine': Dockyard does not support it"),
    ({"CgroupnsMode": "foo"}, "invalid cgroup namespace mode: foo"),
    ({"IpcMode": "container:x"}, "IpcMode='container:x': Dockyard does not support it"),
    ({"IpcMode": "foo"}, "invalid IPC mode: foo"),
    ({"PidMode": "foo"}, "invalid PID mode: foo"),
    ({"UTSMode": "foo"}, "invalid UTS mode: foo"),
    ({"UsernsMode": "private"}, "UsernsMode='private': Dockyard does not support it"),
    ({"SecurityOpt": ["apparmor=my-profile"]}, "Dockyard does not support AppArmor profiles"),
    ({"SecurityOpt": ["label=type:my_t"]}, "Dockyard does not support SELinux labels"),
    ({"SecurityOpt": ["systempaths=foo"]}, "systempaths takes only 'unconfined'"),
    ({"SecurityOpt": ["seccomp=/not/json"]}, "Decoding seccomp profile failed"),
    ({"MemorySwappiness": 101}, "valid memory swappiness range is 0-100"),
])
def test_unsupported_values_are_refused(daemon, host, words):
    import docker

    before = leftovers(daemon)
    with pytest.raises(docker.errors.APIError) as e:
        _create(daemon, {"Image": "busybox", "Cmd": ["true"], "HostConfig": host})
    assert e.value.status_code == 400 and words in str(e.value), str(e.value)
    assert leftovers(daemon) == before


def test_network_disabled_is_refused_and_zero_values_pass(daemon):
    import docker

    with pytest.raises(docker.errors.APIError) as e:
        _create(daemon, {"Image": "busybox", "NetworkDisabled": True})
    assert e.value.status_code == 400 and "NetworkDisabled=True" in str(e.value)
    # every field at its zero value (what compose and docker-py send): a plain container
    zero = {"CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
            "Isolation": "", "DeviceRequests": None, "Cgroup": "", "CgroupParent": "",
            "CgroupnsMode": "", "IpcMode": "", "PidMode": "", "UTSMode": "", "UsernsMode": "",
            "SecurityOpt": None, "MemorySwappiness": -1, "KernelMemory": 0,
            "KernelMemoryTCP": 0, "DeviceCgroupRules": None, "MaskedPaths": None,
            "ReadonlyPaths": None, "Annotations": None, "ConsoleSize": [0, 0]}
    name = _name("zero")
    r = _create(daemon, {"Image": "busybox", "Cmd": ["true"], "NetworkDisabled": False,
                         "HostConfig": zero}, name)
    try:
        assert not r.json().get("Warnings")
        daemon.docker("start", "-a", name)
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_update_refuses_what_it_does_not_apply(daemon):
    import docker

    name = _name("up")
    daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "1000")
    try:
        api = _api(daemon)
        url = api._url(f"/containers/{name}/update")
        for body in ({"OomKillDisable": True}, {"Ulimits": [{"Name": "nofile", "Soft": 1,
                                                             "Hard": 1}]},
                     {"DeviceCgroupRules": ["c 1:1 m"]}, {"MemorySwappiness": 10}):
            with pytest.raises(docker.errors.APIError) as e:
                api._raise_for_status(api._post_json(url, data=body))
            assert e.value.status_code == 400, body
            assert f"{next(iter(body))}: Dockyard cannot update it" in str(e.value)
        # what the docker CLI sends (every field, zero unless asked for) still works
        daemon.docker("update", "--cpu-shares", "512", name)
        assert json.loads(daemon.out("inspect", name))[0]["HostConfig"]["CpuShares"] == 512
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_our_cli_sends_the_seccomp_profile_and_systempaths(daemon, tmp_path):
    import subprocess
    import sys

    def ours(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dockyard", *args], env=daemon.env,
                              capture_output=True, text=True, timeout=60)

    prof = tmp_path / "deny-mkdir.json"
    prof.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}, indent=2))
    r = ours("run", "--rm", "--security-opt", f"seccomp={prof}", "busybox", "sh", "-c",
             "mkdir /made && echo MADE")
    assert "MADE" not in r.stdout and "Operation not permitted" in r.stderr, (r.stdout, r.stderr)
    r = ours("run", "--rm", "--security-opt", f"seccomp={tmp_path}/none.json", "busybox", "true")
    assert r.returncode == 125 and f"opening seccomp profile ({tmp_path}/none.json) failed" \
        in r.stderr, r.stderr
    r = ours("run", "--rm", "--security-opt", "systempaths=unconfined", "busybox", "cat",
             "/proc/self/mountinfo")
    assert r.returncode == 0 and " /proc/sys " not in r.stdout, r.stderr


def test_no_new_privileges_false_stays_off_in_execs(daemon):
    name = _name("nnp")
    daemon.docker("run", "-d", "--name", name, "--security-opt", "no-new-privileges=false",
                  "busybox", "sleep", "1000")
    try:
        def nnp(*args: str) -> str:
            out = daemon.out(*args, "grep", "NoNewPrivs", "/proc/self/status")
            return out.split()[-1]

        assert nnp("exec", name) == "0"
    finally:
        daemon.docker("rm", "-f", name, check=False)
    assert daemon.out("run", "--rm", "--security-opt", "no-new-privileges", "busybox", "grep",
                      "NoNewPrivs", "/proc/self/status").split()[-1] == "1"


def test_update_applies_the_realtime_period(daemon):
    name = _name("rt")
    cid = daemon.out("run", "-d", "--name", name, "busybox", "sleep", "1000").strip()
    try:
        path = f"/sys/fs/cgroup/cpu{daemon.cgroup_parent}/{cid}/cpu.rt_period_us"
        if HOST_V2 or not os.path.exists(path):
            pytest.skip("no cgroup v1 real-time files on this host")
        daemon.docker("update", "--cpu-rt-period", "500000", name)
        with open(path) as f:
            assert f.read().strip() == "500000"
        assert json.loads(daemon.out("inspect", name))[0]["HostConfig"]["CpuRealtimePeriod"] \
            == 500000
    finally:
        daemon.docker("rm", "-f", name, check=False)


@pytest.mark.parametrize("config, host, words", [
    ({"Hostname": "h"}, {}, "conflicting options: hostname and the network mode"),
    ({}, {"Links": ["x:y"]}, "conflicting options: container type network can't be used with "
                             "links. This would result in undefined behavior"),
    ({}, {"Dns": ["192.0.2.1"]}, "conflicting options: dns and the network mode"),
    ({}, {"ExtraHosts": ["a:192.0.2.1"]},
     "conflicting options: custom host-to-IP mapping and the network mode"),
    ({"MacAddress": "02:42:ac:11:00:09"}, {}, "conflicting options: mac-address and the "
                                              "network mode"),
    ({}, {"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}},
     "conflicting options: port publishing and the container type network mode"),
    ({}, {"PublishAllPorts": True},
     "conflicting options: port publishing and the container type network mode"),
    ({"ExposedPorts": {"80/tcp": {}}}, {},
     "conflicting options: port exposing and the container type network mode"),
])
def test_settings_moot_in_a_shared_network_namespace_are_refused(daemon, config, host, words):
    """dockerd's words and status (checked side by side with Debian's dockerd 20.10):
    they were taken from the other container and the given ones dropped."""
    import docker

    name = _name("netsrc")
    daemon.docker("create", "--name", name, "busybox", "sleep", "1000")
    try:
        before = leftovers(daemon)
        with pytest.raises(docker.errors.APIError) as e:
            _create(daemon, {"Image": "busybox", **config,
                             "HostConfig": {"NetworkMode": f"container:{name}", **host}})
        assert e.value.status_code == 400 and words in str(e.value), str(e.value)
        assert leftovers(daemon) == before
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_host_network_conflicts_and_warning(daemon):
    import docker

    for config, host, words in (
            ({"MacAddress": "02:42:ac:11:00:09"}, {},
             "conflicting options: mac-address and the network mode"),
            ({}, {"Links": ["x:y"]}, "conflicting options: host type networking can't be used "
                                     "with links")):
        with pytest.raises(docker.errors.APIError) as e:
            _create(daemon, {"Image": "busybox", **config,
                             "HostConfig": {"NetworkMode": "host", **host}})
        assert e.value.status_code == 400 and words in str(e.value), str(e.value)
    name = _name("hostp")
    r = daemon.docker("create", "--name", name, "--network", "host", "-p", "8080:80", "busybox")
    try:
        assert "Published ports are discarded when using host network mode" in r.stderr
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_exec_start_console_size_is_applied(daemon):
    import time

    name = _name("ecs")
    daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "1000")
    try:
        api = _api(daemon)
        eid = api.exec_create(name, ["sh", "-c", "stty size > /tmp/size"], tty=True)["Id"]
        api._raise_for_status(api._post_json(api._url(f"/exec/{eid}/start"), data={
            "Detach": True, "Tty": True, "ConsoleSize": [22, 77]}))
        deadline = time.monotonic() + 10
        while api.exec_inspect(eid)["Running"] or api.exec_inspect(eid)["ExitCode"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert daemon.out("exec", name, "cat", "/tmp/size").split() == ["22", "77"]
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_create_platform_must_match_the_image(daemon):
    import docker

    arch = json.loads(daemon.out("image", "inspect", "busybox"))[0]["Architecture"]
    other = "arm64" if arch != "arm64" else "amd64"
    api = _api(daemon)
    with pytest.raises(docker.errors.APIError) as e:
        api.create_container("busybox", "true", platform=f"linux/{other}")
    assert e.value.status_code == 404 and (
        f"image with reference busybox was found but does not match the specified platform: "
        f"wanted linux/{other}, actual: linux/{arch}") in str(e.value), str(e.value)
    cid = api.create_container("busybox", "true", platform=f"linux/{arch}")["Id"]
    api.remove_container(cid)


def test_config_shell_goes_with_a_commit(daemon):
    name = _name("sh")
    _create(daemon, {"Image": "busybox", "Cmd": ["true"], "Shell": ["/bin/sh", "-ec"]}, name)
    try:
        assert json.loads(daemon.out("inspect", name))[0]["Config"]["Shell"] == ["/bin/sh", "-ec"]
        iid = daemon.out("commit", name).strip()
        try:
            cfg = json.loads(daemon.out("image", "inspect", iid))[0]["Config"]
            assert cfg["Shell"] == ["/bin/sh", "-ec"]
        finally:
            daemon.docker("rmi", iid, check=False)
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_cgroup_parent_is_applied(daemon):
    parent = f"{daemon.cgroup_parent}/own-{uuid.uuid4().hex[:6]}"   # the harness cleans it
    name = _name("cgp")
    cid = daemon.out("run", "-d", "--name", name, "--cgroup-parent", parent, "busybox",
                     "sleep", "1000").strip()
    try:
        ctl = "unified" if HOST_V2 else "memory"
        base = "/sys/fs/cgroup" if HOST_V2 else f"/sys/fs/cgroup/{ctl}"
        pid = json.loads(daemon.out("inspect", name))[0]["State"]["Pid"]
        with open(f"{base}{parent}/{cid}/cgroup.procs") as f:
            assert str(pid) in f.read().split()
        daemon.docker("update", "--memory", "64m", "--memory-swap", "-1", name)
        if not HOST_V2:
            with open(f"{base}{parent}/{cid}/memory.limit_in_bytes") as f:
                assert int(f.read()) == 64 << 20
        stats = json.loads(daemon.out("stats", "--no-stream", "--format", "{{json .}}", name))
        assert stats["MemUsage"].endswith("64MiB"), stats
    finally:
        import glob
        import time

        daemon.docker("rm", "-f", name, check=False)
        for _ in range(50):   # the parent the runtime made (its leaf went with the rm)
            left = [d for d in glob.glob(f"/sys/fs/cgroup/*{parent}") if os.path.isdir(d)]
            for d in left:
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            if not left:
                break
            time.sleep(0.1)
    r = daemon.docker("run", "--rm", "--cgroup-parent", "relative", "busybox", "true",
                      check=False)
    assert r.returncode == 125 and "CgroupParent='relative': Dockyard does not support it" \
        in r.stderr, r.stderr
