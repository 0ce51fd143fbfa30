"""Issue 15's remaining details, each run on our daemon and on Debian's dockerd side by side
where the behaviour is Docker's: container defaults (ping_group_range, supplementary groups
from the image's /etc/group, a privileged container's devices), realtime CPU settings, image
removal and pruning, `docker load` of a bad tar, stats' network and block I/O, `ps` during a
restart back-off."""

from __future__ import annotations

import os
import stat
import subprocess
import uuid

import pytest

from helpers.dockerd import dockerd_available, running_dockerd

pytestmark = [pytest.mark.slow]


def _n(prefix: str = "dd") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _busybox_tar(root, group_extra: str = "") -> bytes:
    from helpers.rootfs import build_busybox_rootfs

    if not (root / "bin/busybox").exists():
        build_busybox_rootfs(root)
    if group_extra:
        with open(root / "etc/group", "a") as f:
            f.write(group_extra)
    return subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True,
                          check=True).stdout


class _Ours:
    """Our daemon with dockerd's calling convention (text output, check=True)."""

    def __init__(self, d):
        self.d = d
        self.env = d.env

    def docker(self, *args, check=True, input=None, timeout=120):
        return self.d.docker(*args, check=check, input=input, timeout=timeout)


@pytest.fixture(scope="module")
def both(daemon, tmp_path_factory):
    """(ours, dockerd), each with busybox and bbwheel (root listed in a wheel group)."""
    if not dockerd_available():
        pytest.skip("dockerd not installed")
    base = tmp_path_factory.mktemp("dkd")
    wheel = _busybox_tar(base / "wheelroot", "wheel:x:10:root\nstaff:x:50:tester,root\n")
    ours = _Ours(daemon)
    ours.docker("import", "-c", 'CMD ["sh"]', "-", "bbwheel", input=wheel)
    with running_dockerd(base / "d") as d:
        class _Theirs:
            env = d.env

            @staticmethod
            def docker(*args, check=True, input=None, timeout=120):
                text = not isinstance(input, bytes)
                r = subprocess.run(["/usr/local/bin/docker", *args], env=d.env, input=input,
                                   capture_output=True, timeout=timeout, text=text)
                if check and r.returncode:
                    raise AssertionError(f"dockerd: docker {args} -> {r.returncode}: {r.stderr}")
                return r

        _Theirs.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=_busybox_tar(base / "bb"))
        _Theirs.docker("import", "-c", 'CMD ["sh"]', "-", "bbwheel", input=wheel)
        try:
            yield ours, _Theirs
        finally:
            ids = _Theirs.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                _Theirs.docker("rm", "-f", *ids, check=False)


def _out(side, *args) -> str:
    return side.docker(*args).stdout.strip()


def test_container_defaults_as_dockerd(both):
    """ping_group_range in a container's own netns (not with --network host), root's and
    USER's supplementary groups from the image's /etc/group, HostConfig.Sysctls winning."""
    cases = [
        ("run", "--rm", "busybox", "cat", "/proc/sys/net/ipv4/ping_group_range"),
        ("run", "--rm", "--network", "host", "busybox", "cat",
         "/proc/sys/net/ipv4/ping_group_range"),
        ("run", "--rm", "--sysctl", "net.ipv4.ping_group_range=5 6", "busybox", "cat",
         "/proc/sys/net/ipv4/ping_group_range"),
        ("run", "--rm", "bbwheel", "id"),
        ("run", "--rm", "-u", "tester", "bbwheel", "id"),
        ("run", "--rm", "-u", "0", "bbwheel", "id"),
        ("run", "--rm", "-u", "root:daemon", "bbwheel", "id"),
        ("run", "--rm", "--group-add", "100", "bbwheel", "id"),
        ("run", "--rm", "busybox", "id"),
    ]
    ours, theirs = both
    got = [(" ".join(c), _out(ours, *c)) for c in cases]
    want = [(" ".join(c), _out(theirs, *c)) for c in cases]
    assert got == want
    assert got[0][1].split() == ["0", "2147483647"]
    assert "10(wheel)" in got[3][1]


