#!/usr/bin/env python3
"""`dockyard ui`: the container page with 1,000 containers, and the UI's CPU with 50
containers' live stats.

    python3 bench/ui_bench.py [--engine dockyard|dockerd] [--containers 1000] [--running 50] [--seconds 30]

A private engine (our daemon, or Debian's dockerd) gets 1,000 containers
(busybox, --network none), 50 of them running `sleep`. Then `dockyard ui` runs
against it and Debian's headless chromium (selenium) opens the container list:

* the page's load: from the navigation start (a whole page load, and a click from
  another page) until the browser has painted the list with its rows (the list is
  virtual: the rows on screen are in the DOM), as the page records it
  (``main.dataset.paintedAt``); the UI's /api/containers answer alone; a scroll to
  the bottom; each with the machine's load average beside it;
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
            for _ in range(6):
                t = time.monotonic()
                r = s.get(ui.url + "/api/containers", headers={"X-CSRF-Token": csrf})
                api.append((time.monotonic() - t, r.headers.get("X-Dockyard-List")))
                n = len(r.json()["containers"])
                time.sleep(0.2)
            for kind in ("fetched", "kept"):
                xs = sorted(t for t, k in api if k == kind)
                if xs:
                    print(f"/api/containers ({n} rows) {kind}: {len(xs)} answers, best {xs[0] * 1000:.0f} ms, "
                          f"median {xs[len(xs) // 2] * 1000:.0f} ms (load {os.getloadavg()[0]:.1f})")

            b = new_browser()
            painted = ("const m = document.getElementById('main'); return m.dataset.page === 'containers' &&"
                       " m.dataset.paintedAt && document.getElementById('count').textContent === "
                       f"'{args.containers} of {args.containers}'"
                       " ? [Number(m.dataset.paintedAt), Number(m.dataset.loadedMs),"
                       " document.querySelectorAll('#containers-table tbody tr[data-id]').length] : null")

            def wait_painted():
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    r = b.execute_script(painted)
                    if r is not None:
                        return r
                    time.sleep(0.01)
                raise RuntimeError("the container page did not load")

            def load() -> str:
                return f"load {os.getloadavg()[0]:.1f}"
            try:
                b.get(ui.login_url)               # logs in and lands on the list
                wait_painted()
                # a whole page load (the browser's cache warm): navigation start -> the rows painted
                for _ in range(3):
                    b.get("about:blank")
                    b.get(ui.url + "/#/containers")
                    at, fetch_render, in_dom = wait_painted()
                    print(f"container page, full load, {args.containers} containers: painted at {at:.0f} ms "
                          f"(fetch+render {fetch_render:.0f} ms, {in_dom} rows in the DOM; {load()})")
                # within the page: from the click to the rows painted
                for _ in range(3):
                    b.get(ui.url + "/#/images")
                    time.sleep(0.5)
                    b.execute_script("window.__t0 = performance.now(); location.hash = '#/containers';")
                    at, fetch_render, in_dom = wait_painted()
                    t0 = b.execute_script("return window.__t0")
                    print(f"container page, from the images page: painted after {at - t0:.0f} ms "
                          f"(fetch+render {fetch_render:.0f} ms, {in_dom} rows in the DOM; {load()})")
                # right after a change (a rename: an event, the count the same): the UI asks the engine
                last = f"b{args.containers - 1:04d}"
                for i in range(3):
                    b.get(ui.url + "/#/images")
                    new = f"{last}-r{i}"
                    eng.docker("rename", last if i == 0 else f"{last}-r{i - 1}", new)
                    time.sleep(0.3)
                    b.execute_script("window.__t0 = performance.now(); location.hash = '#/containers';")
                    at, fetch_render, in_dom = wait_painted()
                    t0 = b.execute_script("return window.__t0")
                    print(f"container page, right after an event (the list fetched from the engine): painted "
                          f"after {at - t0:.0f} ms (fetch+render {fetch_render:.0f} ms; {load()})")
                # scrolling to the bottom: the last rows are drawn in the next frame
                ms = b.execute_async_script("""
                    const done = arguments[arguments.length - 1], t0 = performance.now();
                    window.scrollTo(0, document.body.scrollHeight);
                    requestAnimationFrame(() => requestAnimationFrame(() => done([performance.now() - t0,
                      !!document.querySelector('#containers-table tr.spacer.bottom')])));""")
                print(f"scroll to the bottom: drawn in {ms[0]:.0f} ms (a bottom spacer left: {ms[1]}; {load()})")
                b.execute_script("window.scrollTo(0, 0)")
                t = time.monotonic()
                n = len(s.get(ui.url + "/api/containers", headers={"X-CSRF-Token": csrf}).content)
                print(f"/api/containers answer: {n} bytes in {(time.monotonic() - t) * 1000:.0f} ms")
                # the list page watches the first 100 running containers' stats (here all 50);
                # only running ones shown, so their rows (and sparklines) are on screen
                b.execute_script("document.getElementById('show-all').click()")
                time.sleep(5)
                c0, w0 = cpu_seconds(ui.proc.pid), time.monotonic()
                time.sleep(args.seconds)
                c1, w1 = cpu_seconds(ui.proc.pid), time.monotonic()
                sparks = b.execute_script("return document.querySelectorAll('#containers-table svg.spark polyline').length")
                rows_on = b.execute_script("return document.querySelectorAll('#containers-table tr[data-id]').length")
                print(f"UI process CPU with {args.running} containers' stats at 1 Hz: "
                      f"{100 * (c1 - c0) / (w1 - w0):.2f} % of a core over {w1 - w0:.0f} s "
                      f"({sparks} sparklines drawn in the {rows_on} rows in the DOM; target < 5 %; {load()})")
            finally:
                b.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
