#!/usr/bin/env python3
"""Push and pull of a ~500 MB image in 5 layers, end to end, on loopback:

    Dockyard:  docker CLI -> Dockyard's Engine API (image + distribution routes,
               in this process) -> `dockyard registry`
    Docker:    docker CLI -> Debian's dockerd 20.10 -> Debian's docker-registry

The same CLI drives both, so the numbers compare the engines and registries.
Each engine runs in a session of its own (dockerd as tests/helpers/dockerd.py starts
it, Dockyard's API in a child process), as a service manager would start them: with
the kernel's autogroup scheduling, a session is one scheduling group, so on a busy
machine each engine gets one group's share of the CPUs (Dockyard's ran inside this
process before, sharing one group with the bench, the CLI and the registries, while
dockerd had a group of its own).
dockerd runs in a network namespace of its own (tests/helpers/dockerd.py), so its
registry is started inside that namespace and both engines reach theirs over a
plain loopback connection (no relay in between).
Layers are random data (incompressible: the worst case for gzip). Every push
goes to a fresh registry, every pull into an empty image store. Prints the
median of each, the spread (min-max) and the ratios (target: Dockyard's pull >=
1.5x faster), with the load average beside every number. Reps alternate between
the engines, so that load from elsewhere falls on both alike.

    python3 bench/pull_bench.py [--layers 5] [--layer-mb 100] [--reps 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))
sys.path.insert(0, str(HERE / "tests" / "images"))
sys.path.insert(0, str(HERE / "src"))

from distribution_helpers import DOCKER_REGISTRY, running_registry  # noqa: E402
from helpers.dockerd import _setns, running_dockerd  # noqa: E402

from dockyard.images.service import ImageService  # noqa: E402
from dockyard.metadata import open_store  # noqa: E402

DOCKER = "/usr/local/bin/docker"


def make_archive(path: Path, layers: int, layer_mb: int) -> None:
    """A `docker save` archive of one image with ``layers`` random-data layers."""
    diff_ids, names = [], []
    with tarfile.open(path, "w") as out:
        for i in range(layers):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as lt:
                per = 4
                for j in range(per):
                    data = os.urandom(layer_mb * (1 << 20) // per)
                    ti = tarfile.TarInfo(f"layer{i}/file{j}.bin")
                    ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
                    lt.addfile(ti, io.BytesIO(data))
            raw = buf.getvalue()
            d = hashlib.sha256(raw).hexdigest()
            diff_ids.append("sha256:" + d)
            name = f"{d}/layer.tar"
            names.append(name)
            ti = tarfile.TarInfo(name)
            ti.size = len(raw)
            out.addfile(ti, io.BytesIO(raw))
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/x"]},
                          "created": "2024-01-01T00:00:00Z",
                          "rootfs": {"type": "layers", "diff_ids": diff_ids},
                          "history": [{"created": "2024-01-01T00:00:00Z"}] * layers}).encode()
        cname = hashlib.sha256(cfg).hexdigest() + ".json"
        for n, data in ((cname, cfg), ("manifest.json", json.dumps(
                [{"Config": cname, "RepoTags": ["bench/img:v1"], "Layers": names}]).encode())):
            ti = tarfile.TarInfo(n)
            ti.size = len(data)
            out.addfile(ti, io.BytesIO(data))


def serve_api(root: Path, sock: str) -> None:
    """Dockyard's Engine API (system, image and distribution routes) for one data root
    on a unix socket, until SIGTERM (``--serve``: the child process ApiServer starts)."""
    import signal

    from aiohttp import web

    from dockyard.api import app as api_app
    from dockyard.api import routes_distribution, routes_images, routes_system
    from dockyard.daemon.events import EventBus
    from dockyard.daemon.system import SystemService

    store = open_store(root / "metadata.db")
    svc = ImageService(root, store)

    async def main() -> None:
        events = EventBus()
        ctx = api_app.ApiContext(system=SystemService(root, images=svc, events=events),
                                 events=events, images=svc)
        app = web.Application(middlewares=[api_app.error_middleware,
                                           api_app.version_middleware],
                              client_max_size=1024 ** 3)
        app[api_app.CTX] = ctx
        app.on_response_prepare.append(api_app._on_prepare)
        routes_system.register(app)
        routes_distribution.register(app)
        routes_images.register(app)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.UnixSite(runner, sock).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        await stop.wait()
        await runner.cleanup()

    try:
        asyncio.run(main())
    finally:
        store.close()


class ApiServer:
    """Dockyard's Engine API for one data root, served on a unix socket by a child
    process in a session of its own: like dockerd (tests/helpers/dockerd.py), and like
    a daemon a service manager starts, it is its own scheduling group (autogroup) on a
    busy machine, apart from this process, the CLI and the registries."""

    def __init__(self, root: Path):
        self.root = root
        self.dir = tempfile.mkdtemp(prefix="dy-pb-", dir="/tmp")
        self.sock = os.path.join(self.dir, "api.sock")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", str(root), self.sock],
            stdout=subprocess.PIPE, start_new_session=True)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.close()
            raise RuntimeError(f"the API server did not start: {line!r}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def docker(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}",
                   DOCKER_CONFIG=os.path.join(self.dir, "cfg"))
        p = subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True,
                           timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {p.stderr.strip()}")
        return p

    def image_id(self, name: str) -> str:
        return self.docker("image", "inspect", "-f", "{{.Id}}", name).stdout.strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        subprocess.run(["umount", "-R", "-l", str(self.root)], capture_output=True)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(*pids: int, alone: int | None = None) -> float:
    """CPU seconds (user + system) used so far by ``pids`` and their live descendants
    (and by process ``alone`` without its descendants)."""
    kids: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kids.setdefault(int(fields[1]), []).append(int(d))
        cpu[int(d)] = (int(fields[11]) + int(fields[12])) / _TICK
    total, todo = cpu.get(alone, 0.0), list(pids)
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo += kids.get(p, [])
    return total


def timed_cpu(fn, *pids: int, alone: int | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of ``pids``' trees and of ``alone``) of ``fn()``."""
    c = tree_cpu(*pids, alone=alone)
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t, tree_cpu(*pids, alone=alone) - c


