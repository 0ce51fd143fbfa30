"""Detach keys (ctrl-p ctrl-q by default), shared by the daemon and the CLI. Sans-IO."""

from __future__ import annotations

DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q


def parse_detach_keys(spec: str | None) -> bytes:
    """``ctrl-p,ctrl-q`` / ``a,ctrl-@`` -> bytes (Docker's term.ToBytes)."""
    if not spec:
        return DEFAULT_DETACH_KEYS
    out = bytearray()
    for key in spec.split(","):
        k = key.strip().lower()
        if len(k) == 1:
            out.append(ord(k))
        elif k.startswith("ctrl-") and len(k) == 6:
            c = k[5]
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[c])
            else:
                raise ValueError(f"Unknown character: '{key}'")
        else:
            raise ValueError(f"Unknown character: '{key}'")
    return bytes(out)


class DetachScanner:
    """Stdin bytes pass through; a detach sequence split anywhere is spotted.

    ``keep_keys``: whether the detach sequence itself is forwarded (the CLI sends
    it to the daemon, which acts on it; the daemon forwards nothing of it).
    """

    def __init__(self, keys: bytes, keep_keys: bool = False) -> None:
        self.keys = keys
        self.keep_keys = keep_keys
        self._held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """-> (bytes to forward now, detach sequence completed)."""
        if not self.keys:
            return data, False
        buf = self._held + data
        idx = buf.find(self.keys)
        if idx >= 0:
            self._held = b""
            return buf[:idx + (len(self.keys) if self.keep_keys else 0)], True
        # hold back the longest suffix that could start the sequence
        keep = 0
        for n in range(min(len(self.keys) - 1, len(buf)), 0, -1):
            if self.keys.startswith(buf[-n:]):
                keep = n
                break
        self._held = buf[len(buf) - keep:] if keep else b""
        return buf[: len(buf) - keep], False

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held
