"""Docker's multiplexed stdout/stderr stream (8-byte frame headers), sans-IO.

One implementation for every side: the supervisor frames container output, the
client and the CLI decode it. Plain code, nothing to import (the CLI's start
pays for every import).
"""

from __future__ import annotations

STDIN, STDOUT, STDERR = 0, 1, 2
HEADER_SIZE = 8


class FrameError(ValueError):
    """The bytes are not a multiplexed stream."""


class FrameDecoder:
    """Feed multiplexed bytes, get ``(stream, payload)`` pairs."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out = []
        while len(buf) >= HEADER_SIZE:
            stream = buf[0]
            if stream > STDERR:
                raise FrameError(f"bad stream id {stream} in multiplexed stream")
            end = HEADER_SIZE + int.from_bytes(buf[4:8], "big")
            if len(buf) < end:
                break
            out.append((stream, bytes(buf[HEADER_SIZE:end])))
            del buf[:end]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


def frame(stream: int, payload: bytes) -> bytes:
    """One frame: stream id, three zero bytes, the payload's length (big endian), payload."""
    return bytes((stream, 0, 0, 0)) + len(payload).to_bytes(4, "big") + payload
