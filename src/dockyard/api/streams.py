"""Codecs for the API's streamed bodies (sans-IO: data in, bytes out).

* JSON progress (pull, push, load, import, build): one JSON object per line,
  lines separated by ``\\r\\n``; an error after the 200 has started travels
  in-band as ``{"errorDetail": {"message": m}, "error": m}``.
* Events: one JSON object per line separated by ``\\n``.
"""

from __future__ import annotations

import json
from typing import Any


def _dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON with <, > and & escaped, as Go's encoding/json writes it."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .encode())


class ProgressEncoder:
    """Turns progress messages into the bytes of a JSON progress stream."""

    def __init__(self) -> None:
        self.failed = False

    def message(self, msg: dict) -> bytes:
        return _dumps(msg) + b"\r\n"

    def status(self, status: str, id: str | None = None, **extra: Any) -> bytes:
        msg: dict[str, Any] = {"status": status}
        if id is not None:
            msg["id"] = id
        msg.update(extra)
        return self.message(msg)

    def stream(self, text: str) -> bytes:
        return self.message({"stream": text})

    def aux(self, data: dict) -> bytes:
        return self.message({"aux": data})

    def error(self, message: str) -> bytes:
        self.failed = True
        return self.message({"errorDetail": {"message": message}, "error": message})


def encode_event(event: dict) -> bytes:
    return _dumps(event) + b"\n"


class JSONLinesDecoder:
    """Splits a byte stream into JSON objects (either separator); for clients and tests."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[dict]:
        self._buf += data
        out = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            line, self._buf = self._buf[:nl].strip(), self._buf[nl + 1:]
            if line:
                out.append(json.loads(line))
        return out

    def close(self) -> list[dict]:
        rest, self._buf = self._buf.strip(), b""
        return [json.loads(rest)] if rest else []
