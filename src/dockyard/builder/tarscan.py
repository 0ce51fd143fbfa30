"""A small, strict, sans-IO tar reader for build contexts.

Fed the (decompressed) tar stream chunk by chunk, :class:`Scanner` returns events:
``("file", m)`` then ``("data", memoryview)`` pieces then ``("done", m)`` for a regular
file, ``("entry", m)`` for anything else, ``("end", None)`` at the end blocks. It reads what
the docker CLI (Go's archive/tar), docker-py and Python's tarfile write: ustar with its
``prefix``, PAX extended headers (``path``, ``linkpath``, ``size``, ``uid``, ``gid``,
``mtime``; other keys ignored; global headers skipped) and GNU long names/links (``L``,
``K``), numbers in octal or base-256. Every header's checksum is verified; extended headers
are bounded (1 MiB); a NUL inside a name is refused; header-only types (links,
directories, devices, fifos) carry no data, as in Go's reader. It is several times faster
than ``tarfile`` for many small files (no TarInfo, no per-member file objects) and never
copies a file's data: the caller hashes the memoryviews it is handed.

What the names *mean* (escaping the root, duplicates, devices) is the caller's business
(``context._member``). :meth:`Scanner.finish` tells a clean end from a cut one; a stream
that stops right after a file's data, with no padding and no end blocks (the docker CLI's
tar with a Dockerfile from outside the context) ends cleanly, as Go's reader takes it.
"""

from __future__ import annotations

BLOCK = 512
MAX_META = 1 << 20
_ZERO = bytes(BLOCK)
_HEADER_ONLY = b"1253467"


class TarError(Exception):
    def __init__(self, message: str, first: bool = False) -> None:
        super().__init__(message)
        self.first = first      # the very first header is no tar header: not a tar at all


class Member:
    __slots__ = ("name", "type", "mode", "uid", "gid", "size", "mtime", "linkname",
                 "offset_data")

    def __init__(self, name, type_, mode, uid, gid, size, mtime, linkname, offset_data):
        self.name, self.type, self.mode, self.uid, self.gid = name, type_, mode, uid, gid
        self.size, self.mtime, self.linkname, self.offset_data = size, mtime, linkname, \
            offset_data

    def isreg(self) -> bool:
        return self.type in (b"0", b"\x00", b"7")

    def isdir(self) -> bool:
        return self.type == b"5"

    def issym(self) -> bool:
        return self.type == b"2"

    def islnk(self) -> bool:
        return self.type == b"1"

    def isfifo(self) -> bool:
        return self.type == b"6"

    def ischr(self) -> bool:
        return self.type == b"3"

    def isblk(self) -> bool:
        return self.type == b"4"


def _num(field: bytes, what: str) -> int:
    if field and field[0] & 0x80:
        if field[0] == 0xFF:
            raise TarError(f"invalid tar header: negative {what}")
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    s = field.split(b"\x00", 1)[0].strip(b" ")
    if not s:
        return 0
    try:
        return int(s, 8)
    except ValueError:
        raise TarError(f"invalid tar header: bad {what} {s[:20]!r}") from None


def _str(field: bytes) -> str:
    return field.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _checksum_ok(block: bytes) -> bool:
    want = _num(block[148:156], "checksum")
    unsigned = sum(block) - sum(block[148:156]) + 256
    if want == unsigned:
        return True
    # some old writers summed signed bytes
    signed = unsigned - 256 * sum(1 for b in block if b > 127) \
        + 256 * sum(1 for b in block[148:156] if b > 127)
    return want == signed


def _pax(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos)
        if sp < 0:
            if not data[pos:].strip(b"\x00"):
                break
            raise TarError("invalid PAX header: no length")
        try:
            n = int(data[pos:sp])
        except ValueError:
            raise TarError("invalid PAX header: bad length") from None
        rec = data[sp + 1:pos + n]
        if n <= sp - pos or pos + n > len(data) or not rec.endswith(b"\n") or b"=" not in rec:
            raise TarError("invalid PAX header: bad record")
        k, _, v = rec[:-1].partition(b"=")
        out[k.decode("utf-8", "surrogateescape")] = v.decode("utf-8", "surrogateescape")
        pos += n
    return out


