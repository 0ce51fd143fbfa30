"""Container logs in Docker's json-file format, with rotation on by default.

Each line a container writes becomes ``{"log": "...\\n", "stream": "stdout",
"time": "<RFC3339Nano>"}``. When the current file passes ``max_size`` it is
rotated (``x-json.log`` -> ``x-json.log.1`` -> ...), keeping ``max_file`` files
in all, so a chatty container can never fill the disk. The writer lives in the
supervisor; readers (the daemon's logs endpoint) read the files directly.
"""

from __future__ import annotations

import functools
import json
import os
import re
import struct
import time
from json.decoder import scanstring as _scanstring
from json.encoder import encode_basestring_ascii as _quote
from zlib import error as zlib_error
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


# RFC 3339 as our writer (and Go's RFC3339Nano) spells it; anything else takes the slow path
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
                      r"(?:(Z)|([+-])(\d\d):(\d\d))\Z", re.ASCII)


@functools.lru_cache(maxsize=256)
def _month_start(year: int, month: int) -> tuple[int, int]:
    """Seconds from the epoch to the month's first day (UTC), and its number of days."""
    import calendar

    return (calendar.timegm((year, month, 1, 0, 0, 0)), calendar.monthrange(year, month)[1])


@functools.lru_cache(maxsize=1024)
def _minute(t: str) -> int:
    """``YYYY-MM-DDTHH:MM`` (UTC, valid) in seconds from the epoch."""
    base, _ = _month_start(int(t[:4]), int(t[5:7]))
    return base + (int(t[8:10]) - 1) * 86400 + int(t[11:13]) * 3600 + int(t[14:16]) * 60


def parse_rfc3339nano(s: str) -> int:
    """Inverse of :func:`rfc3339nano` (UTC 'Z' or numeric offsets), in nanoseconds.

    The usual shape is parsed by hand; anything else (surrounding blanks, one-digit
    fields, a leap second, more than nine digits of fraction...) the way it always
    was, with time.strptime, which also gives the same errors."""
    m = _RFC3339.match(s)
    if m is not None:
        y, mo, d, h, mi, sec, frac, z, sign, oh, om = m.groups()
        y, mo, d, h, mi, sec = int(y), int(mo), int(d), int(h), int(mi), int(sec)
        if y >= 1 and 1 <= mo <= 12 and d >= 1 and h < 24 and mi < 60 and sec < 60:
            base, days = _month_start(y, mo)
            if d <= days:
                secs = base + (d - 1) * 86400 + h * 3600 + mi * 60 + sec
                if z is None:
                    off = int(oh) * 3600 + int(om) * 60
                    secs -= off if sign == "+" else -off
                return secs * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)
    return _parse_rfc3339nano_slow(s)


def _parse_rfc3339nano_slow(s: str) -> int:
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


@functools.lru_cache(maxsize=1024)   # a read's entries share their time
def rfc3339nano_fixed(s: str) -> str:
    """A stored time as ``docker logs -t`` shows it (Go's RFC3339NanoFixed): nine digits
    of fraction, the zone as it was written. Only the digits are padded: no parse."""
    m = _RFC3339.match(s)
    if m is None:
        return s
    zone = s[m.start(8) if m.group(8) else m.start(9):]
    return s[:m.end(6)] + "." + (m.group(7) or "").ljust(9, "0") + zone


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


