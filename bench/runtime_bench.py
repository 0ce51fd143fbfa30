"""`dockyard-runc run` against `runc run` on the same busybox bundle.

    python3 bench/runtime_bench.py [N]        # N runs of each (default 30)

Both runtimes run `true` in the same bundle (runc's default namespaces,
mounts, masked paths and device rules, no terminal), alternately, so that
background noise hits both alike. Prints each runtime's median wall time and
the ratio (target: dockyard-runc <= 1.5x runc).

Two dockyard variants are timed: the installed `dockyard-runc` console
script (what dockerd invokes; it pays for every `.pth` file in
site-packages at interpreter start), and `dockyard.runtime.runtime_argv()`,
the `python -S` command line Dockyard's own daemon should use.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(HERE.parent / "tests"))

from dockyard.runtime.spec import make_spec, write_bundle  # noqa: E402
from helpers.rootfs import build_busybox_rootfs  # noqa: E402


def _time(cmd: list[str], env: dict | None = None) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({r.returncode}): {r.stderr.decode()}")
    return dt


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    runc = shutil.which("runc")
    if runc is None:
        raise SystemExit("runc is not installed (apt-get install runc)")
    script = os.path.join(os.path.dirname(sys.executable), "dockyard-runc")
    tmp = Path(tempfile.mkdtemp(prefix="rtbench-"))
    try:
        rootfs = build_busybox_rootfs(tmp / "rootfs")
        write_bundle(str(tmp / "bundle"), make_spec(str(rootfs), ["true"]))
        # compile our modules once, as an installed package would have them
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(SRC / "dockyard")],
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""}, check=True,
                       stdout=subprocess.DEVNULL)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        from dockyard.runtime import runtime_argv
        lean = runtime_argv()
        variants = {
            "runc": lambda i: [runc, "--root", str(tmp / "runc-state"), "run", "--bundle",
                               str(tmp / "bundle"), f"r{i}"],
            "dockyard-runc": lambda i: [script, "--root", str(tmp / "dy-state"), "run",
                                        "--bundle", str(tmp / "bundle"), f"d{i}"],
            "dockyard (runtime_argv)": lambda i: [*lean, "--root", str(tmp / "dy-state"), "run",
                                               "--bundle", str(tmp / "bundle"), f"s{i}"],
        }
        # the floor under any Python runtime: starting and stopping the interpreter
        variants["(python -S -E -c pass)"] = lambda i: [lean[0], "-S", "-E", "-c", "pass"]
        times: dict[str, list[float]] = {k: [] for k in variants}
        for name, make in variants.items():     # warm-up (page cache, pyc)
            _time(make("warm"), env)
        for i in range(n):
            for name, make in variants.items():
                times[name].append(_time(make(i), env))
        base = statistics.median(times["runc"])
        print(f"{'runtime':<26}{'median':>10}{'ratio':>8}   (N={n}, `run` of `true`)")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"{name:<26}{med * 1000:>8.1f}ms{med / base:>7.2f}x")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