class Scanner:
    def __init__(self) -> None:
        self.pos = 0                 # absolute offset of the next byte
        self._state = "header"       # header, data, pad, meta, end
        self._left = 0
        self._pad_from = 0           # where the current padding started
        self._after_file = False     # the padding follows a regular file's data
        self._partial = b""          # a header split between chunks
        self._meta = bytearray()
        self._meta_type = b""
        self._pax: dict[str, str] = {}
        self._long: dict[bytes, str] = {}
        self._cur: Member | None = None
        self.headers = 0

    def feed(self, data) -> list:
        out: list = []
        mv = memoryview(data)
        n = len(mv)
        i = 0
        base = self.pos
        while i < n:
            st = self._state
            if st == "data":
                k = self._left if self._left < n - i else n - i
                out.append(("data", mv[i:i + k]))
                i += k
                self._left -= k
                if not self._left:
                    out.append(("done", self._cur))
                    self._to_pad(self._cur.size, base + i, True)
                continue
            if st == "pad":
                k = self._left if self._left < n - i else n - i
                i += k
                self._left -= k
                if not self._left:
                    self._state = "header"
                continue
            if st == "meta":
                k = self._left if self._left < n - i else n - i
                self._meta += mv[i:i + k]
                i += k
                self._left -= k
                if not self._left:
                    self._end_meta(base + i)
                continue
            if st == "end":
                i = n
                break
            # a header
            if not self._partial and n - i >= BLOCK:
                block = bytes(mv[i:i + BLOCK])
                i += BLOCK
            else:
                take = min(BLOCK - len(self._partial), n - i)
                self._partial += bytes(mv[i:i + take])
                i += take
                if len(self._partial) < BLOCK:
                    continue
                block, self._partial = self._partial, b""
            self._header(block, base + i, out)
        self.pos = base + n
        return out

    def finish(self) -> None:
        """The stream ended: raise :class:`TarError` unless that is a clean end."""
        st = self._state
        if st == "end":
            return
        if st == "header":
            if self._partial:
                raise TarError("unexpected end of data", first=self.headers == 0)
            if self._pax or self._long:
                raise TarError("unexpected end of data after an extended header")
            return
        if st == "pad" and self._after_file and self.pos == self._pad_from:
            return      # the docker CLI's tar with -f from outside: no padding, no end
        if st == "data":
            raise TarError(f"{self._cur.name!r} is cut short")
        raise TarError("unexpected end of data")

    # -- inside ----------------------------------------------------------------------------
    def _to_pad(self, size: int, at: int, after_file: bool) -> None:
        pad = -size % BLOCK
        self._after_file = after_file
        self._pad_from = at
        if pad:
            self._state, self._left = "pad", pad
        else:
            self._state = "header"

    def _end_meta(self, at: int) -> None:
        data = bytes(self._meta)
        self._meta = bytearray()
        t, self._meta_type = self._meta_type, b""
        if t in (b"x", b"X"):
            self._pax.update(_pax(data))
        elif t in (b"L", b"K"):
            self._long[t] = data.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
        # b"g": a global header, read and dropped (the docker CLI never writes one)
        self._to_pad(len(data), at, False)

    def _header(self, block: bytes, data_at: int, out: list) -> None:
        if block == _ZERO:
            self._state = "end"
            out.append(("end", None))
            return
        first = self.headers == 0
        self.headers += 1
        try:
            ok = _checksum_ok(block)
        except TarError:
            ok = False
        if not ok:
            raise TarError("invalid tar header checksum", first=first)
        t = block[156:157]
        size = _num(block[124:136], "size")
        if t in (b"x", b"X", b"g", b"L", b"K"):
            if size > MAX_META:
                raise TarError("an extended tar header is too large")
            self._meta_type = t
            if size:
                self._state, self._left = "meta", size
            else:
                self._end_meta(data_at)
            return
        pax, self._pax = self._pax, {}
        long_, self._long = self._long, {}
        magic = block[257:263]
        name = _str(block[0:100])
        if magic == b"ustar\x00":
            prefix = _str(block[345:500])
            if prefix:
                name = prefix + "/" + name
        if b"L" in long_:
            name = long_[b"L"]
        name = pax.get("path", name)
        linkname = pax.get("linkpath", long_.get(b"K", _str(block[157:257])))
        if "\x00" in name or "\x00" in linkname:
            raise TarError("a tar entry name holds a NUL byte")
        mode = _num(block[100:108], "mode")
        uid = _num(block[108:116], "uid")
        gid = _num(block[116:124], "gid")
        mtime: float = _num(block[136:148], "mtime")
        try:
            if "size" in pax:
                size = int(pax["size"])
            if "uid" in pax:
                uid = int(pax["uid"])
            if "gid" in pax:
                gid = int(pax["gid"])
            if "mtime" in pax:
                mtime = float(pax["mtime"])
        except ValueError:
            raise TarError("invalid PAX header: a bad number") from None
        if size < 0:
            raise TarError("invalid tar header: negative size")
        if t == b"\x00" and name.endswith("/"):
            t = b"5"
        m = Member(name, t, mode, uid, gid, size, mtime, linkname, data_at)
        if m.isreg():
            out.append(("file", m))
            self._cur = m
            if size:
                self._state, self._left = "data", size
            else:
                out.append(("done", m))
                self._state = "header"
            return
        out.append(("entry", m))
        if t in _HEADER_ONLY:
            self._state = "header"
            return
        # an unknown type with data: skipped (the caller refuses the entry anyway)
        self._after_file = False
        if size:
            self._state, self._left = "pad", size + (-size % BLOCK)
        else:
            self._state = "header"
