#!/usr/bin/env python3
"""Volumes: `dockyard daemon` against Debian's dockerd, side by side in one run.

    python3 bench/volumes_bench.py [--runs 15] [--volumes 1000]

Each engine gets a private data root and the same busybox image. Timed, alternating
engines so background load hits both alike (medians, ratio ours / dockerd):

* `docker volume ls` with 1,000 volumes (made through the API beforehand);
* `docker start -a` of a created container with three named volumes (`true`),
  end to end through the real docker CLI: the volumes mounted, the container run and
  stopped, the volumes released.

Nothing here is a test.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
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


def docker(env: dict, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([DOCKER, *args], env=env, capture_output=True, input=input, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {r.stderr.decode()}")
    return r


def make_volumes(host: str, n: int) -> None:
    import docker as dockerpy

    cl = dockerpy.DockerClient(base_url=host, timeout=120)
    with cf.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: cl.volumes.create(f"bench{i:05d}"), range(n)))


def timed(env: dict, args: list[str]) -> float:
    t = time.perf_counter()
    docker(env, *args)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--volumes", type=int, default=1000)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="vbench-", dir="/var/tmp"))
    bb = build_busybox_rootfs(base / "bb")
    tar = subprocess.run(["tar", "-C", str(bb), "-c", "."], capture_output=True, check=True).stdout
    ours = Daemon(base / "ours")
    try:
        ours.start()
        with running_dockerd(base / "dkd") as dkd:
            engines = {"dockyard": (ours.env, ours.host), "dockerd": (dkd.env, dkd.env["DOCKER_HOST"])}
            cids = {}
            for name, (env, host) in engines.items():
                docker(env, "import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
                t = time.perf_counter()
                make_volumes(host, args.volumes)
                print(f"{name}: {args.volumes} volumes created in {time.perf_counter() - t:.2f} s "
                      f"(8 API clients)")
                cids[name] = docker(env, "create", "-v", "bench00001:/a", "-v", "bench00002:/b",
                                    "-v", "bench00003:/c", "busybox", "true").stdout.decode().strip()
                docker(env, "start", "-a", cids[name])    # first start: copy-up, caches
            ls: dict[str, list[float]] = {n: [] for n in engines}
            start: dict[str, list[float]] = {n: [] for n in engines}
            for _ in range(args.runs):
                for name, (env, _h) in engines.items():
                    time.sleep(0.2)
                    ls[name].append(timed(env, ["volume", "ls", "-q"]))
                for name, (env, _h) in engines.items():
                    time.sleep(0.2)
                    start[name].append(timed(env, ["start", "-a", cids[name]]))
            n = len(docker(ours.env, "volume", "ls", "-q").stdout.split())
            assert n >= args.volumes, n
            with open("/proc/loadavg") as f:
                load = f.read().split()[0]
            print(f"\n{args.runs} runs each, alternating; load {load} at the end\n")
            print("| | dockyard | dockerd | ratio |")
            print("|---|---|---|---|")
            for label, data in ((f"`volume ls`, {args.volumes} volumes", ls),
                                ("`start -a`, three named volumes", start)):
                a, b = statistics.median(data["dockyard"]), statistics.median(data["dockerd"])
                print(f"| {label} | {a * 1000:.0f} ms | {b * 1000:.0f} ms | {a / b:.2f}x |")
    finally:
        ours.close()
        subprocess.run(["rm", "-rf", str(base)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
