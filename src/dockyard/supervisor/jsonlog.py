"""Container logs in Docker's json-file format, with rotation on by default.

Each line a container writes becomes ``{"log": "...\\n", "stream": "stdout",
"time": "<RFC3339Nano>"}``. When the current file passes ``max_size`` it is
rotated (``x-json.log`` -> ``x-json.log.1`` -> ...), keeping ``max_file`` files
in all, so a chatty container can never fill the disk. The writer lives in the
supervisor; readers (the daemon's logs endpoint) read the files directly.
"""

from __future__ import annotations

import json
import os
import time
from json.encoder import encode_basestring_ascii as _quote
from dataclasses import dataclass
from typing import Iterator

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_FILE = 3
# Docker splits lines longer than this into partial messages.
MAX_LINE = 16 * 1024


def rfc3339nano(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + "Z"
    return base + "Z"


def parse_rfc3339nano(s: str) -> int:
    """Inverse of :func:`rfc3339nano` (UTC 'Z' or numeric offsets), in nanoseconds."""
    import calendar

    s = s.strip()
    offset = 0
    if s.endswith("Z"):
        s = s[:-1]
    elif len(s) > 6 and s[-6] in "+-" and s[-3] == ":":
        sign = 1 if s[-6] == "+" else -1
        offset = sign * (int(s[-5:-3]) * 3600 + int(s[-2:]) * 60)
        s = s[:-6]
    frac_ns = 0
    if "." in s:
        s, frac = s.split(".", 1)
        frac_ns = int((frac + "000000000")[:9])
    secs = calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%S")) - offset
    return secs * 1_000_000_000 + frac_ns


def parse_size(value: str | int) -> int:
    """Docker's size strings for log options: ``10m``, ``1g``, ``512k``, ``100``."""
    if isinstance(value, int):
        return value
    v = value.strip().lower().rstrip("b")
    mult = 1
    for suffix, m in (("k", 1024), ("m", 1024**2), ("g", 1024**3)):
        if v.endswith(suffix):
            v, mult = v[:-1], m
            break
    try:
        n = int(float(v) * mult)
    except ValueError:
        raise ValueError(f"invalid size: '{value}'") from None
    if n <= 0:
        raise ValueError(f"invalid size: '{value}'")
    return n


def split_lines(buf: bytes, final: bool) -> tuple[list[bytes], bytes]:
    """``buf`` cut into what become entries: each line with its newline, a line
    longer than MAX_LINE in MAX_LINE pieces (Docker's partial messages); and what
    is left, an unterminated line shorter than MAX_LINE (``final``: the stream
    ended, so it is an entry too). The same input always gives the same cut."""
    parts = buf.split(b"\n")
    rest = parts.pop()
    if len(rest) < MAX_LINE and (not parts or max(map(len, parts)) < MAX_LINE):
        pieces = [x + b"\n" for x in parts]   # no line to cut: the common case, in C
        if final and rest:
            pieces.append(rest)
            rest = b""
        return pieces, rest
    pieces = []
    start, end = 0, len(buf)
    while start < end:
        nl = buf.find(b"\n", start, start + MAX_LINE)
        if nl < 0:
            if end - start < MAX_LINE:
                break
            pieces.append(buf[start:start + MAX_LINE])
            start += MAX_LINE
        else:
            pieces.append(buf[start:nl + 1])
            start = nl + 1
    rest = buf[start:]
    if final and rest:
        pieces.append(rest)
        rest = b""
    return pieces, rest


def _entries(stream: str, pieces: list[bytes], now_ns: int) -> list[bytes]:
    """One json-file line per piece, all with the same time (one read's lines): the
    bytes json.dumps gives for {"log", "stream", "time"}, made with the C string quoter
    and the part after the text formatted once."""
    tail = ',"stream":"%s","time":"%s"}\n' % (stream, rfc3339nano(now_ns))
    return [('{"log":' + _quote(p.decode("utf-8", "replace")) + tail).encode() for p in pieces]


def _write_all(fd: int, data: memoryview) -> int:
    done = 0
    while done < len(data):
        done += os.write(fd, data[done:])
    return done


class JSONLogWriter:
    """Appends log entries to ``path``, rotating by size."""

    def __init__(self, path: str, max_size: int = DEFAULT_MAX_SIZE,
                 max_file: int = DEFAULT_MAX_FILE) -> None:
        self.path = path
        self.max_size = max_size
        self.max_file = max(1, max_file)
        # owner-only: containers' output may hold secrets (the daemon reads it, as root)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        st = os.fstat(self._fd)
        self._size, self._ino = st.st_size, st.st_ino
        self._partial: dict[str, bytes] = {}

    def write(self, stream: str, data: bytes, now_ns: int | None = None) -> None:
        """Record bytes a container wrote; complete lines become entries at once."""
        pieces, rest = split_lines(self._partial.pop(stream, b"") + data, final=False)
        if rest:
            self._partial[stream] = rest
        if pieces:
            self.write_pieces(stream, pieces, now_ns)

    def flush_partial(self) -> None:
        """Write any unterminated line (the container closed its stream)."""
        now_ns = time.time_ns()
        entries = [self._entry(s, b, now_ns) for s, b in self._partial.items() if b]
        self._partial.clear()
        if entries:
            self._append_entries(entries)

    def write_pieces(self, stream: str, pieces: list[bytes], now_ns: int | None = None,
                     before_write=None) -> None:
        """Append one entry per piece (``split_lines``' output). ``before_write(ino,
        size, length, first, count)`` is called right before each write(2): the
        file's inode and size then, the bytes about to be written and which pieces
        they hold (an output journal records it: a supervisor killed mid-write is
        followed by one that knows what reached the file)."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        self._append_entries(_entries(stream, pieces, now_ns),
                             before_write)

    @staticmethod
    def _entry(stream: str, piece: bytes, now_ns: int) -> bytes:
        return _entries(stream, [piece], now_ns)[0]

    def _append_entries(self, entries: list[bytes], before_write=None) -> None:
        """Write in as few writes as possible, rotating between entries so that no file
        grows past max_size by more than one entry (one read can bring many lines)."""
        total = sum(map(len, entries))
        if not self._size or self._size + total <= self.max_size:
            if self._size + total > self.max_size and len(entries) > 1:
                pass   # a fresh file that cannot take them all: entry by entry below
            else:
                self._append(b"".join(entries), 0, len(entries), before_write)
                return
        batch: list[bytes] = []
        first = 0
        size = self._size
        for i, e in enumerate(entries):
            if size and size + len(e) > self.max_size:
                if batch:
                    self._append(b"".join(batch), first, len(batch), before_write)
                    batch = []
                self._rotate()
                size = self._size
            if not batch:
                first = i
            batch.append(e)
            size += len(e)
        if batch:
            self._append(b"".join(batch), first, len(batch), before_write)

    def _append(self, data: bytes, first: int = 0, count: int = 0, before_write=None) -> None:
        if self._size and self._size + len(data) > self.max_size:
            self._rotate()
        if before_write is not None:
            before_write(self._ino, self._size, len(data), first, count)
        n = os.write(self._fd, data)
        self._size += n
        if n < len(data):   # a short write: what is missing is written (or fails) now
            self._size += _write_all(self._fd, memoryview(data)[n:])

    def _rotate(self) -> None:
        """A new file under ``path`` (a new inode, so that a reader or an output journal
        holding the old one sees the change), the old ones shifted or dropped."""
        os.close(self._fd)
        if self.max_file == 1:
            tmp = self.path + ".new"
            fd = os.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                         0o600)
            os.replace(tmp, self.path)   # made before the old one goes: never its inode
            self._fd = fd
        else:
            for i in range(self.max_file - 1, 0, -1):
                src = self.path if i == 1 else f"{self.path}.{i - 1}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{i}")
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o600)
        st = os.fstat(self._fd)
        self._size, self._ino = st.st_size, st.st_ino

    def resync(self) -> None:
        """The file was changed under us (a torn tail cut off): take its size again."""
        self._size = os.fstat(self._fd).st_size

    def close(self) -> None:
        try:
            self.flush_partial()
        finally:
            os.close(self._fd)


@dataclass(frozen=True)
class LogEntry:
    stream: str
    data: bytes
    time_ns: int
    time: str


def log_files(path: str) -> list[str]:
    """The files of one log, oldest first. A rotation cut short (its supervisor
    killed between two renames) leaves a gap in the numbers: what is beyond it
    still counts."""
    d, base = os.path.split(path)
    prefix = base + "."
    rotated = []
    try:
        names = os.listdir(d or ".")
    except FileNotFoundError:
        return []
    for name in names:
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            rotated.append((int(name[len(prefix):]), os.path.join(d, name)))
    rotated.sort(reverse=True)
    return [p for _, p in rotated] + ([path] if os.path.exists(path) else [])


def _parse_line(line: bytes) -> LogEntry | None:
    try:
        obj = json.loads(line)
        t = obj["time"]
        return LogEntry(obj.get("stream", "stdout"), obj["log"].encode(), parse_rfc3339nano(t), t)
    except (ValueError, KeyError, TypeError):
        return None  # a torn last line while the writer is mid-write


def read_entries(path: str, since_ns: int = 0, until_ns: int = 0,
                 tail: int = -1) -> list[LogEntry]:
    """All entries (or the last ``tail``) within [since, until]."""
    entries: list[LogEntry] = []
    for f in log_files(path):
        with open(f, "rb") as fh:
            for line in fh:
                e = _parse_line(line)
                if e is None:
                    continue
                if since_ns and e.time_ns < since_ns:
                    continue
                if until_ns and e.time_ns > until_ns:
                    continue
                entries.append(e)
    if tail >= 0:
        entries = entries[-tail:] if tail else []
    return entries


class LogFollower:
    """Yields entries appended to the current file after construction, across rotations."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh = None
        self._ino = None
        self._buf = b""
        self._open(seek_end=True)

    def _open(self, seek_end: bool) -> None:
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return
        if seek_end:
            fh.seek(0, os.SEEK_END)
        self._fh = fh
        self._ino = os.fstat(fh.fileno()).st_ino

    def poll(self) -> Iterator[LogEntry]:
        if self._fh is None:
            self._open(seek_end=False)
            if self._fh is None:
                return
        while True:
            chunk = self._fh.read()
            if chunk:
                self._buf += chunk
                *lines, self._buf = self._buf.split(b"\n")
                for line in lines:
                    e = _parse_line(line)
                    if e is not None:
                        yield e
                continue
            # Rotated? Then the current file is a new inode: finish the old one, switch.
            try:
                ino = os.stat(self.path).st_ino
            except FileNotFoundError:
                return
            if ino == self._ino:
                return
            self._fh.close()
            self._buf = b""
            self._open(seek_end=False)

    def close(self) -> None:
        if self._fh:
            self._fh.close()
