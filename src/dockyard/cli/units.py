"""Human-readable sizes and durations, as Docker's go-units prints them."""

from __future__ import annotations

import time

_DECIMAL = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
_BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]


def _go_g(value: float, precision: int) -> str:
    s = f"{value:.{precision}g}"
    if "e" in s:
        mant, exp = s.split("e")
        s = f"{mant}e{exp[0]}{exp[1:].lstrip('0').rjust(2, '0')}"
    return s


def _custom(size: float, base: float, units: list[str], precision: int) -> str:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return _go_g(size, precision) + units[i]


def human_size(size: float, precision: int = 4) -> str:
    """units.HumanSizeWithPrecision: decimal units (``1.982MB``)."""
    return _custom(float(size), 1000.0, _DECIMAL, precision)


def bytes_size(size: float) -> str:
    """units.BytesSize: binary units (``23.54GiB``)."""
    return _custom(float(size), 1024.0, _BINARY, 4)


def human_duration(seconds: float) -> str:
    """units.HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(round(seconds / 3600))  # d.Round(time.Hour)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def since(unix_seconds: float, now: float | None = None) -> str:
    now = time.time() if now is None else now
    return human_duration(now - unix_seconds) + " ago"


def truncate_id(id: str) -> str:
    """stringid.TruncateID: drop the algorithm, keep 12 hex digits."""
    if ":" in id:
        id = id.split(":", 1)[1]
    return id[:12]


def ellipsis(s: str, width: int) -> str:
    if len(s) <= width:
        return s
    return s[: width - 1] + "…"
