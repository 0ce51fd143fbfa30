#!/usr/bin/env python3
"""Networking: `dockyard daemon` against Debian's dockerd, side by side in one run.

    python3 bench/network_bench.py [--runs 15] [--mb 1000] [--nc-mb 200] [--rounds 3]

Each engine gets a private data root, a busybox image imported from the same tar,
and a default bridge of its own:

* every daemon runs inside a network namespace this script creates (`dybench-<hex>`:
  its own loopback, iptables tables and bridges; deleting the namespace removes them,
  so nothing reaches the host's interfaces or rules, even after a failure);
* ours: a private data root gives its own bridge (d<4hex>0), pool and chains (DY<5hex>);
* dockerd, twice, with a bridge `dyb<hex>` in 10.239.x.0/24 passed as --bridge:
  - "dockerd": its defaults (--iptables=true, --userland-proxy=true): a port
    published on 0.0.0.0 is reached on 127.0.0.1 through docker-proxy and on the
    bridge's address through its iptables DNAT;
  - "dockerd, no proxy": --userland-proxy=false: 127.0.0.1 through its iptables DNAT
    (route_localnet on the bridge).
  The client runs in the daemon's namespace too (the bench's thread enters it with
  setns, and the daemons it starts inherit it).

Timed:
* start: `docker run -d busybox true` on the default bridge, and the same with
  `--network none`; the median of each and their difference (the cost of networking);
  ours and dockerd's defaults;
* published-port throughput: MB/s from a Python client on the host (1 MiB sendall) to
  a published port, best of a few rounds, into two sinks in a busybox container:
  "dd" (`nc -l -p 80 -e dd of=/dev/null bs=1M`: the socket read in 1 MiB reads, so
  the path is what is measured) and "nc" (`nc -l -p 80 > /dev/null`: busybox nc
  reads 1 KiB per poll+read+write, so the sink's syscalls dominate).

Prints medians and ratios (ours / dockerd). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))
sys.path.insert(0, str(HERE / "src"))

from acceptance.harness import DOCKER, Daemon  # noqa: E402
from helpers.dockerd import running_dockerd  # noqa: E402
from helpers.rootfs import build_busybox_rootfs  # noqa: E402


SINKS = {
    "dd": ("busybox", "nc", "-l", "-p", "80", "-e", "dd", "of=/dev/null", "bs=1M"),
    "nc": ("busybox", "sh", "-c", "tail -f /dev/null | nc -l -p 80 > /dev/null"),
}
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def in_netns(path: str):
    """Run this thread (and what it starts) in the network namespace at ``path``."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET):
            raise OSError(ctypes.get_errno(), f"setns {path}")
        try:
            yield
        finally:
            if _libc.setns(back, CLONE_NEWNET):
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(fd)
        os.close(back)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Engine:
    def __init__(self, name: str, env: dict) -> None:
        self.name, self.env = name, env

    def docker(self, *args: str, input: bytes | None = None, check: bool = True):
        r = subprocess.run([DOCKER, *args], env=self.env, input=input, capture_output=True,
                           timeout=120)
        if check and r.returncode:
            raise RuntimeError(f"{self.name}: docker {' '.join(args)}: {r.stderr.decode()}")
        return r.stdout.decode().strip()


def time_starts(e: Engine, runs: int, network: tuple[str, ...]) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        cid = e.docker("run", "-d", *network, "busybox", "true")
        out.append(time.perf_counter() - t0)
        e.docker("rm", "-f", cid, check=False)
    return out


def _listening(e: Engine, cid: str) -> bool:
    out = e.docker("exec", cid, "netstat", "-ltn", check=False)
    return any(ln.split()[3].endswith(":80") for ln in out.splitlines()
               if ln.startswith("tcp") and len(ln.split()) > 3)


def one_round(e: Engine, sink: str, publish: str, target: str, mb: int) -> float:
    """MB/s from this thread to target:port -> the container's sink, one connection."""
    hp = free_port()
    chunk = b"\0" * (1 << 20)
    cid = e.docker("run", "-d", "-p", f"{publish}{hp}:80", *SINKS[sink])
    try:
        deadline = time.monotonic() + 20
        while not _listening(e, cid):  # a proxy would accept before the sink listens
            if time.monotonic() > deadline:
                raise RuntimeError(f"{e.name}: the sink did not listen")
            time.sleep(0.05)
        s = socket.create_connection((target, hp), timeout=10)
        s.settimeout(60)
        t0 = time.perf_counter()
        for _ in range(mb):
            s.sendall(chunk)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)  # EOF once the sink has read everything and exited
        dt = time.perf_counter() - t0
        s.close()
        return mb / dt
    finally:
        e.docker("rm", "-f", cid, check=False)


def throughput(e: Engine, a, publish: str, target: str) -> dict:
    out = {}
    for sink, mb in (("dd", a.mb), ("nc", a.nc_mb)):
        rounds = []
        for _ in range(a.rounds):
            try:
                rounds.append(one_round(e, sink, publish, target, mb))
            except OSError as err:  # noted, not fatal: the other rounds still count
                print(f"{e.name} {sink} -> {target}: round failed: {err}", file=sys.stderr)
        out[sink] = rounds
    return out


