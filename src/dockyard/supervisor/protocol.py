"""Sans-IO pieces of the supervisor's control protocol and of Docker's stream framing.

Control messages are JSON objects, one per line, in both directions. A request
carries ``op`` and an optional ``seq``; the answer echoes ``seq`` with either
``ok: true`` and fields, or ``ok: false`` with ``error`` and ``kind`` (the name of
a ``dockyard.errors`` class). After an ``attach`` answer the connection carries raw
stream bytes instead of messages.
"""

from __future__ import annotations

import json

from dockyard.streamframes import HEADER_SIZE, STDERR, STDIN, STDOUT, FrameDecoder, frame  # noqa: F401


class ProtocolError(Exception):
    """The peer sent something this protocol does not allow."""


def encode_message(msg: dict) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


class LineDecoder:
    """Feed bytes, get complete JSON messages; keeps any partial line."""

    MAX_LINE = 1 << 20

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict]:
        self._buf += data
        out = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self.MAX_LINE:
                    raise ProtocolError("control message too long")
                return out
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
            except ValueError as e:
                raise ProtocolError(f"malformed control message: {e}") from None
            if not isinstance(msg, dict):
                raise ProtocolError("control message must be a JSON object")
            out.append(msg)

    def rest(self) -> bytes:
        """Bytes received after the last complete message (start of a raw stream)."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

