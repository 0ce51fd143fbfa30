"""Printing a JSON progress stream the way the Docker CLI does (jsonmessage).

On a terminal each ``id`` keeps its own line, redrawn in place with its progress
bar; elsewhere progress-bar updates are dropped and other messages printed as lines.
An in-band error ends the display with :class:`dockyard.client.StreamError`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Iterable



def _bar(detail: dict, width: int = 50) -> str:
    current, total = detail.get("current") or 0, detail.get("total") or 0
    from dockyard.cli.units import human_size

    if total <= 0:
        return human_size(current) if current else ""
    pct = min(current / total, 1.0)
    n = int(pct * width)
    arrow = ("=" * max(n - 1, 0) + ">" if n else ">").ljust(width)
    return f"[{arrow}] {human_size(current)}/{human_size(total)}"


class ProgressPrinter:
    def __init__(self, out: IO[str], tty: bool):
        self.out = out
        self.tty = tty
        self.lines: dict[str, int] = {}   # id -> line index (tty only)

    def _render(self, m: dict) -> str | None:
        has_progress = bool(m.get("progressDetail")) or bool(m.get("progress"))
        if "stream" in m:
            return m["stream"]
        if has_progress and not self.tty:
            return None
        text = ""
        if m.get("id"):
            text += f"{m['id']}: "
        if m.get("from"):
            text += f"(from {m['from']}) "
        status = m.get("status", "")
        if has_progress:
            bar = m.get("progress") or _bar(m.get("progressDetail") or {})
            return text + f"{status} {bar}"
        return text + status + ("" if self.tty and m.get("id") else "\n")

    def message(self, m: dict) -> None:
        text = self._render(m)
        if text is None:
            return
        ident = m.get("id")
        if self.tty and ident and "stream" not in m:
            if ident not in self.lines:
                self.lines[ident] = len(self.lines)
                self.out.write("\n")
            up = len(self.lines) - self.lines[ident]
            self.out.write(f"\x1b[{up}A\x1b[2K\r{text.rstrip(chr(10))}\r\x1b[{up}B")
        else:
            if self.tty and self.lines and "stream" in m:
                self.lines = {}
            self.out.write(text)
        self.out.flush()

    def run(self, msgs: Iterable[dict]) -> None:
        for m in msgs:
            self.message(m)
