"""A pod's start and stop through containerd's CRI: our runtime's handler against runc's.

    python3 bench/cri_bench.py [N] [--calls]   # N pods with each handler (default 7)

One private containerd (tests/cri/cri_helpers.py: Debian's containerd 1.6, its
own root and sockets, a `dockyard` handler = runc v2 shim with BinaryName our
launcher, and the default `runc` handler = Debian's runc) serves both, pods
alternate between the handlers so that background noise hits both alike.
"start" is RunPodSandbox + CreateContainer + StartContainer (a host-network
pod, the container runs `sleep`), "stop" is StopPodSandbox + RemovePodSandbox.
Prints each handler's median and spread, the ratio (target: dockyard <= 1.1x
runc) and the load average beside it. ``--calls``: both handlers' runtime binaries
are run through a small sh wrapper that logs each call the shim makes (create,
start, kill, kill --all, delete, delete --force, ...) with its wall time, and the
medians per call and handler are printed too (the wrapper adds ~1 ms to each call
of both handlers alike).
"""

from __future__ import annotations

import collections
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests" / "cri"), str(HERE.parent / "tests"),
                str(HERE.parent / "src")]

import cri_helpers  # noqa: E402
from cri_helpers import Containerd, compile_proto, have_containerd  # noqa: E402
from helpers.rootfs import build_busybox_rootfs  # noqa: E402


def one(c: Containerd, handler: str, n: int) -> tuple[float, float]:
    cfg = c.pod_config(f"bench-{handler}-{n}", host_network=True)
    t0 = time.perf_counter()
    pod = c.run_pod(cfg, handler=handler)
    cid = c.create(pod, cfg, "main", ["sleep", "1000"])
    c.start(cid)
    t1 = time.perf_counter()
    c.remove_pod(pod)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def _wrapper(path: Path, name: str, real: str, log: Path) -> str:
    """A sh script that runs ``real`` and appends '<name> <start ns> <end ns> <args>' to log."""
    path.write_text(f"""#!/bin/sh
s=$(date +%s%N)
"{real}" "$@"
rc=$?
echo "{name} $s $(date +%s%N) $*" >> "{log}"
exit $rc
""")
    path.chmod(0o755)
    return str(path)


def log_calls(work: Path) -> Path:
    """Make the next Containerd run both handlers' runtimes through logging wrappers."""
    import shutil as _sh
    log = work / "calls.log"
    orig = cri_helpers._config

    def config(top, launcher, runc_root, bridge, subnet):
        ours = _wrapper(work / "wrap-dockyard", "dockyard", launcher, log)
        theirs = _wrapper(work / "wrap-runc", "runc", _sh.which("runc") or "runc", log)
        text = orig(top, ours, runc_root, bridge, subnet)
        key = f'  Root = "{runc_root}-runc"'
        return text.replace(key, f'{key}\n  BinaryName = "{theirs}"')
    cri_helpers._config = config
    return log


def print_calls(log: Path) -> None:
    per: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for line in log.read_text().splitlines():
        name, start, end, *args = line.split()
        words, skip = [], False
        for a in args:                      # the command: the first word after the options
            if skip:
                skip = False
            elif a in ("--root", "--log", "--log-format"):
                skip = True
            elif not a.startswith("-"):
                words.append(a)
        cmd = (words[0] if words else "?") + "".join(f" {f}" for f in ("--all", "--force")
                                                    if f in args)
        per[cmd, name].append((int(end) - int(start)) / 1e6)
    print("  per runtime call (all pods, warm-up included):")
    for (cmd, name), v in sorted(per.items()):
        print(f"    {cmd:15} {name:8} x{len(v):3}  median {statistics.median(v):6.1f} ms"
              f"  (min {min(v):5.1f})")


def main() -> None:
    calls = "--calls" in sys.argv[1:]
    args = [a for a in sys.argv[1:] if a != "--calls"]
    n = int(args[0]) if args else 7
    why = have_containerd()
    if why:
        raise SystemExit(f"cannot run: {why}")
    work = Path(tempfile.mkdtemp(prefix="dyk-crib-"))
    log = log_calls(work) if calls else None
    pb = compile_proto(work / "proto")
    rootfs = build_busybox_rootfs(work / "busybox")
    top = Path(tempfile.mkdtemp(prefix="dyk-cri-", dir="/tmp"))
    c = Containerd(top, rootfs, *pb)
    times: dict[str, dict[str, list[float]]] = {h: {"start": [], "stop": []}
                                                for h in ("dockyard", "runc")}
    try:
        for h in ("dockyard", "runc"):          # warm-up: images, caches, first shim start
            one(c, h, -1)
        for i in range(n):
            for h in (("dockyard", "runc") if i % 2 == 0 else ("runc", "dockyard")):
                s, t = one(c, h, i)
                times[h]["start"].append(s)
                times[h]["stop"].append(t)
        left = c.leftovers()
        calls_text = log.read_text() if log is not None and log.exists() else None
    finally:
        c.close()
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    print(f"{n} pods per handler, alternating; load average {os.getloadavg()[0]:.2f}")
    med = {}
    for h in ("dockyard", "runc"):
        for what in ("start", "stop"):
            v = times[h][what]
            med[h, what] = statistics.median(v)
            print(f"  {h:8} {what:5}: median {med[h, what] * 1000:6.1f} ms"
                  f"  (min {min(v) * 1000:6.1f}, max {max(v) * 1000:6.1f})")
    for what in ("start", "stop"):
        print(f"  {what}: dockyard/runc = {med['dockyard', what] / med['runc', what]:.2f}x"
              " (target <= 1.1x)")
    total = {h: med[h, "start"] + med[h, "stop"] for h in ("dockyard", "runc")}
    print(f"  start+stop: dockyard/runc = {total['dockyard'] / total['runc']:.2f}x")
    if calls_text is not None:
        work.mkdir(parents=True, exist_ok=True)
        (work / "calls.log").write_text(calls_text)
        print_calls(work / "calls.log")
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    if left:
        print(f"  LEFT BEHIND: {left}")


if __name__ == "__main__":
    main()
