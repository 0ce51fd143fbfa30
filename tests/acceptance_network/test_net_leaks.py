"""Nothing left behind: veths, addresses, rules, namespaces, listeners, leases.

Counts what can be attributed to this test's daemon (its bridges d<4hex>*, its chains
DY<5hex>*, its processes, its state file), plus host-wide veths without a bridge (orphans),
so other daemons running beside it in the session do not disturb the counts.
"""

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from acceptance.harness import Daemon, running, warm_ids
from acceptance_network.conftest import _close
from acceptance_network.util import http_get, inspect, uid, web

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("network")]


@pytest.fixture
def ldaemon(tmp_path):
    with running(tmp_path, close=_close, network=True) as d:
        yield d


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def _fds(pids, kind: str) -> int:
    n = 0
    for p in pids:
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                try:
                    if os.readlink(f"/proc/{p}/fd/{fd}").startswith(kind):
                        n += 1
                except OSError:
                    pass
        except OSError:
            pass
    return n


def _in_warm_container(pid: int, warm: list[str]) -> bool:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            cg = f.read()
    except OSError:
        return False
    return any(w in cg for w in warm)


def snapshot(d: Daemon) -> dict:
    from dockyard.daemon.config import DaemonConfig

    cfg = DaemonConfig()
    cfg.data_root = str(d.data)
    s = cfg.network_settings()
    bp, chain = s["bridge_prefix"], s["prefix"]
    links = json.loads(subprocess.run(["ip", "-j", "-d", "link", "show"], capture_output=True,
                                      text=True, check=True).stdout)
    ours = {ln["ifname"] for ln in links if ln["ifname"].startswith(bp)}
    veths = [ln for ln in links if (ln.get("linkinfo") or {}).get("info_kind") == "veth"]
    addrs = json.loads(subprocess.run(["ip", "-j", "addr", "show"], capture_output=True,
                                      text=True, check=True).stdout)
    rules = []
    for table in ("filter", "nat"):
        dump = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True,
                              check=True).stdout
        rules += [f"{table} {ln}" for ln in dump.splitlines() if chain in ln]
    st = json.loads((d.data / "network.json").read_text())
    warm = warm_ids(d)   # made ahead for the next `run --rm`: they come and go on their own
    pids = _tree(d.proc.pid) + _tree(d.supervisor_pid() or d.proc.pid)
    nsfs = [ln for ln in open("/proc/self/mountinfo") if " nsfs " in ln and str(d.dir) in ln]
    listen = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    return {
        "bridges": sorted(ours),
        "veths_on_our_bridges": sorted(v["ifname"] for v in veths if v.get("master") in ours),
        "orphan_veths": sorted(v["ifname"] for v in veths if not v.get("master")),
        "bridge_addresses": sorted(a["local"] for ln in addrs if ln["ifname"] in ours
                                   for a in ln.get("addr_info", []) if a["family"] == "inet"),
        "rules": sorted(rules),
        "endpoints": sorted(st.get("endpoints", {})),
        "leases": {k: v["Leased"] for k, v in st.get("ipam", {}).items()},
        "named_netns": sorted(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else [],
        "nsfs_mounts": nsfs,
        "netns_fds": _fds(pids, "net:["),
        "socket_fds": _fds([d.proc.pid], "socket:["),
        "listeners": sorted(ln.split()[3] for ln in listen.splitlines()
                            if f"pid={d.proc.pid}," in ln),
        "processes": len([p for p in _tree(d.proc.pid) if not _in_warm_container(p, warm)]),
    }


def _settle(d, before, tries=50):
    now = snapshot(d)
    for _ in range(tries):
        if now == before:
            break
        time.sleep(0.2)
        now = snapshot(d)
    return now


def test_100_containers_leave_nothing(ldaemon):
    d = ldaemon
    net = uid()
    d.out("network", "create", net)
    # warm up: the network's bridge and rules exist from its first container on
    d.out("run", "--rm", "--network", net, "-p", "80", "busybox", "true")
    before = _settle(d, snapshot(d), tries=5)

    def one(i: int) -> str:
        args = ["run", "--rm", "--network", net, "-p", "80", "-p", "127.0.0.1::81/udp"]
        if i % 4 == 0:
            args += ["--network-alias", f"a{i}"]
        r = d.docker(*args, "busybox", "sh", "-c", "ip -4 -o addr show eth0", check=False,
                     timeout=120)
        return r.stdout if r.returncode == 0 else f"FAIL {r.returncode} {r.stderr}"

    with ThreadPoolExecutor(6) as ex:
        outs = list(ex.map(one, range(100)))
    bad = [o for o in outs if o.startswith("FAIL") or " inet " not in o]
    assert not bad, bad[:3]
    ips = {o.split()[3] for o in outs}
    assert len(ips) > 1
    # and some that are killed while serving, removed with rm -f
    names = [uid("w") for _ in range(5)]
    for n in names:
        web(d, n, "--network", net, "-p", "127.0.0.1::80")
    for n in names:
        hp = inspect(d, "container", n)[0]["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
        assert http_get(f"http://127.0.0.1:{hp}/").strip() == "hello"
    mid = snapshot(d)
    assert len(mid["veths_on_our_bridges"]) == len(before["veths_on_our_bridges"]) + 5
    d.docker("rm", "-f", *names)
    after = _settle(d, before)
    assert after == before


def test_rm_container_and_network_leave_nothing(ldaemon):
    d = ldaemon
    d.out("run", "--rm", "-p", "80", "busybox", "true")  # the default bridge warmed up
    base = _settle(d, snapshot(d), tries=5)
    net = uid()
    d.out("network", "create", net)
    c = uid()
    web(d, c, "--network", net, "-p", "127.0.0.1::80")
    d.out("network", "connect", "bridge", c)
    with_c = snapshot(d)
    assert len(with_c["veths_on_our_bridges"]) == len(base["veths_on_our_bridges"]) + 2
    assert len(with_c["bridges"]) == len(base["bridges"]) + 1
    assert len(with_c["rules"]) > len(base["rules"])
    assert len(with_c["endpoints"]) == len(base["endpoints"]) + 2
    d.out("network", "disconnect", "bridge", c)
    d.out("stop", "-t", "1", c)  # stopped: endpoints, ports and leases released
    stopped = snapshot(d)
    assert stopped["veths_on_our_bridges"] == base["veths_on_our_bridges"]
    assert stopped["endpoints"] == base["endpoints"]
    assert all(not v for k, v in stopped["leases"].items() if k not in base["leases"])
    d.out("rm", c)
    d.out("network", "rm", net)
    assert _settle(d, base) == base
