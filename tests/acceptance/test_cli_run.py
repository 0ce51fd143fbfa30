"""The real docker CLI against `dockyard daemon`: run/create and their flags."""

from __future__ import annotations

import json
import uuid

import pytest

pytestmark = pytest.mark.slow


def uniq(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_run_rm_echo_and_exit_codes(daemon):
    r = daemon.docker("run", "--rm", "busybox", "echo", "hi")
    assert r.stdout == "hi\n"
    r = daemon.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    r = daemon.docker("run", "--rm", "busybox", "nosuch", check=False)
    assert r.returncode == 127
    assert 'exec: "nosuch": executable file not found in $PATH' in r.stderr
    assert daemon.out("ps", "-aq") == ""  # --rm removed it even though it never started


def test_run_rm_frees_the_name_at_once_and_removes_its_files(daemon):
    # The daemon answers `wait condition=removed` before the files are gone; the name
    # must be free at that moment and the files (dir, mount, cgroup) go just after.
    import time

    from acceptance.harness import leftovers

    name = uniq("rmname")
    before = leftovers(daemon)
    for _ in range(3):
        assert daemon.out("run", "--rm", "--name", name, "busybox", "echo", "x") == "x"
    cid = daemon.out("run", "-d", "--name", name, "busybox", "true")
    assert daemon.out("wait", name) == "0"
    daemon.docker("rm", name)
    assert not (daemon.data / "containers" / cid).exists()
    deadline = time.monotonic() + 10
    while leftovers(daemon) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(daemon) == before


def test_leftovers_right_after_run_rm_waits_for_its_removal(daemon):
    # The harness's census, taken at once after a `run --rm` returned, waits for the
    # removal still under way (test_bad_json's cap test once took its "before" there,
    # right after the previous test's `run --rm`, and found the directory gone after).
    from acceptance.harness import leftovers

    before = leftovers(daemon)
    assert daemon.out("run", "--rm", "busybox", "echo", "y") == "y"
    assert leftovers(daemon) == before


def test_run_missing_command_keeps_created_container(daemon):
    name = uniq()
    r = daemon.docker("run", "--name", name, "busybox", "nosuch", check=False)
    assert r.returncode == 127
    st = json.loads(daemon.out("inspect", name))[0]["State"]
    assert st["Status"] == "created" and st["ExitCode"] == 127
    assert "executable file not found" in st["Error"]
    daemon.docker("rm", name)


def test_run_flags_env_workdir_user_hostname_entrypoint(daemon, tmp_path):
    envf = tmp_path / "env.list"
    envf.write_text("# comment\nFROMFILE=yes\nPASSTHRU\n")
    out = daemon.out("run", "--rm", "-e", "A=1", "--env-file", str(envf), "-w", "/tmp", "-u", "1000:100",
                     "-h", "myhost", "busybox", "sh", "-c",
                     'echo $A $FROMFILE $PASSTHRU; pwd; id -u; id -g; hostname',
                     env={"PASSTHRU": "through"})
    assert out.split("\n") == ["1 yes through", "/tmp", "1000", "100", "myhost"]
    out = daemon.out("run", "--rm", "--entrypoint", "echo", "busybox", "a", "b")
    assert out == "a b"
    out = daemon.out("run", "--rm", "-u", "tester", "busybox", "sh", "-c", "id -un; echo $HOME")
    assert out.split("\n") == ["tester", "/home/tester"]


def test_run_detached_labels_and_ps(daemon):
    name = uniq("lbl")
    cid = daemon.out("run", "-d", "--name", name, "--label", "am=1", "--label", "tier=x", "busybox",
                     "sleep", "1000")
    assert len(cid) == 64
    assert daemon.out("ps", "-q", "--filter", "label=am=1") == cid[:12]
    assert daemon.out("ps", "-q", "--no-trunc", "--filter", f"name={name}") == cid
    assert daemon.out("ps", "--filter", "label=tier=x", "--format", "{{.Names}} {{.Label \"am\"}}") == f"{name} 1"
    assert daemon.out("ps", "-q", "--filter", "ancestor=busybox", "--filter", f"name={name}") == cid[:12]
    assert daemon.out("ps", "-q", "--filter", "status=running", "--filter", f"name={name}") == cid[:12]
    rows = daemon.out("ps", "--format", "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.Status}}",
                      "--filter", f"name={name}").split("\t")
    assert rows[0] == cid[:12] and rows[1] == "busybox" and rows[2] == '"sleep 1000"'
    assert rows[3].startswith("Up ")
    table = daemon.out("ps", "-s", "--filter", f"name={name}")
    assert "SIZE" in table.splitlines()[0] and "virtual" in table
    daemon.docker("rm", "-f", name)


def test_ps_all_last_n_exited(daemon):
    a, b = uniq("ex"), uniq("ex")
    daemon.docker("run", "--name", a, "busybox", "sh", "-c", "exit 4", check=False)
    daemon.docker("run", "--name", b, "busybox", "true")
    assert daemon.out("ps", "-q", "--filter", f"name={a}") == ""
    ida = daemon.out("ps", "-aq", "--filter", f"name={a}")
    assert ida and daemon.out("ps", "-aq", "--filter", "exited=4") .split() == [ida]
    assert daemon.out("ps", "-l", "--format", "{{.Names}}") == b
    assert daemon.out("ps", "-n", "2", "--format", "{{.Names}}").split() == [b, a]
    status = daemon.out("ps", "-a", "--filter", f"name={a}", "--format", "{{.Status}}")
    assert status.startswith("Exited (4) ")
    assert daemon.out("ps", "-aq", "--filter", "status=exited", "--filter", f"name={b}")
    daemon.docker("rm", a, b)


def test_create_start_attach_stdin(daemon):
    name = uniq()
    cid = daemon.out("create", "--name", name, "-i", "busybox", "sh", "-c", "cat; echo done")
    assert len(cid) == 64
    assert json.loads(daemon.out("inspect", name))[0]["State"]["Status"] == "created"
    r = daemon.docker("start", "-a", "-i", name, input="from stdin\n")
    assert r.stdout == "from stdin\ndone\n"
    r = daemon.docker("start", "-ai", name, input="again\n")
    assert r.stdout == "again\ndone\n"
    assert daemon.out("logs", name) == "from stdin\ndone\nagain\ndone"
    daemon.docker("rm", name)


def test_run_i_pipes_stdin(daemon):
    r = daemon.docker("run", "--rm", "-i", "busybox", "sh", "-c", "wc -l; echo end >&2", input="a\nb\nc\n")
    assert r.stdout.strip() == "3" and r.stderr == "end\n"


def test_run_restart_policies(daemon):
    name = uniq("rs")
    daemon.docker("run", "-d", "--name", name, "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 5")
    assert daemon.out("wait", name) in ("5",)
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = json.loads(daemon.out("inspect", name))[0]
        if info["RestartCount"] == 2 and not info["State"]["Running"] \
                and info["State"]["Status"] == "exited":
            break
        time.sleep(0.2)
    assert info["RestartCount"] == 2, info["State"]
    assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    daemon.docker("rm", "-f", name)
    r = daemon.docker("run", "-d", "--restart", "bogus", "busybox", check=False)
    assert r.returncode == 125 and "invalid restart policy" in r.stderr.lower()
    name = uniq("al")
    daemon.docker("run", "-d", "--name", name, "--restart", "always", "busybox", "sh", "-c",
                  "sleep 0.2; exit 1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if json.loads(daemon.out("inspect", name))[0]["RestartCount"] >= 2:
            break
        time.sleep(0.2)
    assert json.loads(daemon.out("inspect", name))[0]["RestartCount"] >= 2
    daemon.docker("stop", "-t", "1", name)
    time.sleep(1)
    assert json.loads(daemon.out("inspect", name))[0]["State"]["Status"] == "exited"
    daemon.docker("rm", name)


def test_run_init(daemon):
    out = daemon.out("run", "--rm", "--init", "busybox", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '")
    assert out.startswith("/sbin/docker-init -- sh")


def test_run_security_flags(daemon):
    r = daemon.docker("run", "--rm", "--read-only", "busybox", "touch", "/x", check=False)
    assert r.returncode == 1 and "Read-only file system" in r.stderr
    out = daemon.out("run", "--rm", "--read-only", "--tmpfs", "/scratch:size=1m", "busybox", "sh", "-c",
                     "touch /scratch/ok && grep /scratch /proc/mounts")
    assert "tmpfs" in out and "size=1024k" in out
    out = daemon.out("run", "--rm", "busybox", "grep", "CapEff", "/proc/self/status")
    assert out.split()[1] == "00000000a80425fb"  # Docker's 14
    out = daemon.out("run", "--rm", "--cap-drop", "ALL", "--cap-add", "NET_ADMIN", "busybox",
                     "grep", "CapEff", "/proc/self/status")
    assert out.split()[1] == "0000000000001000"
    out = daemon.out("run", "--rm", "--privileged", "busybox", "grep", "CapEff", "/proc/self/status")
    with open("/proc/self/status") as f:
        bnd = [ln.split()[1] for ln in f if ln.startswith("CapBnd")][0]
    assert out.split()[1] == bnd  # everything the host has
    out = daemon.out("run", "--rm", "--security-opt", "no-new-privileges", "busybox", "grep",
                     "NoNewPrivs", "/proc/self/status")
    assert out.split()[1] == "1"
    out = daemon.out("run", "--rm", "--ulimit", "nofile=123:456", "busybox", "sh", "-c",
                     "ulimit -n; ulimit -Hn")
    assert out.split() == ["123", "456"]


def test_run_resource_flags_reach_cgroups(daemon):
    name = uniq("res")
    cid = daemon.out("run", "-d", "--name", name, "-m", "64m", "--cpus", "0.5", "--cpu-shares", "512",
                     "--cpuset-cpus", "0", "--pids-limit", "50", "busybox", "sleep", "1000")
    base = f"/sys/fs/cgroup/{{}}{daemon.cgroup_parent}/{cid}/"

    def rd(ctrl, f):
        with open(base.format(ctrl) + f) as fh:
            return fh.read().strip()
    assert rd("memory", "memory.limit_in_bytes") == str(64 * 1024 * 1024)
    assert rd("cpu", "cpu.cfs_quota_us") == "50000" and rd("cpu", "cpu.shares") == "512"
    assert rd("cpuset", "cpuset.cpus") == "0"
    assert rd("pids", "pids.max") == "50"
    hc = json.loads(daemon.out("inspect", name))[0]["HostConfig"]
    assert (hc["Memory"], hc["NanoCpus"], hc["CpuShares"], hc["CpusetCpus"], hc["PidsLimit"]) == \
        (64 * 1024 * 1024, 500_000_000, 512, "0", 50)
    daemon.docker("update", "-m", "96m", "--memory-swap", "200m", "--cpus", "1", name)
    assert rd("memory", "memory.limit_in_bytes") == str(96 * 1024 * 1024)
    assert rd("cpu", "cpu.cfs_quota_us") == "100000"
    hc = json.loads(daemon.out("inspect", name))[0]["HostConfig"]
    assert hc["Memory"] == 96 * 1024 * 1024 and hc["NanoCpus"] == 1_000_000_000
    daemon.docker("update", "--restart", "unless-stopped", name)
    assert json.loads(daemon.out("inspect", name))[0]["HostConfig"]["RestartPolicy"]["Name"] == \
        "unless-stopped"
    daemon.docker("rm", "-f", name)


def test_stop_signal_and_timeout(daemon):
    name = uniq("sig")
    daemon.docker("run", "-d", "--name", name, "--stop-signal", "SIGUSR1", "--stop-timeout", "30",
                  "busybox", "sh", "-c", "trap 'exit 42' USR1; while true; do sleep 0.1; done")
    import time
    time.sleep(0.5)
    daemon.docker("stop", name)
    assert daemon.out("wait", name) == "42"
    cfg = json.loads(daemon.out("inspect", name))[0]["Config"]
    assert cfg["StopSignal"] == "SIGUSR1" and cfg["StopTimeout"] == 30
    daemon.docker("stop", name)  # stopped already: fine
    daemon.docker("rm", name)
    name = uniq("tmo")
    daemon.docker("run", "-d", "--name", name, "--stop-timeout", "1", "busybox", "sh", "-c",
                  "trap '' TERM; while true; do sleep 0.1; done")
    time.sleep(0.3)
    daemon.docker("stop", name)
    assert daemon.out("wait", name) == "137"
    daemon.docker("rm", name)


def test_bind_mounts(daemon, tmp_path):
    src = tmp_path / "shared"
    src.mkdir()
    (src / "in.txt").write_text("host data\n")
    out = daemon.out("run", "--rm", "-v", f"{src}:/data", "busybox", "sh", "-c",
                     "cat /data/in.txt; echo back > /data/out.txt")
    assert out == "host data"
    assert (src / "out.txt").read_text() == "back\n"
    r = daemon.docker("run", "--rm", "-v", f"{src}:/data:ro", "busybox", "touch", "/data/x", check=False)
    assert r.returncode == 1 and "Read-only" in r.stderr
    name = uniq("mnt")
    daemon.docker("create", "--name", name, "-v", f"{src}:/data:ro", "busybox")
    mounts = json.loads(daemon.out("inspect", name))[0]["Mounts"]
    assert mounts == [{"Type": "bind", "Source": str(src), "Destination": "/data", "Mode": "ro",
                       "RW": False, "Propagation": "rprivate"}]
    daemon.docker("rm", "-v", name)


def test_parallel_creates_get_distinct_names(daemon):
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(20) as ex:
        rs = list(ex.map(lambda i: daemon.docker("create", "--label", "par=1", "busybox", check=False),
                         range(30)))
    assert [r.returncode for r in rs] == [0] * 30, [r.stderr for r in rs if r.returncode]
    names = daemon.out("ps", "-a", "--filter", "label=par=1", "--format", "{{.Names}}").split()
    assert len(names) == 30 == len(set(names))
    # the same explicit name from two clients at once: one wins, the other gets a 409
    with cf.ThreadPoolExecutor(2) as ex:
        rs = list(ex.map(lambda i: daemon.docker("create", "--name", "race", "busybox", check=False),
                         range(2)))
    assert sorted(r.returncode for r in rs) == [0, 1]  # `docker create` exits 1 on a daemon error
    assert "Conflict" in [r for r in rs if r.returncode][0].stderr
    daemon.docker("rm", "race", *names)


def test_runtime_by_name(daemon):
    out = daemon.out("run", "--rm", "--runtime", "runc", "busybox", "sh", "-c", "echo hi; hostname")
    assert out.splitlines()[0] == "hi"
    name = uniq("rt")
    daemon.docker("run", "-d", "--name", name, "--runtime", "runc", "busybox", "sleep", "1000")
    info = json.loads(daemon.out("inspect", name))[0]
    assert info["HostConfig"]["Runtime"] == "runc"
    assert daemon.out("exec", name, "echo", "in-runc") == "in-runc"
    daemon.docker("pause", name)
    daemon.docker("unpause", name)
    daemon.docker("stop", "-t", "1", name)
    daemon.docker("rm", name)
    info = json.loads(daemon.out("info", "--format", "{{json .Runtimes}}"))
    assert "runc" in info and "dockyard" in info
