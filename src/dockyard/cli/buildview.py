"""Showing a build's JSON stream (the legacy builder's messages).

* ``plain``: the messages as the docker CLI prints them (``Step 1/5 : ...``, the RUN output,
  ``Successfully built ...``) on stdout;
* ``quiet``: nothing, unless the build fails (then what was held goes to stderr);
* ``tty``: a live list of steps on the terminal (rich): each step's state (cached, running
  with its elapsed time and the last lines of its output, done), redrawn in place; the
  final list stays on the screen, and a failing step's whole output is printed after it.

:func:`parse` is the sans-IO part: it turns the stream's text into step events.
"""

from __future__ import annotations

import re
import sys
import time

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


class Plain:
    def __init__(self, out=None) -> None:
        from dockyard.cli.progress import ProgressPrinter
        self.printer = ProgressPrinter(out or sys.stdout, False)

    def message(self, m: dict) -> None:
        if "aux" in m and "stream" not in m:
            return
        self.printer.message(m)

    def close(self, ok: bool) -> None:
        pass


class RawJson(Plain):
    def message(self, m: dict) -> None:
        import json
        sys.stdout.write(json.dumps(m) + "\n")
        sys.stdout.flush()


class Quiet:
    def __init__(self) -> None:
        self.held: list[str] = []

    def message(self, m: dict) -> None:
        if "stream" in m:
            self.held.append(m["stream"])

    def close(self, ok: bool) -> None:
        if not ok:
            sys.stderr.write("".join(self.held))
            sys.stderr.flush()


class Step:
    __slots__ = ("number", "total", "text", "state", "lines", "start", "end", "partial")

    def __init__(self, number: int, total: int, text: str) -> None:
        self.number, self.total, self.text = number, total, text
        self.state = "waiting"      # waiting, running, cached, done, failed
        self.lines: list[str] = []
        self.partial = ""
        self.start = time.monotonic()
        self.end: float | None = None


class Tracker:
    """Sans-IO: feed it ``stream`` texts; it keeps the steps and the trailing lines."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.tail: list[str] = []      # lines after the last step (Successfully ...)
        self.buf = ""

    @property
    def current(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    def feed(self, text: str) -> None:
        self.buf += text
        *lines, self.buf = self.buf.split("\n")
        for ln in lines:
            self._line(ln)
        cur = self.current
        if cur is not None:
            cur.partial = self.buf

    def _line(self, ln: str) -> None:
        m = _STEP.match(ln)
        cur = self.current
        if m:
            if cur is not None and cur.state in ("waiting", "running"):
                cur.state, cur.end = "done", time.monotonic()
            self.steps.append(Step(int(m.group(1)), int(m.group(2)), m.group(3)))
            return
        if cur is None or ln.startswith(("Successfully built ", "Successfully tagged ",
                                         "[Warning] ")):
            self.tail.append(ln)
            return
        if ln == " ---> Using cache":
            cur.state = "cached"
        elif ln.startswith(" ---> Running in "):
            cur.state = "running"
            cur.start = time.monotonic()
        elif ln.startswith(" ---> "):
            if cur.state != "cached":
                cur.state = "done"
            cur.end = cur.end or time.monotonic()
        elif ln.startswith("Removing intermediate container"):
            pass
        else:
            cur.lines.append(ln)
            cur.partial = ""

    def fail(self) -> None:
        cur = self.current
        if cur is not None and cur.state not in ("done", "cached"):
            cur.state, cur.end = "failed", time.monotonic()


class Tty:
    SHOWN = 6    # output lines shown under a running step

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True, highlight=False)
        self.tracker = Tracker()
        self.t0 = time.monotonic()
        self.others: list[dict] = []
        self.live = Live(self._render(), console=self.console, refresh_per_second=8,
                         get_renderable=self._render, transient=False)
        self.live.start()

    def _render(self):
        from rich.text import Text

        now = time.monotonic()
        out = Text()
        out.append(f"[+] Building {now - self.t0:.1f}s\n", style="bold")
        for st in self.tracker.steps:
            took = ((st.end or now) - st.start)
            mark = {"cached": "CACHED", "running": f"{took:.1f}s", "done": f"{took:.1f}s",
                    "failed": "ERROR", "waiting": ""}[st.state]
            style = {"cached": "blue", "running": "cyan", "done": "green", "failed": "red",
                     "waiting": ""}[st.state]
            text = st.text if len(st.text) <= 100 else st.text[:97] + "..."
            out.append(f" => [{st.number}/{st.total}] {text}", style=style)
            out.append(f"  {mark}\n" if mark else "\n", style=style)
            if st.state == "running":
                lines = st.lines + ([st.partial] if st.partial else [])
                for ln in lines[-self.SHOWN:]:
                    out.append(f" => => {ln}\n", style="dim")
        for ln in self.tracker.tail:
            out.append(ln + "\n")
        return out

    def message(self, m: dict) -> None:
        if "stream" in m:
            self.tracker.feed(m["stream"])
        elif m.get("status"):
            self.tracker.feed(f"{m.get('id', '') + ': ' if m.get('id') else ''}"
                              f"{m['status']} {m.get('progress', '')}\n")

    def close(self, ok: bool) -> None:
        if not ok:
            self.tracker.fail()
        cur = self.tracker.current
        if cur is not None and cur.state in ("running", "waiting") and ok:
            cur.state, cur.end = "done", time.monotonic()
        self.live.update(self._render(), refresh=True)
        self.live.stop()
        if not ok and cur is not None and cur.lines:
            self.console.print(f"------\n > [{cur.number}/{cur.total}] {cur.text}:",
                               markup=False)
            for ln in cur.lines:
                self.console.print(ln, markup=False)
            self.console.print("------", markup=False)


def make(mode: str):
    if mode == "quiet":
        return Quiet()
    if mode == "rawjson":
        return RawJson()
    if mode == "tty":
        return Tty()
    return Plain()
