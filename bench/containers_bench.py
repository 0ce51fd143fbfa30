#!/usr/bin/env python3
"""Containers end to end: `dockyard daemon` against Debian's dockerd (and podman if present).

    python3 bench/containers_bench.py [--runs 15] [--parallel 50] [--idle 20] [--ps 1000]

Each engine gets a private data root and a busybox image imported from the same
tar. Timed, side by side in one run:

* `run --rm busybox true`, end to end through a client: the real docker CLI
  against our daemon and against dockerd, and our own CLI (`dockyard run`);
* 50 `docker run -d busybox sleep` started at once (wall time until all are up);
* memory per idle running container: what the engine adds per container
  (ours: growth of the supervisor's PSS; dockerd: PSS of the containerd-shim
  per container; podman: conmon's PSS);
* `docker ps -a` with 1,000 containers.

Prints medians and ratios (ours / dockerd). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))
sys.path.insert(0, str(HERE / "src"))

import cleanvenv  # noqa: E402  (bench/cleanvenv.py)
from acceptance.harness import DOCKER, Daemon  # noqa: E402
from helpers.dockerd import running_dockerd  # noqa: E402
from helpers.rootfs import build_busybox_rootfs  # noqa: E402


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pids_named(pattern: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern in cmd:
            out.append(int(d))
    return out


class Engine:
    def __init__(self, name: str, env: dict) -> None:
        self.name, self.env = name, env

    def docker(self, *args: str, check: bool = True, input: bytes | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess:
        r = subprocess.run([DOCKER, *args], env=self.env, capture_output=True, input=input,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{self.name}: docker {' '.join(args)}: {r.stderr.decode()}")
        return r


class Podman:
    """podman with a private root, runroot, cgroup parent and config: nothing of the
    host's containers storage or networks is used (`--network none`), and close()
    removes what it made."""

    def __init__(self, base: Path) -> None:
        import uuid
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        conf = base / "containers.conf"
        conf.write_text('[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
                        f'runtime = "runc"\ntmp_dir = "{base / "tmp"}"\n'
                        f'volume_path = "{base / "volumes"}"\n'
                        '[containers]\nnetns = "none"\n'
                        f'[network]\nnetwork_config_dir = "{base / "networks"}"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.cgroup_parent = f"/dockyard-bench-podman-{uuid.uuid4().hex[:8]}"
        self.prefix = ["podman", "--root", str(base / "root"), "--runroot", str(base / "run"),
                       "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                       "--runtime", "runc", "--storage-driver", "overlay"]
        # podman's default rlimits exceed this machine's hard limits: give plain ones
        self.run_opts = ["--network", "none", "--cgroup-parent", self.cgroup_parent,
                         "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]

    def podman(self, *args: str, check: bool = True, input: bytes | None = None):
        r = subprocess.run([*self.prefix, *args], env=self.env, capture_output=True,
                           input=input, timeout=300)
        if check and r.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {r.stderr.decode()}")
        return r

    def run(self, *args: str):
        return self.podman("run", *self.run_opts, *args)

    def close(self) -> None:
        self.podman("rm", "-af", "-t", "0", check=False)
        self.podman("system", "reset", "-f", check=False)
        subprocess.run(["umount", "-R", str(self.base / "root")], capture_output=True)
        for d in glob.glob(f"/sys/fs/cgroup/*{self.cgroup_parent}"):
            for sub in sorted(glob.glob(d + "/**/", recursive=True), key=len, reverse=True):
                try:
                    os.rmdir(sub)
                except OSError:
                    pass
        shutil.rmtree(self.base, ignore_errors=True)


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def bench_run_rm(e: Engine, n: int) -> list[float]:
    e.docker("run", "--rm", "busybox", "true")  # warm
    return timed(lambda: e.docker("run", "--rm", "busybox", "true"), n)


def bench_parallel(e: Engine, n: int) -> float:
    t = time.perf_counter()
    with cf.ThreadPoolExecutor(n) as ex:
        list(ex.map(lambda i: e.docker("run", "-d", "--label", "bench=par", "busybox",
                                       "sleep", "1000"), range(n)))
    wall = time.perf_counter() - t
    ids = e.docker("ps", "-aq", "--filter", "label=bench=par").stdout.decode().split()
    e.docker("rm", "-f", *ids)
    return wall


def create_many(e: Engine, n: int) -> None:
    import docker

    cl = docker.APIClient(base_url=e.env["DOCKER_HOST"], timeout=300)
    with cf.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: cl.create_container("busybox", ["true"], labels={"bench": "ps"}),
                    range(n)))
    cl.close()


def remove_many(e: Engine) -> None:
    import docker

    cl = docker.APIClient(base_url=e.env["DOCKER_HOST"], timeout=300)
    ids = [c["Id"] for c in cl.containers(all=True, filters={"label": "bench=ps"})]
    with cf.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: cl.remove_container(i, force=True), ids))
    cl.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--parallel", type=int, default=50)
    ap.add_argument("--idle", type=int, default=20)
    ap.add_argument("--ps", type=int, default=1000)
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="cbench-", dir="/var/tmp"))
    bb = build_busybox_rootfs(base / "bb")
    tar = subprocess.run(["tar", "-C", str(bb), "-c", "."], capture_output=True, check=True).stdout
    results: dict[str, dict] = {"dockyard": {}, "dockerd": {}}
    notes = []
    pm = None
    if not shutil.which("podman"):
        notes.append("podman: not installed here (scripts/install-bench-deps) - skipped")
    ours = Daemon(base / "ours")
    # the same daemon without its warm pool (containers/warm.py): every run made from scratch
    cold = Daemon(base / "cold", extra_args=("--warm-pool", "0"))
    try:
        if shutil.which("podman"):
            pm = Podman(base / "podman")
            pm.podman("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
            pm.run("--rm", "busybox", "true")
        ours.start()
        dy = Engine("dockyard", ours.env)
        dy.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
        cold.start()
        dyc = Engine("dockyard-cold", cold.env)
        dyc.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
        with running_dockerd(base / "dkd") as dkd:
            dk = Engine("dockerd", dkd.env)
            dk.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
            engines = [dy, dk]

            # 1. run --rm, alternating so background load hits both alike
            rr: dict[str, list[float]] = {"docker CLI -> dockyard": [], "docker CLI -> dockerd": [],
                                          "dockyard CLI -> dockyard": [], "podman": [],
                                          "docker CLI -> dockyard, no warm pool": [],
                                          "(python -c pass: our CLI's interpreter)": [],
                                          "dockyard CLI, clean venv": [],
                                          "(python -c pass, clean venv)": []}
            for e in engines + [dyc]:
                e.docker("run", "--rm", "busybox", "true")

            def settle() -> None:
                # each run starts on a quiet machine: what one engine does after its run
                # (dockerd's shim teardown, our warm pool's next container) is not
                # charged to the next engine's run
                time.sleep(0.25)

            our_cli = [sys.executable, "-m", "dockyard", "-H", ours.host, "run", "--rm", "busybox", "true"]
            have_cli = subprocess.run(our_cli, capture_output=True).returncode == 0
            # our CLI as a normal machine runs it (no sandbox site hooks), and that
            # machine's bare interpreter start
            venv_bin = cleanvenv.build(base)
            venv_cli = venv_py = None
            if venv_bin is not None:
                venv_cli = [str(venv_bin / "dockyard"), "-H", ours.host, "run", "--rm", "busybox",
                            "true"]
                venv_py = [str(venv_bin / "python"), "-c", "pass"]
                r = subprocess.run(venv_cli, capture_output=True)
                if r.returncode != 0:
                    notes.append(f"our CLI in a clean venv failed: {r.stderr.decode()[-200:]}")
                    venv_cli = None
            for _ in range(args.runs):
                settle()
                rr["docker CLI -> dockyard"] += timed(lambda: dy.docker("run", "--rm", "busybox", "true"), 1)
                settle()
                rr["docker CLI -> dockerd"] += timed(lambda: dk.docker("run", "--rm", "busybox", "true"), 1)
                settle()
                rr["docker CLI -> dockyard, no warm pool"] += timed(
                    lambda: dyc.docker("run", "--rm", "busybox", "true"), 1)
                if have_cli:
                    settle()
                    rr["dockyard CLI -> dockyard"] += timed(
                        lambda: subprocess.run(our_cli, check=True, capture_output=True), 1)
                    rr["(python -c pass: our CLI's interpreter)"] += timed(
                        lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), 1)
                if venv_cli:
                    settle()
                    rr["dockyard CLI, clean venv"] += timed(
                        lambda: subprocess.run(venv_cli, check=True, capture_output=True), 1)
                    rr["(python -c pass, clean venv)"] += timed(
                        lambda: subprocess.run(venv_py, check=True), 1)
                if pm:
                    settle()
                    rr["podman"] += timed(lambda: pm.run("--rm", "busybox", "true"), 1)
            if not have_cli:
                notes.append("our CLI has no working `run` yet: skipped")

            # 2. 50 in parallel
            par = {e.name: bench_parallel(e, args.parallel) for e in engines}
            if pm:
                t = time.perf_counter()
                with cf.ThreadPoolExecutor(args.parallel) as ex:
                    list(ex.map(lambda i: pm.run("-d", "--label", "bench=par", "busybox",
                                                 "sleep", "1000"), range(args.parallel)))
                par["podman"] = time.perf_counter() - t
                pm.podman("rm", "-af", "-t", "0")

            # 3. memory per idle container
            sup = ours.supervisor_pid()
            sup_before = pss_kib(sup)
            shims_before = set(pids_named("containerd-shim"))
            for e in engines:
                for _ in range(args.idle):
                    e.docker("run", "-d", "--label", "bench=idle", "busybox", "sleep", "1000")
            time.sleep(2)
            sup_after = pss_kib(sup)
            shims = [p for p in pids_named("containerd-shim") if p not in shims_before]
            shim_pss = sum(pss_kib(p) for p in shims)
            mem = {"dockyard": (sup_after - sup_before) / args.idle,
                   "dockerd": shim_pss / max(1, args.idle)}
            if pm:
                conmons_before = set(pids_named("conmon"))
                for _ in range(args.idle):
                    pm.run("-d", "busybox", "sleep", "1000")
                time.sleep(2)
                conmons = [p for p in pids_named("conmon") if p not in conmons_before]
                mem["podman"] = sum(pss_kib(p) for p in conmons) / max(1, args.idle)
                pm.podman("rm", "-af", "-t", "0")
            for e in engines:
                ids = e.docker("ps", "-aq", "--filter", "label=bench=idle").stdout.decode().split()
                e.docker("rm", "-f", *ids)

            # 4. ps -a with many containers
            ps = {}
            for e in engines:
                t = time.perf_counter()
                create_many(e, args.ps)
                create_s = time.perf_counter() - t
                e.docker("ps", "-a")
                ps[e.name] = (timed(lambda: e.docker("ps", "-a"), 7), create_s)
                remove_many(e)
            if pm:
                t = time.perf_counter()
                with cf.ThreadPoolExecutor(8) as ex:
                    list(ex.map(lambda i: pm.podman("create", *pm.run_opts, "busybox", "true"),
                                range(args.ps)))
                create_s = time.perf_counter() - t
                ps["podman"] = (timed(lambda: pm.podman("ps", "-a"), 7), create_s)
                pm.podman("rm", "-af", "-t", "0")
    finally:
        try:
            cold.close()
            ours.close()
        finally:
            if pm:
                pm.close()
            shutil.rmtree(base, ignore_errors=True)

    print(f"\nContainers benchmark ({os.cpu_count()} CPUs); medians; ratio = dockyard / dockerd\n")
    print("run --rm busybox true:")
    for k, v in rr.items():
        if v:
            print(f"  {k:40s} {med(v) * 1000:7.0f} ms   (n={len(v)})")
    base_ms = med(rr["docker CLI -> dockerd"])
    print(f"  ratio docker CLI: {med(rr['docker CLI -> dockyard']) / base_ms:.2f}x"
          + (f", our CLI: {med(rr['dockyard CLI -> dockyard']) / base_ms:.2f}x"
             if rr["dockyard CLI -> dockyard"] else "")
          + (f", our CLI in a clean venv: {med(rr['dockyard CLI, clean venv']) / base_ms:.2f}x"
             if rr["dockyard CLI, clean venv"] else "")
          + f", no warm pool: {med(rr['docker CLI -> dockyard, no warm pool']) / base_ms:.2f}x"
          + "  (target <= 0.33x)")
    print(f"{args.parallel} x `docker run -d` at once (wall):")
    for k, v in par.items():
        print(f"  {k:28s} {v:7.2f} s")
    print(f"  ratio: {par['dockyard'] / par['dockerd']:.2f}x"
          + (f"  (podman / dockerd {par['podman'] / par['dockerd']:.2f}x)" if "podman" in par else ""))
    print(f"memory per idle running container (PSS, {args.idle} containers):")
    print(f"  dockyard (supervisor growth) {mem['dockyard']:7.0f} KiB")
    print(f"  dockerd (containerd-shim)    {mem['dockerd']:7.0f} KiB   ({len(shims)} shim processes)")
    if "podman" in mem:
        print(f"  podman (conmon)              {mem['podman']:7.0f} KiB")
    print(f"docker ps -a with {args.ps} containers:")
    for k, (v, c) in ps.items():
        print(f"  {k:28s} {med(v) * 1000:7.0f} ms   (creating them took {c:.1f} s)")
    print(f"  ratio: {med(ps['dockyard'][0]) / med(ps['dockerd'][0]):.2f}x")
    if pm is None:
        print("  (podman not measured)")
    for n in notes:
        print("note:", n)
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
