#!/usr/bin/env python3
"""Networking: `dockyard daemon` against Debian's dockerd, side by side in one run.

    python3 bench/network_bench.py [--runs 15] [--mb 200] [--rounds 3]

Each engine gets a private data root, a busybox image imported from the same tar,
and a default bridge of its own:

* ours: a private data root gives its own bridge (d<4hex>0), pool and iptables chains
  (DY<5hex>), removed when the daemon stops (and swept again at the end);
* dockerd: a bridge this script creates (`ip link add dyb<hex> type bridge`, an
  address in 10.239.x.0/24), passed as --bridge, with --iptables=false and
  --ip-forward=false so it adds nothing to the host's firewall; published ports go
  through its userland proxy (docker-proxy). Its iptables DNAT path is not measured:
  turning it on would write DOCKER chains into the host's tables.

Timed:
* start: `docker run -d busybox true` on the default bridge, and the same with
  `--network none`; the median of each and their difference (the cost of networking);
* published-port throughput: MB from a Python client on the host to 127.0.0.1:<port>
  published from a busybox `nc -l` sink in a container (bytes until the sink closes),
  best of a few rounds.

Prints medians and ratios (ours / dockerd). Nothing here is a test.
"""

from __future__ import annotations

import argparse
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


def throughput(e: Engine, mb: int, rounds: int) -> list[float]:
    """MB/s host -> 127.0.0.1:hp -> container nc sink, per round."""
    out = []
    chunk = b"\0" * (1 << 20)
    for _ in range(rounds):
        hp = free_port()
        cid = e.docker("run", "-d", "-p", f"127.0.0.1:{hp}:80", "busybox", "sh", "-c",
                       "tail -f /dev/null | nc -l -p 80 > /dev/null")
        try:
            deadline = time.monotonic() + 20
            while True:  # the proxy may accept before nc listens: wait for a served byte path
                try:
                    s = socket.create_connection(("127.0.0.1", hp), timeout=5)
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
                    continue
                break
            time.sleep(0.5)  # nc up
            s.settimeout(60)
            t0 = time.perf_counter()
            try:
                for _ in range(mb):
                    s.sendall(chunk)
            except OSError:
                print(subprocess.run(["ss", "-tnpi", f"( sport = :{hp} or dport = :{hp} )"],
                                     capture_output=True, text=True).stdout, e.docker("ps", "-a"),
                      e.docker("exec", cid, "netstat", "-tn", check=False), file=sys.stderr)
                raise
            s.shutdown(socket.SHUT_WR)
            s.recv(1)  # EOF once the sink has read everything and exited
            dt = time.perf_counter() - t0
            s.close()
            out.append(mb / dt)
        finally:
            e.docker("rm", "-f", cid, check=False)
    return out


def measure(e: Engine, runs: int, mb: int, rounds: int) -> dict:
    time_starts(e, 2, ())  # warm up
    bridge = time_starts(e, runs, ())
    none = time_starts(e, runs, ("--network", "none"))
    tp = throughput(e, mb, rounds)
    return {"bridge": statistics.median(bridge), "none": statistics.median(none),
            "tp": max(tp), "tp_all": tp}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="netbench-"))
    root = tmp / "bbroot"
    build_busybox_rootfs(root)
    tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True,
                         check=True).stdout
    results = {}

    try:
        run_both(a, tmp, tar, results)
    finally:
        from helpers.netclean import sweep

        sweep()
        subprocess.run(["rm", "-rf", str(tmp)])
    report(a, results)


def run_both(a, tmp: Path, tar: bytes, results: dict) -> None:
    d = Daemon(tmp / "ours", network=True)
    try:
        d.start()
        ours = Engine("dockyard", d.env)
        ours.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
        results["dockyard"] = measure(ours, a.runs, a.mb, a.rounds)
    finally:
        d.close()

    br = "dyb" + secrets.token_hex(3)
    subnet = f"10.239.{secrets.randbelow(200) + 20}"
    subprocess.run(["ip", "link", "add", br, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{subnet}.1/24", "dev", br], check=True)
        subprocess.run(["ip", "link", "set", br, "up"], check=True)
        args = (f"--bridge={br}", "--iptables=false", "--ip-forward=false", "--ip-masq=false",
                "--userland-proxy=true", "--userland-proxy-path=/usr/sbin/docker-proxy")
        with running_dockerd(tmp / "dockerd", args) as dk:
            theirs = Engine("dockerd", dk.env)
            theirs.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
            results["dockerd"] = measure(theirs, a.runs, a.mb, a.rounds)
    finally:
        subprocess.run(["ip", "link", "del", br], capture_output=True)


def report(a, results: dict) -> None:
    o, t = results["dockyard"], results["dockerd"]
    print(f"{'':34}{'dockyard':>12}{'dockerd':>12}{'ratio':>8}")
    for key, label in (("bridge", "run -d true, default bridge (ms)"),
                       ("none", "run -d true, --network none (ms)")):
        print(f"{label:34}{o[key] * 1000:12.1f}{t[key] * 1000:12.1f}{o[key] / t[key]:8.2f}")
    ob, tb = o["bridge"] - o["none"], t["bridge"] - t["none"]
    print(f"{'networking overhead (ms)':34}{ob * 1000:12.1f}{tb * 1000:12.1f}")
    print(f"{'published port, MB/s (best)':34}{o['tp']:12.0f}{t['tp']:12.0f}"
          f"{o['tp'] / t['tp']:8.2f}")
    print(f"  rounds: dockyard {[round(x) for x in o['tp_all']]}, "
          f"dockerd {[round(x) for x in t['tp_all']]} ({a.mb} MB each)")


if __name__ == "__main__":
    main()