def dockyard_rep(archive: Path, work: Path, r: int) -> tuple[float, float, float]:
    """One push and one pull through Dockyard: (push seconds, pull seconds, pull CPU
    seconds of the engine (its API server process) and the registry)."""
    # a fresh source store each time: the push compresses the layers again, as
    # dockerd's does for a registry it has not pushed to
    src = ApiServer(work / f"dy-src{r}")
    try:
        src.docker("load", "-q", "-i", str(archive))
        with running_registry(work / f"dy-reg{r}") as reg:
            name = f"{reg.addr}/bench/img:v1"
            src.docker("tag", "bench/img:v1", name)
            push = timed(lambda: src.docker("push", "-q", name))
            dst = ApiServer(work / f"dy-dst{r}")
            try:
                pull, cpu = timed_cpu(lambda: dst.docker("pull", "-q", name),
                                      dst.pid, reg.proc.pid)
                assert dst.image_id(name) == src.image_id(name)
            finally:
                dst.close()
                shutil.rmtree(work / f"dy-dst{r}", ignore_errors=True)
    finally:
        src.close()
        shutil.rmtree(work / f"dy-src{r}", ignore_errors=True)
        shutil.rmtree(work / f"dy-reg{r}", ignore_errors=True)
    return push, pull, cpu


def _port_open_in_netns(ns_path: str, port: int) -> bool:
    """Whether 127.0.0.1:port answers in the network namespace at ns_path (from a thread
    that enters it and ends there)."""
    import socket

    out = []

    def probe() -> None:
        fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(fd)
        finally:
            os.close(fd)
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            out.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return bool(out)


