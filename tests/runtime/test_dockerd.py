"""A real caller: Debian's dockerd (via its containerd and runc shim) runs
containers with `--runtime dockyard`, i.e. through our dockyard-runc."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers.dockerd import dockerd_available, running_dockerd

pytestmark = [pytest.mark.slow, pytest.mark.dockerd,
              pytest.mark.skipif(not dockerd_available(),
                                 reason="/usr/sbin/dockerd (docker.io) is not installed")]


def _runtime_path() -> str:
    path = os.path.join(os.path.dirname(sys.executable), "dockyard-runc")
    if not os.path.exists(path):
        pytest.skip(f"{path} is not installed (pip install -e .)")
    return path


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory, busybox_template):
    tmp = tmp_path_factory.mktemp("dockerd")
    from dockyard.runtime import launcher_script
    launcher = tmp / "bin" / "dockyard-runc"      # what our daemon writes to <data-root>/bin
    launcher.parent.mkdir()
    launcher.write_text(launcher_script())
    launcher.chmod(0o755)
    with running_dockerd(tmp, extra_args=("--add-runtime", f"dockyard={_runtime_path()}",
                                          "--add-runtime", f"dockyard-fast={launcher}")) as d:
        tar = subprocess.run(["tar", "-C", str(busybox_template), "-c", "."], check=True,
                             capture_output=True).stdout
        d.docker("import", "-", "busybox", input=tar)
        yield d


def test_docker_run_exit_code_and_output(dockerd):
    r = dockerd.docker("run", "--rm", "--runtime", "dockyard", "busybox",
                       "sh", "-c", "echo hi; exit 3", check=False)
    assert r.returncode == 3, dockerd.logs()[-3000:] + r.stderr.decode()
    assert r.stdout == b"hi\n"


def test_docker_run_through_the_launcher_script(dockerd):
    # the `#!python -IS` launcher (runtime.launcher_script), run by containerd's shim
    # from the bundle directory with the shim's environment
    r = dockerd.docker("run", "--rm", "--runtime", "dockyard-fast", "busybox",
                       "sh", "-c", "echo hi; hostname; exit 3", check=False)
    assert r.returncode == 3, dockerd.logs()[-3000:] + r.stderr.decode()
    assert r.stdout.split(b"\n")[0] == b"hi"


def test_docker_run_stdin(dockerd):
    r = dockerd.docker("run", "--rm", "-i", "--runtime", "dockyard", "busybox",
                       "sh", "-c", "tr a-z A-Z", input=b"shout\n", check=False)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"SHOUT\n"


def test_docker_run_tty(dockerd):
    # `docker run -t` needs a terminal on our side: script(1) provides one
    cmd = (f"DOCKER_HOST={dockerd.host} /usr/local/bin/docker run --rm -t --runtime dockyard "
           "busybox sh -c 'tty; exit 4'")
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                       env=dockerd.env, timeout=120, stdin=subprocess.DEVNULL)
    why = (r.stdout + r.stderr).decode(errors="replace") + dockerd.logs()[-3000:]
    assert b"/dev/pts/0" in r.stdout, why
    assert r.returncode == 4, why


def test_docker_detached_exec_stop(dockerd):
    r = dockerd.docker("run", "-d", "--runtime", "dockyard", "--name", "dy-long", "busybox",
                       "sleep", "1000", check=False)
    assert r.returncode == 0, r.stderr.decode() + dockerd.logs()[-3000:]
    try:
        r = dockerd.docker("exec", "dy-long", "sh", "-c", "echo in-exec; exit 5", check=False)
        assert (r.returncode, r.stdout) == (5, b"in-exec\n"), r.stderr
        r = dockerd.docker("top", "dy-long", check=False)
        assert r.returncode == 0 and b"sleep" in r.stdout, r.stderr
        r = dockerd.docker("inspect", "-f", "{{.State.Running}}", "dy-long")
        assert r.stdout.strip() == b"true"
        dockerd.docker("pause", "dy-long")
        assert dockerd.docker("inspect", "-f", "{{.State.Status}}",
                              "dy-long").stdout.strip() == b"paused"
        dockerd.docker("unpause", "dy-long")
        dockerd.docker("stop", "-t", "1", "dy-long")
        r = dockerd.docker("inspect", "-f", "{{.State.ExitCode}}", "dy-long")
        assert r.stdout.strip() == b"137"
    finally:
        dockerd.docker("rm", "-f", "dy-long", check=False)


def test_docker_run_with_many_options(dockerd, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("from-host\n")
    script = ("id -u; hostname; touch /x 2>/dev/null || echo ro; "
              "touch /scratch/y && echo tmpfs-ok; cat /data/f; "
              "grep NoNewPrivs /proc/self/status; grep CapEff /proc/self/status; "
              "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; "
              "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max")
    r = dockerd.docker("run", "--rm", "--runtime", "dockyard", "--user", "1000:1000",
                       "--read-only", "--tmpfs", "/scratch", "--cap-drop", "ALL",
                       "--security-opt", "no-new-privileges", "-v", f"{data}:/data:ro",
                       "--memory", "64m", "--pids-limit", "50", "--hostname", "h1",
                       "--sysctl", "net.ipv4.ip_unprivileged_port_start=1000",
                       "busybox", "sh", "-c", script, check=False)
    assert r.returncode == 0, r.stderr.decode() + dockerd.logs()[-3000:]
    lines = r.stdout.decode().split("\n")
    assert lines[:5] == ["1000", "h1", "ro", "tmpfs-ok", "from-host"], lines
    assert lines[5].split() == ["NoNewPrivs:", "1"]
    assert lines[6].split() == ["CapEff:", "0000000000000000"]
    assert lines[7:9] == ["1000", "50"]


def test_docker_run_privileged(dockerd):
    r = dockerd.docker("run", "--rm", "--runtime", "dockyard", "--privileged", "busybox",
                       "sh", "-c", "mount -t tmpfs none /tmp && echo mounted; "
                       "grep CapEff /proc/self/status", check=False)
    assert r.returncode == 0, r.stderr.decode() + dockerd.logs()[-3000:]
    out = r.stdout.decode()
    assert "mounted" in out, out + r.stderr.decode()
    eff = int(out.split("CapEff:")[1].split()[0], 16)
    assert eff & (1 << 21)             # CAP_SYS_ADMIN (all the host has, at least)
