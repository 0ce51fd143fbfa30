"""Health checks at scale: N containers with a 1-second health check for S seconds,
the CPU used by our daemon and supervisor (with its runtime fork server) against
dockerd + containerd + the shims, in the same run.

    python3 bench/health_bench.py [--n 100] [--seconds 60] [--only dockyard|dockerd]

Each engine gets a private daemon (own data root, no networking: ``--network none``
containers); busybox is imported into both. Containers are started, the bench waits
until every one is healthy, then reads each engine's processes' CPU time
(utime+stime+cutime+cstime from /proc, so runtime processes they reaped count too)
before and after S seconds. The probes' own work (``true`` inside the container) is
in the containers' cgroups on both sides and is left out of neither: each side's
reaper gets it in its cutime alike. The engines run one after the other (not side
by side: the second's CPU would disturb the first's timing on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / TICK


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(p))
            except (OSError, ValueError, IndexError):
                pass
    return out


def _pids_matching(text: str) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and text in _cmdline(int(p))]


def _start_containers(docker, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        r = docker("run", "-d", "--network", "none", "--health-cmd", "true",
                   "--health-interval", "1s", "busybox", "sleep", "100000")
        ids.append(r.stdout.strip() if isinstance(r.stdout, str) else r.stdout.decode().strip())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        out = docker("ps", "-q", "--filter", "health=healthy").stdout
        out = out if isinstance(out, str) else out.decode()
        if len(out.split()) >= n:
            break
        time.sleep(1)
    return ids


def _measure(pids_fn, seconds: float) -> float:
    before = {p: _cpu(p) for p in pids_fn()}
    time.sleep(seconds)
    after = {p: _cpu(p) for p in pids_fn()}
    return sum(after.get(p, 0.0) - before.get(p, after.get(p, 0.0)) for p in after)


def bench_dockyard(n: int, seconds: float) -> float:
    from acceptance.harness import running

    with tempfile.TemporaryDirectory(prefix="hb-dky-") as tmp, running(Path(tmp)) as d:
        ids = _start_containers(lambda *a: d.docker(*a), n)
        sup = d.supervisor_pid()

        def pids() -> list[int]:
            ours = [d.proc.pid, sup]
            # the runtime fork server (a python child of the supervisor); container inits
            # are children too, and are not ours
            ours += [c for c in _children(sup) if "dockyard" in _cmdline(c)]
            return ours

        cpu = _measure(pids, seconds)
        d.docker("rm", "-f", *ids, timeout=300)
        return cpu


def bench_dockerd(n: int, seconds: float) -> float:
    from helpers.dockerd import running_dockerd
    from helpers.rootfs import build_busybox_rootfs

    with tempfile.TemporaryDirectory(prefix="hb-dkd-") as tmp, running_dockerd(Path(tmp)) as d:
        root = Path(tmp) / "bbroot"
        build_busybox_rootfs(root)
        tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True,
                             check=True).stdout
        d.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
        ids = _start_containers(lambda *a: d.docker(*a, text=True), n)
        key = str(d.exec_root)

        def pids() -> list[int]:
            return [d.pid] + _pids_matching(key)   # containerd and every shim use its sockets

        cpu = _measure(pids, seconds)
        d.docker("rm", "-f", *ids, timeout=300)
        return cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--only", choices=("dockyard", "dockerd"))
    a = ap.parse_args()
    res = {}
    if a.only in (None, "dockyard"):
        res["dockyard (daemon + supervisor + fork server)"] = bench_dockyard(a.n, a.seconds)
    if a.only in (None, "dockerd"):
        res["dockerd + containerd + shims"] = bench_dockerd(a.n, a.seconds)
    print(f"{a.n} containers, 1 s health checks, {a.seconds:g} s, load {os.getloadavg()[0]:.2f}")
    for k, v in res.items():
        print(f"  {k:48s} {v:7.2f} s CPU  ({100 * v / a.seconds:5.1f}% of one core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