def attrs_field(attrs: dict | None) -> str:
    """``"attrs":{...},`` as dockerd's json-file writes it between the stream and the
    time (Go's map: keys sorted; <, > and & escaped), or "" for no attrs."""
    if not attrs:
        return ""
    text = json.dumps({str(k): str(v) for k, v in attrs.items()}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    for c, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                   ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(c, esc)
    return '"attrs":' + text + ","


def _entries(stream: str, pieces: list[bytes], now_ns: int, attrs: str = "") -> list[bytes]:
    """One json-file line per piece, all with the same time (one read's lines): the
    bytes json.dumps gives for {"log", "stream", ["attrs",] "time"}, made with the C
    string quoter and the part after the text formatted once (``attrs``: attrs_field's)."""
    tail = ',"stream":"%s",%s"time":"%s"}\n' % (stream, attrs, rfc3339nano(now_ns))
    return [('{"log":' + _quote(p.decode("utf-8", "replace")) + tail).encode() for p in pieces]


def _write_all(fd: int, data: memoryview) -> int:
    done = 0
    while done < len(data):
        done += os.write(fd, data[done:])
    return done


class JSONLogWriter:
    """Appends log entries to ``path``, rotating by size."""

    def __init__(self, path: str, max_size: int = DEFAULT_MAX_SIZE,
                 max_file: int = DEFAULT_MAX_FILE, attrs: dict | None = None,
                 compress: bool = False) -> None:
        self.path = path
        self.max_size = max_size
        self.max_file = max(1, max_file)
        self._attrs = attrs_field(attrs)
        self.compress = compress and self.max_file > 1
        self._compressing = None   # the thread gzipping the last rotated file
        self._last_ns = 0          # the time of the last entries written (at most)
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
        now_ns = self._last_ns = time.time_ns()
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
        self._last_ns = now_ns
        self._append_entries(_entries(stream, pieces, now_ns, self._attrs),
                             before_write)

    def set_attrs(self, attrs: dict | None) -> None:
        """The attrs every entry from now on carries (fixed for a task: set at its start)."""
        self._attrs = attrs_field(attrs)

    def _entry(self, stream: str, piece: bytes, now_ns: int) -> bytes:
        return _entries(stream, [piece], now_ns, self._attrs)[0]

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
            self.wait_compressed()   # the last rotation's .1 is .1.gz by now
            for i in range(self.max_file - 1, 0, -1):
                dst = f"{self.path}.{i}"
                if i == self.max_file - 1:   # the oldest goes, compressed or not
                    for name in (dst, dst + ".gz"):
                        try:
                            os.unlink(name)
                        except FileNotFoundError:
                            pass
                src = self.path if i == 1 else f"{self.path}.{i - 1}"
                for ext in ("", ".gz") if i > 1 else ("",):
                    if os.path.exists(src + ext):
                        os.replace(src + ext, dst + ext)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o600)
            if self.compress:
                import threading

                # off the supervisor's loop: gzipping a 10 MB file takes a few hundred ms
                self._compressing = threading.Thread(
                    target=compress_file, args=(f"{self.path}.1", self._last_ns),
                    name="log-compress")
                self._compressing.start()
        st = os.fstat(self._fd)
        self._size, self._ino = st.st_size, st.st_ino

    def wait_compressed(self) -> None:
        if self._compressing is not None:
            self._compressing.join()
            self._compressing = None

    def resync(self) -> None:
        """The file was changed under us (a torn tail cut off): take its size again."""
        self._size = os.fstat(self._fd).st_size

    def close(self) -> None:
        try:
            self.flush_partial()
        finally:
            os.close(self._fd)


def _gzip_header(last_ns: int, ident: tuple[int, int]) -> bytes:
    """A gzip member's header as dockerd's compressFile writes it: the FEXTRA field holds
    ``{"lastTime":"<RFC3339Nano>"}``, the time of the file's last entry (a reader with
    --since skips older files without reading them). Ours adds a comment (FCOMMENT,
    which gzip readers skip): the inode and mtime the text had, so that a follower
    still knows the file it was reading once it is gzipped (inode numbers are reused:
    with the mtime in nanoseconds, two files never match by chance)."""
    extra = json.dumps({"lastTime": rfc3339nano(last_ns)}, separators=(",", ":")).encode()
    return (b"\x1f\x8b\x08\x14" + b"\x00\x00\x00\x00" + b"\x00\xff"
            + struct.pack("<H", len(extra)) + extra + b"ino %d mtime %d\x00" % ident)


