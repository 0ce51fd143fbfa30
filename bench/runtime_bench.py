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
~31 ms). Dockyard's runtime starts that wait on a thread while it imports
(runtime/cgwarm.py), so cold costs it less than it costs runc.

Three dockyard variants are timed: the daemon's launcher (the file
`dockyard.runtime.launcher_script()` writes as <data-root>/bin/dockyard-runc,
a `#!/bin/sh` fast path that execs `python -I -S -c ...` for `run`, as the
pip-installed `dockyard-runc` does (runtime/launcher.py): what dockerd/containerd
should be given as the runtime's path), the `dockyard-runc` console script as
installed here (it pays for every `.pth` file in site-packages at interpreter
start, and this machine's site-packages has a sandbox hook that imports
certifi at every start), and the same console script installed in a clean
throwaway venv of the system's Python (bench/cleanvenv.py: what a fresh
Debian machine pays for `site` and pip's console-script template, which
imports `re`). If the venv cannot be built, its line is skipped with the
reason. `python -I -S -c pass` is the floor under any Python runtime.
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

import cleanvenv  # noqa: E402  (bench/cleanvenv.py)
from dockyard.runtime.spec import make_spec, write_bundle  # noqa: E402
from helpers.rootfs import build_busybox_rootfs  # noqa: E402


def _time(cmd: list[str], env: dict | None = None) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({r.returncode}): {r.stderr.decode()}")
    return dt


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
        venv_bin = cleanvenv.build(tmp, extra=("pyseccomp",))
        from dockyard.runtime import launcher_script, runtime_argv
        launcher = tmp / "bin" / "dockyard-runc"
        launcher.parent.mkdir()
        launcher.write_text(launcher_script())
        launcher.chmod(0o755)

        def run_with(exe: str, tag: str):
            return lambda i: [exe, "--root", str(tmp / "dy-state"), "run", "--bundle",
                              str(tmp / "bundle"), f"{tag}{i}"]

        variants = {
            "runc": lambda i: [runc, "--root", str(tmp / "runc-state"), "run", "--bundle",
                               str(tmp / "bundle"), f"r{i}"],
            "dockyard-runc (launcher)": run_with(str(launcher), "l"),
            "dockyard-runc (installed here)": run_with(script, "d"),
        }
        if venv_bin:
            variants["dockyard-runc (clean venv)"] = run_with(str(venv_bin / "dockyard-runc"), "v")
        # the floor under any Python runtime: starting and stopping the interpreter
        interp = runtime_argv()[0]
        variants["(python -I -S -c pass)"] = lambda i: [interp, "-I", "-S", "-c", "pass"]
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
