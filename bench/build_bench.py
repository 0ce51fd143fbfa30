#!/usr/bin/env python3
"""`docker build`: Dockyard against dockerd's legacy builder, dockerd's BuildKit and podman.

One run, the same contexts for every builder, a busybox base image imported into each
engine from Debian's busybox-static (no registry anywhere):

* cold: a multi-stage build with two independent 1-second stages and a 2,000-file (16 MB)
  context copied into the last stage; every rep starts from an empty build cache
  (`builder prune -af` and `--no-cache`);
* no-change rebuild: the same build again (all cache hits);
* one file changed: one context file rewritten, then a rebuild;
* 1 GB context: one incompressible 1 GB file beside a small Dockerfile that uses none of
  it; the daemon's RSS is sampled every 20 ms while the context arrives (peak - before).

Every build runs its RUN steps with ``--network none`` (the daemons have no bridge).
Builders: dockerd 20.10 (Debian) with the docker CLI 28 and DOCKER_BUILDKIT=0 (legacy),
with Debian's docker 20.10 CLI and DOCKER_BUILDKIT=1 (BuildKit: it sends only changed
files); `podman build` if podman is installed (else skipped with a note); Dockyard
through the docker CLI 28 (legacy API) and through `dockyard build` (which sends only what
changed since its last build of the directory: builder/sessions.py), the latter also from a
clean venv (bench/cleanvenv.py: the console script without this sandbox's site hooks).

    python3 bench/build_bench.py [--reps 3] [--skip-1g] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from acceptance.harness import DOCKER, Daemon  # noqa: E402
from helpers.dockerd import running_dockerd  # noqa: E402
from helpers.rootfs import build_busybox_rootfs  # noqa: E402

DOCKER_2010 = "/usr/bin/docker"

DOCKERFILE = """\
FROM busybox AS one
RUN sleep 1 && echo one > /one
FROM busybox AS two
RUN sleep 1 && echo two > /two
FROM busybox
COPY --from=one /one /one
COPY --from=two /two /two
COPY files/ /files/
RUN ls /files | wc -l
"""

BIG_DOCKERFILE = "FROM busybox\nCOPY small.txt /small.txt\n"


def make_contexts(base: Path, big: bool) -> tuple[Path, Path | None]:
    ctx = base / "ctx"
    for d in range(20):
        dd = ctx / "files" / f"d{d:02}"
        dd.mkdir(parents=True)
        for f in range(100):
            (dd / f"f{f:03}").write_bytes(os.urandom(8192))   # 2,000 x 8 KiB = 16 MB
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    big_ctx = None
    if big:
        big_ctx = base / "big"
        big_ctx.mkdir()
        (big_ctx / "Dockerfile").write_text(BIG_DOCKERFILE)
        (big_ctx / "small.txt").write_text("small\n")
        with open(big_ctx / "blob.bin", "wb") as f:
            for _ in range(1024):
                f.write(os.urandom(1 << 20))
    return ctx, big_ctx


class Builder:
    """One way of building: ``argv`` ends with the context directory."""

    def __init__(self, name: str, argv: list[str], env: dict, prune: list[str],
                 daemon_pid: int | None) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.prune, self.daemon_pid = prune, daemon_pid

    def build(self, ctx: Path, *extra: str, tag: str = "bench") -> float:
        # the daemons run without a bridge (nothing of the host's network is touched)
        cmd = [*self.argv, "--network", "none", *extra, "-t", tag, str(ctx)]
        t = time.perf_counter()
        r = subprocess.run(cmd, env=self.env, capture_output=True, timeout=900)
        dt = time.perf_counter() - t
        if r.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(cmd)} -> {r.returncode}\n"
                               f"{r.stdout.decode()[-2000:]}\n{r.stderr.decode()[-2000:]}")
        return dt

    def clear_cache(self) -> None:
        subprocess.run(self.prune, env=self.env, capture_output=True, timeout=300)


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def sampled_peak(pid: int, fn) -> tuple[float, int, int]:
    """(seconds, RSS before in KiB, peak RSS during in KiB) of ``fn()``."""
    before = rss_kib(pid)
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            stop.wait(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        took = fn()
    finally:
        stop.set()
        t.join()
    return took, before, peak[0]


def podman_builder(base: Path, tar: bytes):
    if not shutil.which("podman"):
        return None, "podman: not installed here (scripts/install-bench-deps) - skipped"
    from containers_bench import Podman
    pm = Podman(base / "podman")
    pm.podman("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
    # `podman builder prune -a` would take the imported busybox too (there is no
    # registry to pull it back from): only dangling images (the build's layers) go
    b = Builder("podman build", [*pm.prefix, "build", "--pull=never", "--ulimit",
                                 "nofile=1024:1024"], pm.env,
                [*pm.prefix, "image", "prune", "-f"], None)
    b.close = pm.close   # type: ignore[attr-defined]
    return b, None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip-1g", action="store_true")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bbench-", dir="/var/tmp"))
    notes: list[str] = []
    ours = Daemon(base / "ours")
    pm = None
    try:
        bb = build_busybox_rootfs(base / "bb")
        tar = subprocess.run(["tar", "-C", str(bb), "-c", "."], capture_output=True,
                             check=True).stdout
        ctx, big_ctx = make_contexts(base, not args.skip_1g)
        ours.start()
        subprocess.run([DOCKER, "import", "-c", 'CMD ["sh"]', "-", "busybox"], env=ours.env,
                       input=tar, check=True, capture_output=True)
        with running_dockerd(base / "dkd") as dkd:
            subprocess.run([DOCKER, "import", "-c", 'CMD ["sh"]', "-", "busybox"],
                           env=dkd.env, input=tar, check=True, capture_output=True)
            legacy = {"DOCKER_BUILDKIT": "0"}
            builders = [
                Builder("dockerd legacy (CLI 28, DOCKER_BUILDKIT=0)", [DOCKER, "build"],
                        {**dkd.env, **legacy}, [DOCKER, "builder", "prune", "-af"], dkd.pid),
                Builder("dockerd BuildKit (CLI 20.10, DOCKER_BUILDKIT=1)",
                        [DOCKER_2010, "build"], {**dkd.env, "DOCKER_BUILDKIT": "1"},
                        [DOCKER_2010, "builder", "prune", "-af"], dkd.pid),
                Builder("dockyard (docker CLI 28, legacy API)", [DOCKER, "build"],
                        {**ours.env, **legacy}, [DOCKER, "builder", "prune", "-af"],
                        ours.proc.pid),
                # (with its bytecode written, as any installed package has it: a shell
                # with PYTHONDONTWRITEBYTECODE set would compile every module changed
                # since its last .pyc on every build)
                Builder("dockyard (dockyard build)",
                        [sys.executable, "-m", "dockyard", "build", "--progress", "plain"],
                        {k: v for k, v in ours.env.items() if k != "PYTHONDONTWRITEBYTECODE"},
                        [sys.executable, "-m", "dockyard", "builder", "prune", "-af"],
                        ours.proc.pid),
            ]
            import cleanvenv
            vbin = cleanvenv.build(base, extra=())
            if vbin is not None:
                # our client as a fresh Debian machine runs it: no sandbox site hooks
                builders.append(Builder(
                    "dockyard (dockyard build, clean venv)",
                    [str(vbin / "dockyard"), "build", "--progress", "plain"], ours.env,
                    [str(vbin / "dockyard"), "builder", "prune", "-af"], ours.proc.pid))
            else:
                notes.append("clean venv: could not be built (see above) - skipped")
            pm, note = podman_builder(base, tar)
            if pm is not None:
                builders.insert(2, pm)
            if note:
                notes.append(note)
            if args.only:
                keep = args.only.split(",")
                builders = [b for b in builders if any(k in b.name for k in keep)]
            results: dict[str, dict[str, list[float]]] = {b.name: {} for b in builders}
            for b in builders:      # warm up each path once (page cache, first imports)
                b.build(ctx)
            target = ctx / "files" / "d07" / "f042"
            for rep in range(args.reps):
                for b in builders:  # interleaved so background load falls on all alike
                    r = results[b.name]
                    b.clear_cache()
                    r.setdefault("cold", []).append(b.build(ctx, "--no-cache"))
                    r.setdefault("no-change rebuild", []).append(b.build(ctx))
                    target.write_bytes(os.urandom(8192))
                    r.setdefault("one file changed", []).append(b.build(ctx))
            mem: dict[str, tuple[float, int, int]] = {}
            if big_ctx is not None:
                for b in builders:
                    if b.daemon_pid is None:
                        took = b.build(big_ctx, tag="big")
                        mem[b.name] = (took, 0, 0)
                        continue
                    mem[b.name] = sampled_peak(b.daemon_pid,
                                               lambda b=b: b.build(big_ctx, tag="big"))
        print(f"build bench, {args.reps} reps, medians (load {os.getloadavg()[0]:.2f})")
        phases = ["cold", "no-change rebuild", "one file changed"]
        print(f"{'builder':50}" + "".join(f"{p:>20}" for p in phases))
        for name, r in results.items():
            print(f"{name:50}" + "".join(f"{statistics.median(r[p]):19.3f}s" for p in phases))
        for name, r in results.items():
            print(f"  {name}: " + "; ".join(f"{p} " + " ".join(f"{x:.3f}" for x in r[p])
                                           for p in phases))
        if mem:
            print("1 GB context (the Dockerfile uses none of it):")
            for name, (took, before, peak) in mem.items():
                extra = (f", daemon RSS {before / 1024:.0f} MiB -> peak {peak / 1024:.0f} MiB "
                         f"(+{(peak - before) / 1024:.0f} MiB)") if before else ""
                print(f"  {name:50} {took:7.2f}s{extra}")
        for n in notes:
            print("note:", n)
        return 0
    finally:
        if pm is not None:
            pm.close()
        ours.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