def gzip_identity(fd: int) -> tuple[int, int] | None:
    """(inode, mtime ns) a gzipped log file's text had (our header's comment), if it says."""
    head = os.pread(fd, 512, 0)
    if len(head) < 12 or head[:3] != b"\x1f\x8b\x08" or not head[3] & 0x10:
        return None
    i = 10
    if head[3] & 0x04:
        i += 2 + (head[10] | head[11] << 8)
    if head[3] & 0x08:   # a name first
        i = head.find(b"\x00", i) + 1
        if i == 0:
            return None
    end = head.find(b"\x00", i)
    m = re.fullmatch(rb"ino (\d+) mtime (\d+)", head[i:end]) if end > 0 else None
    return (int(m.group(1)), int(m.group(2))) if m else None


def _gzip_last_ns(fd: int) -> int:
    """The lastTime in a gzipped log file's header (dockerd's and ours), else the
    greatest time (the file is read)."""
    head = os.pread(fd, 512, 0)
    try:
        if len(head) >= 12 and head[:3] == b"\x1f\x8b\x08" and head[3] & 0x04:
            xlen = head[10] | head[11] << 8
            return parse_rfc3339nano(json.loads(head[12:12 + xlen])["lastTime"])
    except (ValueError, KeyError, TypeError):
        pass
    return 1 << 63


def _identity(name: str) -> tuple[int, int] | None:
    """A log file's (inode, mtime ns); for a gzipped one, those its text had."""
    if not name.endswith(".gz"):
        st = os.stat(name)
        return (st.st_ino, st.st_mtime_ns)
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return gzip_identity(fd)
    finally:
        os.close(fd)


def _link_unnamed(fd: int, name: str) -> None:
    """Give an O_TMPFILE file its name (linkat through /proc, which os.link cannot)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD, AT_SYMLINK_FOLLOW = -100, 0x400
    if libc.linkat(AT_FDCWD, f"/proc/self/fd/{fd}".encode(), AT_FDCWD,
                   os.fsencode(name), AT_SYMLINK_FOLLOW) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), name)


def compress_file(name: str, last_ns: int) -> None:
    """``name`` gzipped into ``name.gz`` (made whole before it appears: an unnamed file
    linked at the end), then ``name`` removed. A failure leaves ``name`` as it was
    (readers take either)."""
    import zlib

    d = os.path.dirname(name) or "."
    try:
        src = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    out = -1
    try:
        out = os.open(d, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        z = zlib.compressobj(6, zlib.DEFLATED, -15)
        crc, size = 0, 0
        st = os.fstat(src)
        buf = [_gzip_header(last_ns, (st.st_ino, st.st_mtime_ns))]
        while True:
            chunk = os.read(src, 1 << 20)
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
            buf.append(z.compress(chunk))
            _write_all(out, memoryview(b"".join(buf)))
            buf = []
        buf.append(z.flush() + struct.pack("<II", crc, size & 0xFFFFFFFF))
        _write_all(out, memoryview(b"".join(buf)))
        _link_unnamed(out, name + ".gz")
        os.unlink(name)
    except OSError:
        pass   # a removed container, a full disk: the file stays as it is
    finally:
        os.close(src)
        if out >= 0:
            os.close(out)


class LogEntry:
    """One entry. ``time`` is the stored string; ``time_ns`` is parsed from it when first
    asked for (only ``--since``/``--until`` and followers need it): given as None only
    for a time in our writer's shape (``_OUR_TIME``)."""

    __slots__ = ("stream", "data", "time", "attrs", "_ns")

    def __init__(self, stream: str, data: bytes, time_ns: int | None = None, time: str = "",
                 attrs: dict | None = None) -> None:
        self.stream, self.data, self.time, self.attrs, self._ns = stream, data, time, attrs, time_ns

    @property
    def time_ns(self) -> int:
        if self._ns is None:   # left unparsed only in our writer's shape (_OUR_TIME)
            t = self.time
            frac = t[20:-1]
            self._ns = ((_minute(t[:16]) + int(t[17:19])) * 1_000_000_000
                        + (int(frac.ljust(9, "0")) if frac else 0))
        return self._ns

    def _key(self) -> tuple:
        return (self.stream, self.data, self.time, self.attrs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LogEntry) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.stream, self.data, self.time))

    def __repr__(self) -> str:
        return f"LogEntry({self.stream!r}, {self.data!r}, time={self.time!r})"


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
        if name.startswith(prefix):
            n = name[len(prefix):]
            gz = n.endswith(".gz")
            if gz:
                n = n[:-3]
            if n.isdigit():   # the plain one first: it is being gzipped, or was cut short
                rotated.append((int(n), gz, os.path.join(d, name)))
    rotated.sort(key=lambda r: (-r[0], r[1]))
    out, last = [], None
    for n, _, p in rotated:
        if n != last:
            out.append(p)
            last = n
    return out + ([path] if os.path.exists(path) else [])


