"""Timestamps as Docker clients write them (sans-IO).

The Docker CLI turns ``--since 10m`` / ``--until 2024-01-02T03:04:05Z`` into
``<seconds>.<nanoseconds>`` before sending (Go's ``timetypes.GetTimestamp``);
the daemon parses that form.  Both directions live here so that our CLI and
the daemon agree.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from dockyard.errors import InvalidParameter

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
          "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DUR_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration_ns(value: str) -> int | None:
    """Go's ``time.ParseDuration``: ``1h30m``, ``1.5s``, ``-2m``, ``0``; None if not a duration."""
    s = value.strip()
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        return None
    pos, total = 0, 0
    while pos < len(s):
        m = _DUR_PART.match(s, pos)
        if not m:
            return None
        total += int(float(m.group(1)) * _UNITS[m.group(2)])
        pos = m.end()
    return sign * total


_FORMATS = [
    "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H%z",
    "%Y-%m-%d%z", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M",
    "%Y-%m-%dT%H", "%Y-%m-%d",
]


def _parse_datetime(value: str) -> datetime | None:
    v = value.strip()
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    # Python's %f takes at most 6 digits: trim nanoseconds
    v = re.sub(r"(\.\d{6})\d+", r"\1", v)
    for fmt in _FORMATS:
        try:
            dt = datetime.strptime(v, fmt)
        except ValueError:
            continue
        if dt.tzinfo is None:
            dt = dt.astimezone()  # local time, like Go's ParseInLocation(time.Local)
        return dt
    return None


def get_timestamp(value: str, now_ns: int | None = None) -> str:
    """Client side: a user's ``--since``/``--until`` value -> ``"<s>.<ns>"``."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    d = parse_duration_ns(value)
    if d is not None:
        t = now_ns - d
        return f"{t // 1_000_000_000}.{t % 1_000_000_000:09d}"
    dt = _parse_datetime(value)
    if dt is not None:
        ts = dt.timestamp()
        sec = int(ts // 1)
        nsec = dt.microsecond * 1000
        return f"{sec}.{nsec:09d}"
    if re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
        return value.strip()
    raise InvalidParameter(f'failed to parse value as time or duration: "{value}"')


def parse_timestamp_ns(value: str | None) -> int | None:
    """Daemon side: ``"<s>[.<frac>]"`` (or anything :func:`get_timestamp` accepts) -> ns."""
    if value is None or value == "":
        return None
    v = value.strip()
    m = re.fullmatch(r"(-?\d+)(?:\.(\d{1,9}))?", v)
    if not m:
        try:
            v = get_timestamp(v)
        except InvalidParameter:
            raise InvalidParameter(f"invalid timestamp: {value!r}") from None
        m = re.fullmatch(r"(-?\d+)(?:\.(\d{1,9}))?", v)
        assert m
    sec = int(m.group(1))
    frac = (m.group(2) or "").ljust(9, "0")
    return sec * 1_000_000_000 + int(frac)
