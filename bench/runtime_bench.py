"""`dockyard-runc run` against `runc run` on the same busybox bundle.

    python3 bench/runtime_bench.py [N]        # N runs of each (default 30)

Both runtimes run `true` in the same bundle (runc's default namespaces,
mounts, masked paths and device rules, no terminal), alternately, so that
background noise hits both alike. Prints each runtime's median wall time and
the ratio (target: dockyard-runc <= 1.5x runc).

Every run is measured twice over, because one piece of kernel state moves a
runtime's time by ~10 ms: moving a process into a cgroup (what both runtimes
do for the container) waits for an RCU grace period (~8 ms here) unless some
process did the same in the last ~20-50 ms. So
- "cold": each run starts 120 ms after the previous one (nothing recent: the
  runtime pays the wait; a lone `docker run` on a quiet host);
- "warm": the bench moves itself into its own cgroup just before each run
  (the wait is already paid: a host starting containers back to back).
Without this, each runtime's time depends on what ran just before it in the
loop (runc right after a dockyard run takes ~22 ms, after anything else
~31 ms). Dockyard's runtime takes that wait on a thread while it imports
(runtime/cgwarm.py), so it barely shows in its numbers either way.

Three dockyard variants are timed: the installed `dockyard-runc` console
script (what dockerd invokes; it pays for every `.pth` file in
site-packages at interpreter start, and this machine's site-packages has a
sandbox hook that imports certifi at every start), the same console script
installed in a clean throwaway venv (no system site-packages: what a normal
machine pays for `site` and pip's console-script template), and
`dockyard.runtime.runtime_argv()`, the `python -S` command line Dockyard's
own daemon should use. The venv is built in the bench's temp dir from a copy
of this checkout (pip, offline from the local index/cache: `wheel` for the
build, the project with --no-deps, pyseccomp) and removed with it; if it
cannot be built, its line is skipped with the reason.
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


def _clean_venv(tmp: Path) -> str | None:
    """`dockyard-runc` pip-installed into a fresh venv under tmp (None if that fails)."""
    build = tmp / "venv-src"
    build.mkdir()
    root = HERE.parent
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(root / name, build / name)
    shutil.copytree(SRC, build / "src", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp / "venv"
    py = str(venv / "bin" / "python")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [py, "-m", "pip", "install", "-q", "wheel"],          # setuptools 65 builds through it
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(build)],
        [py, "-m", "pip", "install", "-q", "--no-deps", "pyseccomp"],
    ]
    for cmd in steps:
        r = subprocess.run(cmd, **quiet, timeout=300)
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip().splitlines()
            print(f"(clean venv skipped: {' '.join(cmd[2:5])} failed: "
                  f"{err[-1] if err else r.returncode})")
            return None
    return str(venv / "bin" / "dockyard-runc")


def _own_cgroup_procs() -> str | None:
    """A cgroup.procs file of one of this process's own cgroups (root only)."""
    if os.geteuid() != 0:
        return None
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, ctrls, path = line.rstrip("\n").split(":", 2)
            d = (f"/sys/fs/cgroup/{ctrls.removeprefix('name=')}" if ctrls
                 else "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified")
                 else "/sys/fs/cgroup")
            procs = os.path.join(d + path, "cgroup.procs")
            if os.access(procs, os.W_OK):
                return procs
    return None


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


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
        venv_script = _clean_venv(tmp)
        from dockyard.runtime import runtime_argv
        lean = runtime_argv()
        variants = {
            "runc": lambda i: [runc, "--root", str(tmp / "runc-state"), "run", "--bundle",
                               str(tmp / "bundle"), f"r{i}"],
            "dockyard-runc": lambda i: [script, "--root", str(tmp / "dy-state"), "run",
                                        "--bundle", str(tmp / "bundle"), f"d{i}"],
        }
        if venv_script:
            variants["dockyard-runc (clean venv)"] = lambda i: [
                venv_script, "--root", str(tmp / "dy-state"), "run", "--bundle",
                str(tmp / "bundle"), f"v{i}"]
        variants |= {
            "dockyard (runtime_argv)": lambda i: [*lean, "--root", str(tmp / "dy-state"), "run",
                                               "--bundle", str(tmp / "bundle"), f"s{i}"],
        }
        # the floor under any Python runtime: starting and stopping the interpreter
        variants["(python -I -S -c pass)"] = lambda i: [lean[0], "-I", "-S", "-c", "pass"]
        for name, make in variants.items():     # warm-up (page cache, pyc)
            _time(make("warmup"), env)
        procs = _own_cgroup_procs()
        me = str(os.getpid()).encode()

        def cold() -> None:
            time.sleep(0.12)

        def warm() -> None:
            fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, me)     # a no-op move into our own cgroup
            finally:
                os.close(fd)

        modes = {"cold": cold, "warm": warm} if procs else {"cold": cold}
        for mode, before in modes.items():
            times: dict[str, list[float]] = {k: [] for k in variants}
            load_before = _load()
            for i in range(n):
                for name, make in variants.items():
                    before()
                    times[name].append(_time(make(f"{mode}{i}"), env))
            base = statistics.median(times["runc"])
            print(f"{mode + ': runtime':<30}{'median':>10}{'ratio':>8}   (N={n}, `run` of "
                  f"`true`; load {load_before} -> {_load()})")
            for name, ts in times.items():
                med = statistics.median(ts)
                print(f"{name:<30}{med * 1000:>8.1f}ms{med / base:>7.2f}x")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
