"""The ``filters`` query parameter (sans-IO).

Docker clients send ``{"key": {"value": true}}`` (current form) or
``{"key": ["value"]}`` (old form); both become ``{"key": ["value", ...]}``.
"""

from __future__ import annotations

from dockyard import boundedjson
from dockyard.errors import InvalidParameter


def parse_filters(raw: str | None, allowed: set[str] | None = None) -> dict[str, list[str]]:
    if raw is None or raw.strip() == "":
        return {}
    try:
        data = boundedjson.loads(raw)
    except ValueError as e:
        raise InvalidParameter(f"invalid filter: {e}") from None
    if not isinstance(data, dict):
        raise InvalidParameter("invalid filter: filters must be a JSON object")
    out: dict[str, list[str]] = {}
    for key, val in data.items():
        if isinstance(val, dict):
            values = [str(k) for k, on in val.items() if on]
        elif isinstance(val, list):
            values = [str(v) for v in val]
        else:
            raise InvalidParameter(f"invalid filter: value of {key!r} must be an object or list")
        if allowed is not None and key not in allowed:
            raise InvalidParameter(f"invalid filter '{key}'")
        out[key] = values
    return out


def bool_value(filters: dict[str, list[str]], key: str) -> bool | None:
    """A boolean filter such as ``dangling=true``; None when absent."""
    vals = filters.get(key)
    if not vals:
        return None
    truth = set()
    for v in vals:
        lv = v.lower()
        if lv in ("true", "1"):
            truth.add(True)
        elif lv in ("false", "0"):
            truth.add(False)
        else:
            raise InvalidParameter(f"invalid filter '{key}={v}'")
    if len(truth) > 1:
        raise InvalidParameter(f"invalid filter '{key}': conflicting values")
    return truth.pop()