@contextlib.contextmanager
def docker_registry_beside(d, rdir: Path, port: int = 5000):
    """Debian's docker-registry in dockerd's network namespace, on its 127.0.0.1:port."""
    cfg = rdir / "dr-config.yml"
    cfg.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {rdir / 'dr-root'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    ns = f"/proc/{d.pid}/ns/net"
    proc = subprocess.Popen(["nsenter", f"--net={ns}", DOCKER_REGISTRY, "serve", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not _port_open_in_netns(ns, port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not start in dockerd's namespace")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def docker_rep(d, work: Path, r: int) -> tuple[float, float, float]:
    """One push and one pull through dockerd (which has bench/img:v1 loaded): (push
    seconds, pull seconds, pull CPU seconds of dockerd, its containerd and the registry)."""
    rdir = work / f"dr{r}"
    rdir.mkdir()
    try:
        with docker_registry_beside(d, rdir) as (addr, reg_pid):
            name = f"{addr}/bench/img:v1"
            d.docker("tag", "bench/img:v1", name)
            push = timed(lambda: d.docker("push", "-q", name, timeout=1800))
            d.docker("rmi", name)
            # keep bench/img:v1 for the next push; pull into a store without the layers:
            d.docker("rmi", "bench/img:v1")
            pull, cpu = timed_cpu(lambda: d.docker("pull", "-q", name, timeout=1800),
                                  d.pid, reg_pid)
            d.docker("tag", name, "bench/img:v1")
            d.docker("rmi", name)
    finally:
        shutil.rmtree(rdir, ignore_errors=True)
    return push, pull, cpu


def run(archive: Path, work: Path, reps: int, only: str | None) -> dict:
    """Reps alternate between the two engines, so that load from elsewhere on the
    machine falls on both alike."""
    res: dict[str, tuple[list[float], list[float], list[float], list[float]]] = {}
    with contextlib.ExitStack() as stack:
        d = None
        if only in (None, "docker"):
            d = stack.enter_context(running_dockerd(work / "dockerd"))
            d.docker("load", "-i", str(archive))
        for r in range(reps):
            for kind in ("dockyard", "docker"):
                if only not in (None, kind):
                    continue
                push, pull, cpu = dockyard_rep(archive, work, r) if kind == "dockyard" \
                    else docker_rep(d, work, r)
                pushes, pulls, loads, cpus = res.setdefault(kind, ([], [], [], []))
                pushes.append(push)
                pulls.append(pull)
                cpus.append(cpu)
                loads.append(os.getloadavg()[0])
                print(f"  {kind:8s} rep {r}: push {push:.2f}s pull {pull:.2f}s "
                      f"(CPU {cpu:.2f}s)   (load {loads[-1]:.2f})", flush=True)
    return res


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve_api(Path(sys.argv[2]), sys.argv[3])
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--layer-mb", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", choices=["dockyard", "docker"])
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pull-bench-", dir="/var/tmp"))
    try:
        archive = work / "image.tar"
        print(f"making a {a.layers}x{a.layer_mb} MB image ... (load average "
              f"{os.getloadavg()[0]:.2f})", flush=True)
        make_archive(archive, a.layers, a.layer_mb)
        res = run(archive, work, a.reps, a.only)
        print(f"\n{a.layers} layers x {a.layer_mb} MB, {a.reps} reps, load average at the end "
              f"{os.getloadavg()[0]:.2f} (1 min), {os.getloadavg()[1]:.2f} (5 min); "
              "median (min-max), load during the reps:")
        for k, (pu, pl, ld, cp) in res.items():
            print(f"  {k:9s} push {statistics.median(pu):6.2f}s ({min(pu):.2f}-{max(pu):.2f})"
                  f"   pull {statistics.median(pl):6.2f}s ({min(pl):.2f}-{max(pl):.2f})"
                  f"   pull CPU {statistics.median(cp):5.2f}s   load {min(ld):.2f}-{max(ld):.2f}")
        if len(res) == 2:
            (dpu, dpl, _, dcp), (kpu, kpl, _, kcp) = res["dockyard"], res["docker"]
            print(f"  pull CPU (engine + registry) dockerd / dockyard: "
                  f"{statistics.median(kcp) / statistics.median(dcp):.2f}x")
            print(f"  ratio (dockerd / dockyard) of the medians: push "
                  f"{statistics.median(kpu) / statistics.median(dpu):.2f}x   pull "
                  f"{statistics.median(kpl) / statistics.median(dpl):.2f}x (target >= 1.5x)")
            per_rep = [k / d for k, d in zip(kpl, dpl)]
            print(f"  pull ratio rep by rep: {' '.join(f'{x:.2f}x' for x in per_rep)} "
                  f"(median {statistics.median(per_rep):.2f}x, {min(per_rep):.2f}x-"
                  f"{max(per_rep):.2f}x)")
    finally:
        subprocess.run(["umount", "-R", "-l", str(work)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
