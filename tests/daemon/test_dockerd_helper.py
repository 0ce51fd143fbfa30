"""tests/helpers/dockerd.py runs every dockerd in a network namespace of its own: a dockerd
with its bridge disabled deletes any interface named docker0 at start, and the host's must
survive our test suite. Checked from a stand-in "host": a child process in a new network
namespace holding a bridge named docker0, which starts a dockerd through the helper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers.dockerd import dockerd_available, running_dockerd

pytestmark = [pytest.mark.dockerd, pytest.mark.slow]

TESTS = Path(__file__).resolve().parents[1]


def test_dockerd_keeps_the_hosts_docker0(tmp_path):
    if not dockerd_available():
        pytest.skip("dockerd (docker.io) or the docker CLI is not installed")
    script = textwrap.dedent(f"""
        import json, subprocess, sys
        sys.path.insert(0, {str(TESTS)!r})
        from helpers.dockerd import running_dockerd
        subprocess.run(["ip", "link", "add", "docker0", "type", "bridge"], check=True)
        def links():
            return sorted(l["ifname"] for l in json.loads(subprocess.run(
                ["ip", "-j", "link"], capture_output=True, text=True).stdout))
        with running_dockerd({str(tmp_path)!r}) as d:
            during = links()
            d.docker("info")
        print(json.dumps({{"during": during, "after": links()}}))
    """)
    # the stand-in host: its own network namespace, so the real host is never touched
    r = subprocess.run(["unshare", "--net", "--", sys.executable, "-c", script],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert "docker0" in seen["during"] and "docker0" in seen["after"], seen


def test_dockerd_in_own_namespaces_runs_containers(tmp_path, busybox_template):
    with running_dockerd(tmp_path) as d:
        ours = os.readlink("/proc/self/ns/net")
        assert os.readlink(f"/proc/{d.pid}/ns/net") != ours
        assert os.readlink(f"/proc/{d.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
        # its /sys shows its own namespace's interfaces, with the host's cgroups below it
        assert os.listdir(f"/proc/{d.pid}/root/sys/class/net") == ["lo"]
        mounts = Path(f"/proc/{d.pid}/mountinfo").read_text().splitlines()
        assert any(" /sys/fs/cgroup" in m and (" cgroup " in m or " cgroup2 " in m)
                   for m in mounts)
        tar = subprocess.run(["tar", "-C", str(busybox_template), "-c", "."],
                             capture_output=True, check=True).stdout
        d.docker("import", "-", "bb:ns", input=tar)
        out = d.docker("run", "--rm", "--network", "host", "-m", "64m", "bb:ns",
                       "sh", "-c", "ls /sys/class/net; cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                       "2>/dev/null || cat /sys/fs/cgroup/memory.max", text=True).stdout.split()
        assert out == ["lo", str(64 * 1024 * 1024)], out