# Our writer's lines: {"log":"<text>","stream":"stdout|stderr","time":"<RFC3339Nano, Z>"}
_MID = '","stream":"'
_TIME_KEY = '","time":"'
# a time in our writer's shape that surely parses (days past the 28th are checked by parsing)
_OUR_TIME = re.compile(r"(?!0000)\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])"
                       r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?Z\Z", re.ASCII)


_ATTRS_KEY = '","attrs":{'
_TIME_AFTER_ATTRS = '},"time":"'


@functools.lru_cache(maxsize=64)   # a file's lines share their attrs: parsed once
def _attrs(text: str) -> dict | None:
    """``{...}`` of an attrs field: a dict of strings, else None (the general path)."""
    try:
        d = json.loads(text + "}")
    except ValueError:
        return None
    if isinstance(d, dict) and all(isinstance(v, str) for v in d.values()):
        return d
    return None


def _parse_line(line: bytes) -> LogEntry | None:
    """One line of a log file (its newline cut off or not) as an entry; None for what
    is no entry: a torn last line while the writer is mid-write, a blank line.

    Our writer's exact shape (and dockerd's: the same keys in the same order, attrs or
    not) is taken apart by hand, only the text going through json's C string scanner,
    the attrs parsed once per distinct text, and the time left as written (parsed when
    needed); anything else (another key order, an odd time) goes through json.loads,
    its time parsed at once, as it always did."""
    if line.startswith(b'{"log":"'):
        try:
            s = line.decode()
            end = len(s) - (3 if s.endswith('"}\n') else 2 if s.endswith('"}') else len(s))
            i = s.rfind(_MID, 0, end)
            attrs = None
            if i > 0 and s.startswith(_TIME_KEY, i + 18):
                t = s[i + 28:end]
            elif i > 0 and s.startswith(_ATTRS_KEY, i + 18):   # with attrs (labels, env, tag)
                k = s.rfind(_TIME_AFTER_ATTRS, i + 28, end)
                attrs = _attrs(s[i + 28:k]) if k > 0 else None
                if attrs is not None:
                    t = s[k + 10:end]
                else:
                    i = -1   # not our shape: the general path
            else:
                i = -1
            if i > 0:
                stream = s[i + 12:i + 18]
                if stream == "stdout" or stream == "stderr":
                    text, j = _scanstring(s, 8)
                    if j == i + 1:
                        if _OUR_TIME.match(t):
                            ns = None   # surely parses: when needed
                        elif t.isprintable() and '"' not in t and "\\" not in t:
                            ns = parse_rfc3339nano(t)   # may not parse: then no entry, as ever
                        else:
                            raise ValueError(t)
                        return LogEntry(stream, text.encode(), ns, t, attrs or None)
        except ValueError:   # not UTF-8, a bad escape: the general path decides
            pass
    try:
        obj = json.loads(line)
        t = obj["time"]
        attrs = obj.get("attrs")
        return LogEntry(obj.get("stream", "stdout"), obj["log"].encode(), parse_rfc3339nano(t), t,
                        attrs if isinstance(attrs, dict) and attrs else None)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a torn last line while the writer is mid-write; not an entry's shape


# Reads are made in blocks of this size: a batch of entries is what one block holds.
BLOCK = 128 * 1024
TAIL_BLOCK = 64 * 1024
# Bytes read from log files by this process (tests check that --tail reads only the end).
bytes_read = 0


def _pread(fd: int, n: int, off: int) -> bytes:
    global bytes_read
    b = os.pread(fd, n, off)
    bytes_read += len(b)
    return b


class _File:
    __slots__ = ("fd", "ino", "end")

    def __init__(self, fd: int, ino: int, end: int | None) -> None:
        self.fd, self.ino, self.end = fd, ino, end


def _open_newest_first(path: str, upto: tuple[int, int] | None,
                       since_ns: int = 0) -> Iterator[_File]:
    """The log's files, newest first, each opened when asked for. A file met twice (the
    log rotated while we read: the names shifted) is skipped. ``upto`` (a follower's
    (inode, offset)): files newer than that inode are left out, and that one is read up
    to the offset; no such inode (the follower has no file yet, or it was rotated away):
    the current file is left out, the follower reads it from its start."""
    names = log_files(path)[::-1]
    stop_ino = None
    if upto is not None:
        inos = []   # the newest file with that inode is the follower's (it holds it open)
        for name in names:
            try:
                inos.append((_identity(name) or (None,))[0])
            except FileNotFoundError:
                inos.append(None)
        if upto[0] in inos:
            k = inos.index(upto[0])
            names, stop_ino = names[k:], upto[0]
        elif names and names[0] == path:
            names = names[1:]
    seen: set[tuple] = set()
    for name in names:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if name.endswith(".gz") or name == path:
                continue   # rotated away meanwhile
            name += ".gz"   # gzipped meanwhile
            try:
                fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
        ident = None
        if name.endswith(".gz"):
            try:
                ident = gzip_identity(fd)
                if since_ns and _gzip_last_ns(fd) < since_ns:
                    os.close(fd)   # all older than --since: not unpacked (as dockerd)
                    continue
            except OSError:
                pass
            try:
                fd = _gunzipped(fd, os.path.dirname(name))
            except (OSError, EOFError, ValueError, zlib_error):   # not gzip, cut short
                continue
        if ident is None:
            st = os.fstat(fd)
            ident = (st.st_ino, st.st_mtime_ns)
        if ident in seen:
            os.close(fd)
            continue
        seen.add(ident)
        stop = ident[0] == stop_ino
        if stop:
            stop_ino = None   # only the newest file with it
        yield _File(fd, ident[0], upto[1] if stop else None)   # the caller closes it


def _gunzipped(fd: int, d: str) -> int:
    """A gzipped log file's text in an unnamed file (beside it, else in /tmp), read like
    any other; ``fd`` is closed."""
    import gzip

    out = -1
    try:
        for where in (d or ".", "/tmp"):
            try:
                out = os.open(where, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
                break
            except OSError:
                continue
        if out < 0:
            raise OSError("no room to unpack a compressed log file")
        with gzip.GzipFile(fileobj=os.fdopen(fd, "rb", closefd=False)) as z:
            while True:
                chunk = z.read(1 << 20)
                if not chunk:
                    break
                _write_all(out, memoryview(chunk))
        os.lseek(out, 0, os.SEEK_SET)
    except BaseException:
        if out >= 0:
            os.close(out)
        raise
    finally:
        os.close(fd)
    return out


def _open_rotated(name: str) -> tuple[int, bool] | None:
    """A rotated log file opened (fd, gzipped?), its .gz if it was gzipped meanwhile;
    None if it is gone."""
    for n in (name,) if name.endswith(".gz") else (name, name + ".gz"):
        try:
            return os.open(n, os.O_RDONLY | os.O_CLOEXEC), n.endswith(".gz")
        except FileNotFoundError:
            continue
    return None


def _wanted(e: LogEntry | None, since_ns: int, until_ns: int) -> bool:
    if e is None:
        return False
    if since_ns or until_ns:
        try:
            ns = e.time_ns
        except ValueError:
            return False
        if since_ns and ns < since_ns:
            return False
        if until_ns and ns > until_ns:
            return False
    return True


def _file_end(f: _File) -> int:
    if f.end is None:
        f.end = os.fstat(f.fd).st_size
    return f.end


def _tail_start(files: list[_File], more: Iterator[_File], n: int, since_ns: int,
                until_ns: int) -> tuple[int, int]:
    """Where the last ``n`` wanted entries begin: (index in ``files``, offset), read
    from the end backwards a block at a time, opening older files from ``more`` (into
    ``files``) only as far as needed. Each file's end is fixed here (``f.end``): what
    is appended later is not part of this read."""
    count = 0
    k = -1
    for f in more:
        files.append(f)
        k += 1
        pos = _file_end(f)
        carry = b""
        while pos > 0:
            start = max(0, pos - TAIL_BLOCK)
            buf = _pread(f.fd, pos - start, start)
            if len(buf) < pos - start:   # cut short under us: no entries beyond
                buf = buf + b"\n" * (pos - start - len(buf))
            buf += carry
            pos = start
            if start > 0:
                nl = buf.find(b"\n")
                if nl < 0:
                    carry = buf   # a line longer than a block
                    continue
                carry, body, body_off = buf[:nl + 1], buf[nl + 1:], start + nl + 1
            else:
                carry, body, body_off = b"", buf, 0
            seg_end = body_off + len(body)
            for seg in reversed(body.split(b"\n")):
                seg_start = seg_end - len(seg)
                seg_end = seg_start - 1
                if _wanted(_parse_line(seg), since_ns, until_ns):
                    count += 1
                    if count == n:
                        return k, seg_start
    return len(files) - 1, 0


def _forward(f: _File, off: int, since_ns: int, until_ns: int) -> Iterator[list[LogEntry]]:
    """The wanted entries of ``f`` from ``off`` to its end (or EOF), a block's at a time."""
    end = f.end
    carry = b""
    while end is None or off < end:
        n = BLOCK if end is None else min(BLOCK, end - off)
        buf = _pread(f.fd, n, off)
        if not buf:
            break
        off += len(buf)
        if carry:
            buf = carry + buf
        nl = buf.rfind(b"\n")
        if nl < 0:
            carry = buf
            continue
        carry = buf[nl + 1:]
        batch = [e for e in map(_parse_line, buf[:nl].split(b"\n"))
                 if e is not None and (not (since_ns or until_ns) or _wanted(e, since_ns, until_ns))]
        if batch:
            yield batch
    if carry:   # an unterminated last line: an entry if it parses (as `for line in file` had it)
        e = _parse_line(carry)
        if _wanted(e, since_ns, until_ns):
            yield [e]


def iter_entry_batches(path: str, since_ns: int = 0, until_ns: int = 0, tail: int = -1,
                       upto: tuple[int, int] | None = None) -> Iterator[list[LogEntry]]:
    """The entries (or the last ``tail``) within [since, until], oldest first, in
    batches of what one read of the files holds: memory stays bounded whatever the
    log's size. ``--tail`` reads the files backwards from the end, only as far as it
    needs. ``upto``: see :func:`_open_newest_first` (a follower takes over there)."""
    if tail == 0:
        return
    more = _open_newest_first(path, upto, since_ns)
    files: list[_File] = []   # newest first
    try:
        if tail > 0:
            k, off = _tail_start(files, more, tail, since_ns, until_ns)
        else:
            files.extend(more)
            k, off = len(files) - 1, 0
        for i in range(k, -1, -1):
            yield from _forward(files[i], off if i == k else 0, since_ns, until_ns)
    finally:
        more.close()
        for f in files:
            os.close(f.fd)


def read_entries(path: str, since_ns: int = 0, until_ns: int = 0,
                 tail: int = -1) -> list[LogEntry]:
    """All entries (or the last ``tail``) within [since, until], in one list (for
    small logs and tests: the daemon streams :func:`iter_entry_batches`)."""
    return [e for batch in iter_entry_batches(path, since_ns, until_ns, tail) for e in batch]


class LogFollower:
    """Yields entries appended to the current file after construction, across rotations:
    when the file it reads was rotated, it finishes it, then reads every file rotated
    after it (two rotations between two polls leave one in the middle), oldest first,
    then the current one."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh = None
        self._ino = None
        self._buf = b""
        self._queue: list = []   # files rotated after ours, to read before the current one
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

    def _switch(self) -> None:
        """Ours was rotated: queue the files newer than it (all the rotated ones if it was
        dropped), oldest first, then the current one."""
        st = os.fstat(self._fh.fileno())   # held open: its inode is not reused meanwhile
        old = (st.st_ino, st.st_mtime_ns)   # complete: rotated files are not written
        names = log_files(self.path)[::-1]   # newest first
        self._fh.close()
        self._fh, self._buf = None, b""
        if not names or names[0] != self.path:
            return
        opened = []   # (fd, gzipped), newest first, up to ours
        for name in names[1:]:
            got = _open_rotated(name)
            if got is None:
                continue
            fd, gz = got
            try:
                if gz:
                    ident = gzip_identity(fd)
                else:
                    st = os.fstat(fd)
                    ident = (st.st_ino, st.st_mtime_ns)
            except OSError:
                ident = None
            if ident == old:
                os.close(fd)
                break
            opened.append((fd, gz))
        files = []
        for fd, gz in reversed(opened):
            if gz:
                try:
                    fd = _gunzipped(fd, os.path.dirname(self.path))
                except (OSError, EOFError, ValueError, zlib_error):
                    continue
            files.append(os.fdopen(fd, "rb"))
        self._open(seek_end=False)
        if self._fh is None:
            for fh in files:
                fh.close()
            return
        self._queue = files + [self._fh]
        self._fh = self._queue.pop(0)

    def position(self) -> tuple[int, int]:
        """(inode, offset) this follower starts from; (0, 0) if it has no file yet
        (it reads the current file from its start): ``iter_entry_batches``' ``upto``."""
        if self._fh is None:
            return (0, 0)
        return (self._ino, self._fh.tell())

    def poll_batch(self, max_bytes: int = BLOCK) -> tuple[list[LogEntry], bool]:
        """Entries from at most ``max_bytes`` more of the file, and whether there may be
        more now (a backlog is taken in bounded steps)."""
        if self._fh is None:
            self._open(seek_end=False)
            if self._fh is None:
                return [], False
        while True:
            chunk = self._fh.read(max_bytes)
            if chunk:
                *lines, self._buf = (self._buf + chunk).split(b"\n")
                return [e for e in map(_parse_line, lines) if e is not None], True
            if self._queue:   # a rotated file read to its end: the next one
                self._fh.close()
                self._fh, self._buf = self._queue.pop(0), b""
                continue
            # Rotated? Then the current file is a new inode: finish the old one, switch.
            try:
                ino = os.stat(self.path).st_ino
            except FileNotFoundError:
                return [], False
            if ino == self._ino:
                return [], False
            self._switch()
            if self._fh is None:
                return [], False

    def poll(self) -> Iterator[LogEntry]:
        while True:
            batch, more = self.poll_batch()
            yield from batch
            if not more:
                return

    def close(self) -> None:
        for fh in [self._fh] + self._queue:
            if fh:
                fh.close()
        self._queue = []