def starts(e: Engine, runs: int) -> dict:
    time_starts(e, 2, ())  # warm up
    bridge = time_starts(e, runs, ())
    none = time_starts(e, runs, ("--network", "none"))
    return {"bridge": statistics.median(bridge), "none": statistics.median(none)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--mb", type=int, default=1000, help="MB per round into the dd sink")
    ap.add_argument("--nc-mb", type=int, default=200, help="MB per round into the nc sink")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="netbench-"))
    root = tmp / "bbroot"
    build_busybox_rootfs(root)
    tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True,
                         check=True).stdout
    starts_r: dict = {}
    tp: dict = {}
    try:
        run_ours(a, tmp, tar, starts_r, tp)
        run_dockerd(a, tmp, tar, starts_r, tp)
    finally:  # (bridges, veths and chains went with the namespaces)
        subprocess.run(["rm", "-rf", str(tmp)])
    report(a, starts_r, tp)


def run_ours(a, tmp: Path, tar: bytes, starts_r: dict, tp: dict) -> None:
    with private_netns():
        d = Daemon(tmp / "ours", network=True)
        try:
            d.start()
            ours = Engine("dockyard", d.env)
            ours.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
            starts_r["dockyard"] = starts(ours, a.runs)
            tp["dockyard, 127.0.0.1 (kernel DNAT)"] = throughput(ours, a, "127.0.0.1:",
                                                                 "127.0.0.1")
        finally:
            d.close()


@contextlib.contextmanager
def private_netns():
    """A network namespace with lo up and a bridge for dockerd; deleted on exit."""
    name = "dybench-" + secrets.token_hex(3)
    br = "dyb" + secrets.token_hex(3)
    gw = f"10.239.{secrets.randbelow(200) + 20}.1"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ns = ["ip", "-n", name]
        subprocess.run(ns + ["link", "set", "lo", "up"], check=True)
        subprocess.run(ns + ["link", "add", br, "type", "bridge"], check=True)
        subprocess.run(ns + ["addr", "add", f"{gw}/24", "dev", br], check=True)
        subprocess.run(ns + ["link", "set", br, "up"], check=True)
        with in_netns(f"/run/netns/{name}"):
            yield br, gw
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def run_dockerd(a, tmp: Path, tar: bytes, starts_r: dict, tp: dict) -> None:
    for label, proxy in (("dockerd", "true"), ("dockerd, no proxy", "false")):
        with private_netns() as (br, gw):
            args = (f"--bridge={br}", "--iptables=true", "--ip-forward=true", "--ip-masq=true",
                    f"--userland-proxy={proxy}", "--userland-proxy-path=/usr/sbin/docker-proxy")
            with running_dockerd(tmp / label.replace(" ", "").replace(",", "-"), args) as dk:
                theirs = Engine(label, dk.env)
                theirs.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
                if proxy == "true":
                    starts_r["dockerd"] = starts(theirs, a.runs)
                    tp["dockerd, 127.0.0.1 (docker-proxy)"] = throughput(theirs, a, "", "127.0.0.1")
                    tp["dockerd, bridge address (iptables DNAT)"] = throughput(theirs, a, "", gw)
                else:
                    tp["dockerd --userland-proxy=false, 127.0.0.1 (DNAT)"] = throughput(
                        theirs, a, "127.0.0.1:", "127.0.0.1")


def _best(rounds: list[float]) -> float:
    return max(rounds) if rounds else float("nan")


def report(a, starts_r: dict, tp: dict) -> None:
    o, t = starts_r["dockyard"], starts_r["dockerd"]
    print(f"{'':34}{'dockyard':>12}{'dockerd':>12}{'ratio':>8}")
    for key, label in (("bridge", "run -d true, default bridge (ms)"),
                       ("none", "run -d true, --network none (ms)")):
        print(f"{label:34}{o[key] * 1000:12.1f}{t[key] * 1000:12.1f}{o[key] / t[key]:8.2f}")
    ob, tb = o["bridge"] - o["none"], t["bridge"] - t["none"]
    print(f"{'networking overhead (ms)':34}{ob * 1000:12.1f}{tb * 1000:12.1f}")
    print()
    ours = tp["dockyard, 127.0.0.1 (kernel DNAT)"]
    print(f"published port, MB/s, best of {a.rounds} "
          f"(dd sink {a.mb} MB, nc sink {a.nc_mb} MB); ratio = dockyard / row")
    print(f"{'':50}{'dd':>8}{'ratio':>7}{'nc':>8}{'ratio':>7}   rounds dd | nc")
    for label, r in tp.items():
        cells = ""
        for sink in ("dd", "nc"):
            cells += f"{_best(r[sink]):8.0f}{_best(ours[sink]) / _best(r[sink]):7.2f}"
        print(f"{label:50}{cells}   {[round(x) for x in r['dd']]} | "
              f"{[round(x) for x in r['nc']]}")


if __name__ == "__main__":
    main()