def _host_devices() -> list[str]:
    """Character and block devices under the host's /dev, as containerd's HostDevices
    (which dockerd uses for --privileged) lists them."""
    out = []
    for top, dirs, files in os.walk("/dev"):
        dirs[:] = [x for x in dirs if not (top == "/dev" and x in ("pts", "shm", "fd", "mqueue"))]
        for f in files:
            p = os.path.join(top, f)
            st = os.lstat(p)
            if (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and p != "/dev/console":
                out.append(p)
    return sorted(out)


def test_privileged_container_gets_the_hosts_devices(both):
    """Every device of the host's /dev, with the host node's mode and owner (dockerd runs
    no --privileged container on this machine: runc cannot apply the full capability set
    here, so the expectation is containerd's HostDevices rule applied to the host)."""
    ours, theirs = both
    find = ("sh", "-c", "find /dev -type c -o -type b | sort")
    got = set(_out(ours, "run", "--rm", "--privileged", "busybox", *find).split())
    host = set(_host_devices()) - {"/dev/ptmx"}   # the runtime's link to pts/ptmx, as runc's
    assert len(host) > 20
    assert host <= got
    assert got - host <= {"/dev/pts/ptmx"}
    st = os.stat("/dev/loop0")
    assert _out(ours, "run", "--rm", "--privileged", "busybox", "stat", "-c", "%a %u %g %t:%T",
                "/dev/loop0") == (f"{stat.S_IMODE(st.st_mode):o} {st.st_uid} {st.st_gid} "
                                  f"{os.major(st.st_rdev):x}:{os.minor(st.st_rdev):x}")
    # not privileged: the defaults, as dockerd's
    plain = ("run", "--rm", "busybox", *find)
    assert _out(ours, *plain) == _out(theirs, *plain)


def test_cpu_realtime_accepted_and_applied_as_dockerd(both):
    """CpuRealtimeRuntime/Period are stored, checked against each other, and given to the
    cgroup: the kernel refuses a budget the parent cgroup lacks (dockerd's parent has
    none either), and applies it where the parent has one."""
    ours, theirs = both
    for side in both:
        name = _n("rt")
        side.docker("create", "--name", name, "--cpu-rt-runtime", "5000", "--cpu-rt-period",
                    "100000", "busybox", "true")
        assert _out(side, "inspect", "-f", "{{.HostConfig.CpuRealtimeRuntime}} "
                    "{{.HostConfig.CpuRealtimePeriod}}", name) == "5000 100000"
        side.docker("rm", name)
        bad = side.docker("run", "--rm", "--cpu-rt-runtime", "2000", "--cpu-rt-period", "1000",
                          "busybox", "true", check=False)
        assert bad.returncode == 125
        assert "cpu real-time runtime cannot be higher than cpu real-time period" in bad.stderr
    if not os.path.exists("/sys/fs/cgroup/cpu/cpu.rt_runtime_us"):
        pytest.skip("no cgroup v1 cpu controller with realtime files on this host")
    for side in both:   # no budget in the parent: the kernel's EINVAL, a failed start
        r = side.docker("run", "--rm", "--cpu-rt-runtime", "10000", "busybox", "true", check=False)
        assert r.returncode == 125 and "cpu.rt_runtime_us" in r.stderr
        assert "invalid argument" in r.stderr.lower()
    # a parent with a budget: applied
    ours.docker("run", "--rm", "busybox", "true")   # makes the parent cgroup
    parent = f"/sys/fs/cgroup/cpu{ours.d.cgroup_parent}"
    with open(f"{parent}/cpu.rt_runtime_us", "w") as f:
        f.write("50000")
    cid = _out(ours, "run", "-d", "--cpu-rt-runtime", "10000", "busybox", "sleep", "30")
    try:
        with open(f"{parent}/{cid}/cpu.rt_runtime_us") as f:
            assert f.read().strip() == "10000"
    finally:
        ours.docker("rm", "-f", cid)


def test_rmi_of_an_image_a_running_container_uses(both, tmp_path):
    """`rmi -f ID` is refused while a container runs from it ((cannot be forced), as dockerd);
    `rmi -f` of its last tag only untags; once the container is gone the ID goes."""
    tar = _busybox_tar(tmp_path / "root")
    results = []
    for side in both:
        side.docker("import", "-c", "LABEL g2=rmi", "-", "g2rmi:one", input=tar)
        side.docker("tag", "g2rmi:one", "g2rmi:two")
        iid = _out(side, "inspect", "-f", "{{.Id}}", "g2rmi:one")
        cid = _out(side, "run", "-d", "g2rmi:one", "sleep", "100")
        try:
            r = side.docker("rmi", "-f", iid[7:19], check=False)
            refused = (r.returncode, r.stderr.replace(iid[7:19], "<img>").replace(cid[:12], "<ctr>"))
            assert _out(side, "image", "inspect", "-f", "{{len .RepoTags}}", iid) == "2"
            side.docker("rmi", "-f", "g2rmi:one")
            untag = side.docker("rmi", "-f", "g2rmi:two").stdout.strip()
            left = _out(side, "image", "inspect", "-f", "{{.Id}} {{len .RepoTags}}", iid)
        finally:
            side.docker("rm", "-f", cid)
        gone = side.docker("rmi", iid[7:19]).stdout.strip().replace(iid, "<id>")
        results.append((refused, untag, left.replace(iid, "<id>"), gone.splitlines()[0]))
    ours, theirs = results
    assert ours == theirs
    assert "conflict: unable to delete <img> (cannot be forced) - image is being used by " \
           "running container <ctr>" in ours[0][1]
    assert ours[1] == "Untagged: g2rmi:two" and ours[2] == "<id> 0"


def test_image_prune_all_removes_an_image_with_tags_and_digests(daemon, tmp_path):
    """One `image prune -a` removes an image known by several tags and repository digests
    (the digests go with their tag; dockerd skips a reference already gone)."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "registry"))
    from registry_helpers import running_registry

    tar = _busybox_tar(tmp_path / "root")
    daemon.docker("import", "-c", "LABEL g2=prune", "-", "g2prune:src", input=tar)
    iid = daemon.out("inspect", "-f", "{{.Id}}", "g2prune:src")
    with running_registry(tmp_path / "reg") as reg:
        for ref in (f"{reg.addr}/g2/a:1", f"{reg.addr}/g2/a:2", f"{reg.addr}/g2/b:1"):
            daemon.docker("tag", "g2prune:src", ref)
            daemon.docker("push", ref)
        for ref in (f"{reg.addr}/g2/a:1", f"{reg.addr}/g2/b:1"):
            daemon.docker("pull", ref)
    digests = daemon.out("inspect", "-f", "{{len .RepoDigests}} {{len .RepoTags}}", iid)
    assert digests.split()[0] != "0" and digests.split()[1] == "4", digests
    r = daemon.docker("image", "prune", "-a", "-f", "--filter", "label=g2=prune")
    assert f"deleted: {iid}" in r.stdout, r.stdout
    assert daemon.docker("image", "inspect", iid, check=False).returncode == 1
    assert "Total reclaimed space" in r.stdout


def test_bad_tar_to_load_is_an_image_load_error(both):
    """dockerd answers a bad archive with a 200 whose stream carries the error, which
    docker-py's images.load() raises as ImageLoadError and the CLI prints (exit 1)."""
    import docker

    for side in both:
        client = docker.DockerClient(base_url=side.env["DOCKER_HOST"], timeout=60)
        try:
            for data in (b"abc", b"", b"definitely not a tar archive" * 40):
                with pytest.raises(docker.errors.ImageLoadError):
                    client.images.load(data)
        finally:
            client.close()
        r = side.docker("load", input=b"abc", check=False)
        assert r.returncode == 1 and r.stderr.strip() \
            and not r.stderr.startswith(b"Error response from daemon")


def test_ps_and_inspect_during_restart_backoff(both):
    """Between a restart-policy container's death and its next start, ps shows
    'Restarting (N) X ago' (also without -a and with --filter status=restarting) and
    inspect shows State restarting with the exit code, as dockerd."""
    import re
    import time

    for side in both:
        name = _n("rs")
        side.docker("run", "-d", "--name", name, "--restart", "always", "busybox", "sh", "-c",
                    "sleep 0.2; exit 3")
        try:
            deadline, seen = time.monotonic() + 30, None
            while time.monotonic() < deadline:
                st = _out(side, "ps", "--filter", f"name={name}", "--format", "{{.Status}}")
                if st.startswith("Restarting"):
                    seen = st
                    state = _out(side, "inspect", "-f", "{{.State.Status}} {{.State.Restarting}} "
                                 "{{.State.Running}} {{.State.ExitCode}} {{.State.Pid}}", name)
                    filtered = _out(side, "ps", "-q", "--filter", "status=restarting",
                                    "--filter", f"name={name}")
                    if state.startswith("restarting"):
                        break
                time.sleep(0.05)
            assert seen and re.fullmatch(r"Restarting \(3\) (Less than a second|\d+ seconds?) ago",
                                         seen), (side, seen)
            assert state == "restarting true true 3 0", (side, state)
            assert filtered, side
        finally:
            side.docker("rm", "-f", name)


def test_push_after_login_to_an_htpasswd_registry(daemon, tmp_path):
    """docker login, then a push of a several-layer image: the layer requests go out in
    parallel, each meets its own 401 challenge and each is retried with the credentials
    (before: only one was, the others failed 'unauthorized'); then a pull back."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "registry"))
    from registry_helpers import running_registry, write_htpasswd

    pw = write_htpasswd(tmp_path / "htpasswd", {"alice": "alicepw"})
    name = _n("lay")
    base = "busybox"
    for i in range(4):   # four layers of their own on top of busybox's
        daemon.docker("run", "--name", f"{name}-{i}", base, "sh", "-c",
                      f"head -c {20000 + i} /dev/urandom > /layer{i}")
        daemon.docker("commit", f"{name}-{i}", f"{name}:{i}")
        daemon.docker("rm", f"{name}-{i}")
        base = f"{name}:{i}"
    with running_registry(tmp_path / "reg", "--auth", "basic", "--htpasswd", str(pw)) as reg:
        first = f"{reg.addr}/team/{name}:v1"
        daemon.docker("tag", base, first)
        r = daemon.docker("push", first, check=False)
        assert r.returncode == 1 and "unauthorized" in (r.stderr + r.stdout).lower(), r
        daemon.docker("login", "-u", "alice", "--password-stdin", reg.addr, input="alicepw")
        try:
            # a fresh repository each round (every layer uploaded again): the race showed
            # on most pushes before
            for k in range(3):
                ref = f"{reg.addr}/team/{name}-{k}:v1"
                daemon.docker("tag", base, ref)
                out = daemon.docker("push", ref).stdout
                assert "v1: digest: sha256:" in out, out
            daemon.docker("rmi", ref)
            daemon.docker("pull", ref)
            assert daemon.out("run", "--rm", ref, "wc", "-c", "/layer3").split()[0] == "20003"
        finally:
            daemon.docker("logout", reg.addr, check=False)
            for ref in [first] + [f"{reg.addr}/team/{name}-{k}:v1" for k in range(3)] + \
                    [f"{name}:{i}" for i in range(4)]:
                daemon.docker("rmi", "-f", ref, check=False)


@pytest.fixture
def netdaemon(tmp_path):
    from acceptance.harness import running

    with running(tmp_path, network=True) as d:
        yield d


def test_stats_networks_and_blkio(netdaemon):
    """stats' networks (per interface of the container's netns, lo left out) and
    blkio_stats (from its cgroup, in dockerd's v1/v2 shape) are filled, and docker stats
    shows NET I/O and BLOCK I/O."""
    d = netdaemon
    cid = d.out("run", "-d", "busybox", "sleep", "100")
    gw = d.out("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.Gateway}}{{end}}", cid)
    d.docker("exec", cid, "ping", "-c", "3", "-W", "2", gw)
    size = os.path.getsize("/bin/busybox")
    d.docker("exec", cid, "dd", "if=/bin/busybox", "of=/dev/null", "bs=64k", "iflag=direct")
    client = d.client()
    try:
        st = client.api.stats(cid, stream=False)
        nets = st["networks"]
        assert list(nets) == ["eth0"], nets
        assert set(nets["eth0"]) == {f"{d}_{k}" for d in ("rx", "tx")
                                     for k in ("bytes", "packets", "errors", "dropped")}
        assert nets["eth0"]["tx_packets"] >= 3 and nets["eth0"]["rx_bytes"] > 0
        blk = st["blkio_stats"]
        assert set(blk) == {"io_service_bytes_recursive", "io_serviced_recursive",
                            "io_queue_recursive", "io_service_time_recursive",
                            "io_wait_time_recursive", "io_merged_recursive", "io_time_recursive",
                            "sectors_recursive"}
        read = sum(e["value"] for e in blk["io_service_bytes_recursive"] or []
                   if e["op"].lower() == "read")
        assert read >= size, blk
        for e in blk["io_service_bytes_recursive"]:
            assert set(e) == {"major", "minor", "op", "value"}
        # cgroup v1: the kernel's op names, as dockerd (v2: read/write)
        v1 = os.path.exists("/sys/fs/cgroup/blkio")
        ops = {e["op"] for e in blk["io_service_bytes_recursive"]}
        assert ops >= ({"Read", "Write", "Total"} if v1 else {"read", "write"}), ops
        netio, blockio = d.out("stats", "--no-stream", "--format", "{{.NetIO}}|{{.BlockIO}}",
                               cid).split("|")
        assert netio != "0B / 0B" and not blockio.startswith("0B /"), (netio, blockio)
        # no network of its own: no interfaces listed
        none = d.out("run", "-d", "--network", "none", "busybox", "sleep", "100")
        assert client.api.stats(none, stream=False)["networks"] == {}
    finally:
        client.close()
