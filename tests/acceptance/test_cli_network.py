"""`dockyard network ...` (and the `container`/`network` group words) against a private
daemon with networking, printed as the docker CLI prints the same daemon's answers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from acceptance.harness import running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def netd(tmp_path_factory):
    with running(tmp_path_factory.mktemp("dkynet"), network=True) as d:
        yield d


def ours(d, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dockyard", *args], env=d.env, input=input,
                          capture_output=True, text=True, timeout=60)


def same(d, *args: str) -> str:
    a, b = ours(d, *args), d.docker(*args, check=False)
    assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr), args
    return a.stdout


def test_network_lifecycle_like_docker(netd):
    d = netd
    r = ours(d, "network", "create", "--subnet", "10.231.7.0/24", "--label", "k=v", "mynet")
    assert r.returncode == 0, r.stderr
    nid = r.stdout.strip()
    assert len(nid) == 64
    same(d, "network", "ls")
    same(d, "network", "ls", "-q")
    same(d, "network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}} {{.Labels}}")
    same(d, "network", "ls", "--filter", "label=k=v")
    assert json.loads(same(d, "network", "inspect", "mynet"))[0]["Id"] == nid
    same(d, "network", "inspect", "-f", "{{.Name}} {{range .IPAM.Config}}{{.Subnet}}{{end}}", "mynet")
    same(d, "network", "inspect", "nosuchnet")
    same(d, "network", "create", "mynet")                 # duplicate: refused the same way

    cid = d.out("run", "-d", "busybox", "sleep", "100")
    assert ours(d, "network", "connect", "--alias", "web", "--ip", "10.231.7.9", "mynet",
                cid).returncode == 0
    ip = d.out("inspect", "-f", '{{(index .NetworkSettings.Networks "mynet").IPAddress}}', cid)
    assert ip == "10.231.7.9"
    same(d, "network", "rm", "mynet")                     # in use
    assert ours(d, "network", "disconnect", "mynet", cid).returncode == 0
    assert "mynet" not in d.out("inspect", "-f", "{{json .NetworkSettings.Networks}}", cid)
    d.docker("rm", "-f", cid)

    r = ours(d, "network", "rm", "mynet")
    assert (r.returncode, r.stdout) == (0, "mynet\n")
    same(d, "network", "rm", "mynet")                     # gone: the daemon's error, exit 1
    same(d, "network", "rm", "-f", "mynet")
    assert ours(d, "network", "create", "p1").returncode == 0
    r = ours(d, "network", "prune", "-f")
    assert r.returncode == 0 and r.stdout == "Deleted Networks:\np1\n\n"


def test_groups_and_container_cp(netd, tmp_path):
    d = netd
    r = ours(d, "network")
    assert r.returncode == 0
    assert r.stdout.split()[-7:] == ["connect", "create", "disconnect", "inspect", "ls",
                                      "prune", "rm"] or "create" in r.stdout
    r = ours(d, "network", "frob")
    assert r.returncode == 1 and "unknown command: dockyard network frob" in r.stderr
    cid = d.out("create", "busybox", "true")
    r = ours(d, "container", "cp", f"{cid}:/etc/passwd", str(tmp_path / "passwd"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "passwd").read_text().startswith("root:")
    assert "Usage:" in ours(d, "--help").stdout and "network     Manage networks" in \
        ours(d, "--help").stdout
    d.docker("rm", cid)
