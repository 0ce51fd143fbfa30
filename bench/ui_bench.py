#!/usr/bin/env python3
"""`dockyard ui`: the container page with 1,000 containers, and the UI's CPU with 50
containers' live stats.

    python3 bench/ui_bench.py [--engine dockyard|dockerd] [--containers 1000] [--running 50] [--seconds 30]

A private engine (our daemon, or Debian's dockerd) gets 1,000 containers
(busybox, --network none), 50 of them running `sleep`. Then `dockyard ui` runs
against it and Debian's headless chromium (selenium) opens the container list:

* the page's load: from the navigation to all 1,000 rows in the DOM (wall, in
  the browser), and the UI's /api/containers answer alone;
* the UI process's CPU (utime+stime from /proc) over ``--seconds`` while the
  list page shows the 50 running containers' CPU sparklines and memory, one
  engine stats stream each at 1 Hz, in percent of one core.

Targets (issue 18): under a second; under 5 % of a core. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))
sys.path.insert(0, str(HERE / "tests" / "ui"))
sys.path.insert(0, str(HERE / "src"))

from conftest import new_browser, running_engine, running_ui  # noqa: E402  (tests/ui/conftest.py)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="dockyard", choices=("dockyard", "dockerd"))
    ap.add_argument("--containers", type=int, default=1000)
    ap.add_argument("--running", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="uibench-"))
    try:
        return run(args, base)
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def run(args, base: Path) -> int:
    import requests

    with running_engine(args.engine, base) as eng:
        t0 = time.monotonic()

        def make(i: int) -> None:
            if i < args.running:
                eng.docker("run", "-d", "--name", f"b{i:04d}", "--network", "none", "busybox", "sleep", "3600")
            else:
                eng.docker("create", "--name", f"b{i:04d}", "--network", "none", "busybox", "true")

        with cf.ThreadPoolExecutor(8) as ex:
            list(ex.map(make, range(args.containers)))
        print(f"engine {args.engine}: {args.containers} containers ({args.running} running) made in "
              f"{time.monotonic() - t0:.1f} s")

        with running_ui(eng.host) as ui:
            s = requests.Session()
            s.get(ui.login_url)
            csrf = re.search(r'name="csrf-token" content="([^"]+)"', s.get(ui.url + "/").text).group(1)
            api = []
            for _ in range(5):
                t = time.monotonic()
                n = len(s.get(ui.url + "/api/containers", headers={"X-CSRF-Token": csrf}).json()["containers"])
                api.append(time.monotonic() - t)
            print(f"/api/containers ({n} rows): best {min(api) * 1000:.0f} ms, median "
                  f"{sorted(api)[len(api) // 2] * 1000:.0f} ms")

            b = new_browser()
            try:
                b.get(ui.login_url)               # logs in and lands on the list
                loads = []
                for _ in range(3):
                    b.get(ui.url + "/#/images")
                    b.execute_script("window.__t0 = performance.now(); location.hash = '#/containers';")
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        ms = b.execute_script(
                            "return document.querySelectorAll('#containers-table tbody tr[data-id]').length"
                            f" >= {args.containers} ? [performance.now() - window.__t0,"
                            " Number(document.getElementById('main').dataset.loadedMs)] : null")
                        if ms is not None:
                            loads.append(ms)
                            break
                        time.sleep(0.01)
                print(f"container page, {args.containers} rows in the DOM: "
                      + ", ".join(f"{x:.0f} ms (fetch+render {y:.0f})" for x, y in loads)
                      + f"  (target < 1000 ms; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
                # the list page now watches the running containers' stats
                time.sleep(5)
                c0, w0 = cpu_seconds(ui.proc.pid), time.monotonic()
                time.sleep(args.seconds)
                c1, w1 = cpu_seconds(ui.proc.pid), time.monotonic()
                sparks = b.execute_script("return document.querySelectorAll('#containers-table svg.spark polyline').length")
                print(f"UI process CPU with {args.running} containers' stats at 1 Hz: "
                      f"{100 * (c1 - c0) / (w1 - w0):.2f} % of a core over {w1 - w0:.0f} s "
                      f"({sparks} sparklines drawn; target < 5 %)")
            finally:
                b.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
