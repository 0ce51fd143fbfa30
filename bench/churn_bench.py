"""Churn: N `docker run --rm` in a row against a private daemon, the daemon's, the
supervisor's and its holder's memory (RSS from /proc) sampled as they go.

    python3 bench/churn_bench.py [N] [--clients C] [--warm-pool K]   # N default 5000

After a warm-up (the first 20% of the runs, at least 1,000: the daemon's event ring
of 4,096 events fills in ~700 runs) both should stay flat: the daemon must keep no
state per removed container (waiters, locks, connections, caches).
Prints the samples and the growth of each after the warm-up (target: < 2 MB).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from acceptance.harness import DOCKER, running  # noqa: E402


def rss_kb(pid: int | None) -> int:
    if not pid:
        return 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def anon_kb(pid: int | None) -> int:
    """Anonymous memory (the heaps) of RSS; the rest is mapped files (code, libraries)."""
    if not pid:
        return 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Anonymous:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("n", nargs="?", type=int, default=5000)
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--warm-pool", type=int, default=None)
    p.add_argument("--samples", type=int, default=10)
    a = p.parse_args()
    extra = ("--warm-pool", str(a.warm_pool)) if a.warm_pool is not None else ()
    with tempfile.TemporaryDirectory(prefix="churn-") as tmp, \
            running(Path(tmp), extra_args=extra) as d:
        sup = d.supervisor_pid()
        holder = d.holder_pid()
        env = d.env
        warm = min(a.n, max(1000, a.n // 5))
        step = max(1, (a.n - warm) // a.samples)
        samples = []
        failures = 0
        t0 = time.monotonic()

        def one(_: int) -> int:
            r = subprocess.run([DOCKER, "run", "--rm", "busybox", "true"], env=env,
                               capture_output=True, timeout=120)
            return r.returncode

        def sample(done: int) -> tuple:
            s = (done, rss_kb(d.proc.pid), rss_kb(sup), time.monotonic() - t0,
                 rss_kb(holder))
            print(f"{s[0]:6d} runs  daemon {s[1] / 1024:7.1f} MB (anon "
                  f"{anon_kb(d.proc.pid) / 1024:5.1f})  supervisor {s[2] / 1024:6.1f} MB  "
                  f"holder {s[4] / 1024:5.1f} MB  {s[3]:7.1f} s  load {os.getloadavg()[0]:.1f}",
                  flush=True)
            return s

        sample(0)   # before any run; the growth counts from the warm-up's end
        done = 0
        with cf.ThreadPoolExecutor(a.clients) as ex:
            while done < a.n:
                batch = min(step if done >= warm else warm, a.n - done)
                failures += sum(1 for rc in ex.map(one, range(batch)) if rc != 0)
                done += batch
                samples.append(sample(done))
        left = d.out("ps", "-aq")
        base = samples[0]
        last = samples[-1]
        peak_d = max(s[1] for s in samples[1:] or samples)
        print(f"\n{a.n} runs with {a.clients} client(s) in {last[3]:.1f} s "
              f"({a.n / last[3]:.1f}/s), {failures} failed, containers left: {len(left.split())}")
        print(f"daemon:     {base[1] / 1024:.1f} MB after warm-up ({base[0]} runs) -> "
              f"{last[1] / 1024:.1f} MB (growth {(last[1] - base[1]) / 1024:+.2f} MB, "
              f"peak {peak_d / 1024:.1f} MB)")
        print(f"supervisor: {base[2] / 1024:.1f} MB -> {last[2] / 1024:.1f} MB "
              f"(growth {(last[2] - base[2]) / 1024:+.2f} MB)")
        print(f"holder:     {base[4] / 1024:.1f} MB -> {last[4] / 1024:.1f} MB "
              f"(growth {(last[4] - base[4]) / 1024:+.2f} MB)")
        return 0 if failures == 0 and not left else 1


if __name__ == "__main__":
    sys.exit(main())
