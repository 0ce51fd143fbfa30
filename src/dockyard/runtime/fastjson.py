"""JSON through the C accelerator alone, for the runtime's startup path.

``import json`` pulls in ``re`` (and ``enum``, ``functools``...): about 15 ms
on this project's machines, on every `dockyard-runc` call. The parsing and
encoding themselves are done by the ``_json`` C module, which needs none of
that; this module drives it directly for the common case and hands anything
unusual (a syntax error that needs a good message, indentation) to the
standard ``json`` module, so behaviour and error messages stay the same.
"""

from __future__ import annotations

import _json

_WS = " \t\n\r"


def _constant(name: str) -> float:
    return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo: dict = {}


_scan = _json.make_scanner(_Context())


def loads(s: str | bytes):
    if isinstance(s, (bytes, bytearray)):
        s = s.decode("utf-8")
    i, n = 0, len(s)
    while i < n and s[i] in _WS:
        i += 1
    try:
        obj, end = _scan(s, i)
    except Exception:  # noqa: BLE001 - StopIteration, or the C error path (see below)
        # (inside an object, _json builds its error via json.decoder, which we
        # have not imported: that surfaces as SystemError; the slow path below
        # produces the proper JSONDecodeError)
        obj, end = None, -1
    if end < 0 or s[end:].strip(_WS):
        import json
        return json.loads(s)   # raises json.JSONDecodeError with the usual message
    return obj


def _default(o):
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


_encode = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None, ": ", ", ",
                             False, False, True)


def dumps(obj, indent=None) -> str:
    if indent is not None:
        import json
        return json.dumps(obj, indent=indent)
    return "".join(_encode(obj, 0))
