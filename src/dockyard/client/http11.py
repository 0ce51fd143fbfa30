"""A sans-IO HTTP/1.1 client protocol: request heads out, response events in.

    p = ResponseParser("GET")
    p.feed(data)                       # bytes from the socket; p.feed_eof() at EOF
    ev = p.next_event()                # Head, bytes (body data), End, or NEED_DATA

Bodies are framed by Content-Length, chunked transfer coding (extensions are
ignored, trailers returned in :class:`End`) or the end of the connection. 1xx
answers other than 101 are skipped; after a ``101 Switching Protocols`` head
(and for a hijacked 200) :meth:`ResponseParser.trailing_data` gives the bytes
that already belong to the new protocol. No I/O and no imports here: the CLI
loads this on every command.
"""

from __future__ import annotations

MAX_HEAD = 64 * 1024          # status line + headers (and trailers)
MAX_CHUNK_LINE = 4096         # a chunk-size line with its extensions


class ProtocolError(Exception):
    """The peer's bytes are not a valid HTTP/1.x response."""


class ClosedBeforeResponse(ProtocolError):
    """The connection ended before the first byte of a response (a stale keep-alive)."""


class _Need:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _Need()


class Headers:
    """Ordered, case-insensitive, multi-valued header fields (names keep their case)."""

    __slots__ = ("_items",)

    def __init__(self, items=()) -> None:
        self._items: list[tuple[str, str]] = list(items.items() if hasattr(items, "items")
                                                  else items)

    def get(self, name: str, default=None):
        n = name.lower()
        for k, v in self._items:
            if k.lower() == n:
                return v
        return default

    def get_all(self, name: str, default=None):
        n = name.lower()
        vals = [v for k, v in self._items if k.lower() == n]
        return vals if vals else default

    def __getitem__(self, name: str):
        return self.get(name)  # like email.message.Message: None when missing

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[str]:
        return [k for k, _ in self._items]

    def values(self) -> list[str]:
        return [v for _, v in self._items]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Head:
    """A response's status line and header fields."""

    __slots__ = ("version", "status", "reason", "headers")

    def __init__(self, version: str, status: int, reason: str, headers: Headers) -> None:
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers

    def __repr__(self) -> str:
        return f"Head({self.version} {self.status} {self.reason!r})"


class End:
    """The end of a response body; ``trailers`` of a chunked body (else empty)."""

    __slots__ = ("trailers",)

    def __init__(self, trailers: Headers | None = None) -> None:
        self.trailers = trailers if trailers is not None else Headers()

    def __repr__(self) -> str:
        return f"End({self.trailers!r})"


# parser states
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _EMPTY, \
    _DONE, _SWITCHED = range(10)

_HEX = frozenset(b"0123456789abcdefABCDEF")
_DIGITS = frozenset(b"0123456789")


def _blank_line_end(buf: bytearray, start: int) -> int:
    """Index just past the first empty line at or after a line start >= ``start``
    (lines end in CRLF or a bare LF), or -1."""
    i = buf.find(b"\n", start)
    while i >= 0:
        if buf.startswith(b"\r\n", i + 1):
            return i + 3
        if buf.startswith(b"\n", i + 1):
            return i + 2
        i = buf.find(b"\n", i + 1)
    return -1


def _parse_fields(lines: list[bytes], what: str) -> Headers:
    h = Headers()
    items = h._items
    for raw in lines:
        line = raw.decode("iso-8859-1")
        if line[:1] in (" ", "\t"):
            if not items:
                raise ProtocolError(f"malformed {what}: continuation line first")
            k, v = items[-1]
            items[-1] = (k, (v + " " + line.strip()).strip())
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or " " in name or "\t" in name:
            raise ProtocolError(f"malformed {what} line: {line[:80]!r}")
        items.append((name, value.strip()))
    return h


def _split_lines(block: bytes) -> list[bytes]:
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in block.split(b"\n")]


class ResponseParser:
    """Parses one response to a request made with ``method`` (HEAD: never a body)."""

    def __init__(self, method: str = "GET") -> None:
        self.method = method.upper()
        self.head: Head | None = None
        self.keep_alive = False       # known once the head is in
        self._buf = bytearray()
        self._state = _HEAD
        self._scan = 0                # where to resume looking for the end of the head
        self._left = 0                # bytes left of the body or of the current chunk
        self._eof = False
        self._started = False         # any byte received

    # -- input -----------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self._eof:
            raise ProtocolError("data after the end of the connection")
        if data:
            self._started = True
            self._buf += data

    def feed_eof(self) -> None:
        self._eof = True

    # -- state -----------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """Every byte of the response is in (an End may still be to return)."""
        return self._state == _DONE or self._state == _EMPTY

    @property
    def switched(self) -> bool:
        """A 101 head was returned: the connection now speaks another protocol."""
        return self._state == _SWITCHED

    def trailing_data(self) -> bytes:
        """Bytes received after the head (101) or after the end of the message, removed
        from the parser."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    # -- events ----------------------------------------------------------------------------
    def next_event(self, max_bytes: int | None = None):
        """The next :class:`Head`, body ``bytes`` (at most ``max_bytes``), :class:`End`,
        or ``NEED_DATA``. Raises :class:`ProtocolError` on bad input."""
        st = self._state
        if st == _HEAD:
            return self._next_head()
        if st == _LENGTH:
            return self._length_data(max_bytes)
        if st == _CHUNK_SIZE or st == _CHUNK_DATA or st == _CHUNK_END or st == _TRAILERS:
            return self._chunked(max_bytes)
        if st == _UNTIL_CLOSE:
            if self._buf:
                return self._take(len(self._buf) if max_bytes is None
                                  else min(max_bytes, len(self._buf)))
            if self._eof:
                self._state = _DONE
                return End()
            return NEED_DATA
        if st == _EMPTY:
            self._state = _DONE
            return End()
        if st == _SWITCHED:
            raise ProtocolError("the connection switched protocols: no more HTTP events")
        raise ProtocolError("the response is complete")

    def _take(self, n: int) -> bytes:
        buf = self._buf
        if n >= len(buf):
            data = bytes(buf)
            buf.clear()
            return data
        with memoryview(buf) as view:
            data = bytes(view[:n])  # one copy (a bytearray slice would be two)
        del buf[:n]
        return data

    def _next_head(self):
        while True:
            buf = self._buf
            if len(buf) >= 5 and not buf.startswith(b"HTTP/"):
                raise ProtocolError(f"not an HTTP response: {bytes(buf[:40])!r}")
            end = _blank_line_end(buf, self._scan)
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise ProtocolError(f"response head larger than {MAX_HEAD} bytes")
                self._scan = max(0, len(buf) - 2)
                if self._eof:
                    if not self._started:
                        raise ClosedBeforeResponse("the server closed the connection "
                                                   "without a response")
                    raise ProtocolError("connection closed in the middle of the response "
                                        "head")
                return NEED_DATA
            if end > MAX_HEAD:
                raise ProtocolError(f"response head larger than {MAX_HEAD} bytes")
            lines = _split_lines(bytes(buf[:end]))[:-2]
            del buf[:end]
            self._scan = 0
            head = self._status_line(lines[0])
            head.headers = _parse_fields(lines[1:], "header")
            if 100 <= head.status < 200 and head.status != 101:
                continue  # 100 Continue, 102, 103: an interim answer, the real one follows
            self._start_body(head)
            return head

    @staticmethod
    def _status_line(line: bytes) -> Head:
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ProtocolError(f"malformed status line: {line[:80]!r}")
        version = parts[0].decode("ascii", "replace")
        code = parts[1]
        if len(code) != 3 or not all(c in _DIGITS for c in code):
            raise ProtocolError(f"malformed status code in {line[:80]!r}")
        reason = parts[2].decode("iso-8859-1").strip() if len(parts) > 2 else ""
        return Head(version, int(code), reason, Headers())

    def _start_body(self, head: Head) -> None:
        self.head = head
        h = head.headers
        conn = ",".join(h.get_all("connection", [])).lower()
        tokens = {t.strip() for t in conn.split(",")}
        if head.version == "HTTP/1.0":
            keep = "keep-alive" in tokens
        else:
            keep = "close" not in tokens
        status = head.status
        if status == 101:
            self._state = _SWITCHED
            self.keep_alive = False
            return
        if self.method == "HEAD" or status in (204, 304):
            self._state = _EMPTY
            self.keep_alive = keep
            return
        te = h.get_all("transfer-encoding")
        if te is not None:
            codings = [c.strip().lower() for c in ",".join(te).split(",") if c.strip()]
            if codings and codings[-1] == "chunked":
                self._state = _CHUNK_SIZE
                # a Content-Length next to Transfer-Encoding: don't trust the connection
                self.keep_alive = keep and h.get("content-length") is None
            else:
                self._state = _UNTIL_CLOSE
                self.keep_alive = False
            return
        cl = h.get_all("content-length")
        if cl is not None:
            vals = {v.strip() for v in ",".join(cl).split(",")}
            if len(vals) != 1:
                raise ProtocolError(f"conflicting Content-Length values: {sorted(vals)}")
            v = vals.pop()
            if not v or len(v) > 18 or not all(c in _DIGITS for c in v.encode()):
                raise ProtocolError(f"invalid Content-Length: {v!r}")
            self._left = int(v)
            self._state = _LENGTH if self._left else _EMPTY
            self.keep_alive = keep
            return
        self._state = _UNTIL_CLOSE
        self.keep_alive = False

    def _length_data(self, max_bytes: int | None):
        if self._left == 0:
            self._state = _DONE
            return End()
        if not self._buf:
            if self._eof:
                raise ProtocolError(f"connection closed with {self._left} bytes of the body "
                                    "still to come")
            return NEED_DATA
        n = min(self._left, len(self._buf))
        if max_bytes is not None:
            n = min(n, max_bytes)
        self._left -= n
        if self._left == 0:
            self._state = _EMPTY  # all in: End comes next
        return self._take(n)

    def _chunked(self, max_bytes: int | None):
        buf = self._buf
        while True:
            st = self._state
            if st == _CHUNK_SIZE:
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) > MAX_CHUNK_LINE:
                        raise ProtocolError("chunk size line too long")
                    return self._need("chunk size")
                if nl > MAX_CHUNK_LINE:
                    raise ProtocolError("chunk size line too long")
                line = bytes(buf[:nl])
                del buf[:nl + 1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                size = line.split(b";", 1)[0].strip(b" \t")
                if not size or len(size) > 16 or not all(c in _HEX for c in size):
                    raise ProtocolError(f"invalid chunk size line: {line[:80]!r}")
                self._left = int(size, 16)
                self._state = _CHUNK_DATA if self._left else _TRAILERS
            elif st == _CHUNK_DATA:
                if not buf:
                    return self._need("chunk data")
                n = min(self._left, len(buf))
                if max_bytes is not None:
                    n = min(n, max_bytes)
                self._left -= n
                if self._left == 0:
                    self._state = _CHUNK_END
                return self._take(n)
            elif st == _CHUNK_END:
                if buf.startswith(b"\r\n"):
                    del buf[:2]
                elif buf.startswith(b"\n"):
                    del buf[:1]
                elif buf == b"\r" or not buf:
                    return self._need("chunk end")
                else:
                    raise ProtocolError("missing CRLF after chunk data")
                self._state = _CHUNK_SIZE
            else:  # _TRAILERS
                if buf.startswith(b"\r\n") or buf.startswith(b"\n"):
                    del buf[:2 if buf[0] == 13 else 1]
                    self._state = _DONE
                    return End()
                end = _blank_line_end(buf, 0)
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise ProtocolError(f"trailers larger than {MAX_HEAD} bytes")
                    return self._need("trailers")
                lines = _split_lines(bytes(buf[:end]))[:-2]
                del buf[:end]
                self._state = _DONE
                return End(_parse_fields(lines, "trailer"))

    def _need(self, where: str):
        if self._eof:
            raise ProtocolError(f"connection closed in the middle of a chunked body ({where})")
        return NEED_DATA


# -- requests --------------------------------------------------------------------------------

def encode_request_head(method: str, target: str, headers) -> bytes:
    """``METHOD target HTTP/1.1`` and the header fields (pairs or a mapping), CRLF-ended.
    Names and values must not contain CR or LF."""
    items = headers.items() if hasattr(headers, "items") else headers
    out = [f"{method} {target} HTTP/1.1\r\n"]
    for k, v in items:
        k, v = str(k), str(v)
        if any(c in k for c in "\r\n:") or "\r" in v or "\n" in v:
            raise ValueError(f"invalid header field {k!r}: {v!r}")
        out.append(f"{k}: {v}\r\n")
    out.append("\r\n")
    if any(c in method + target for c in " \r\n"):
        raise ValueError(f"invalid request line: {method!r} {target!r}")
    return "".join(out).encode("iso-8859-1")


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked request body (an empty ``data`` would end the body:
    use :data:`LAST_CHUNK` for that)."""
    return b"%X\r\n" % len(data) + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"


# -- request targets -------------------------------------------------------------------------

_ALWAYS_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(s: str, safe: str = "/") -> str:
    """Percent-encode ``s`` (UTF-8) like ``urllib.parse.quote``."""
    ok = _ALWAYS_SAFE.union(safe.encode("ascii", "ignore"))
    data = s.encode("utf-8")
    if all(c in ok for c in data):
        return s
    return "".join(chr(c) if c in ok else f"%{c:02X}" for c in data)


def quote_plus(s: str, safe: str = "") -> str:
    """``urllib.parse.quote_plus``: spaces become ``+``."""
    if " " not in s:
        return quote(s, safe)
    return quote(s, safe + " ").replace(" ", "+")


def urlencode(pairs) -> str:
    """``urllib.parse.urlencode`` for a mapping or (key, value) pairs of strings."""
    items = pairs.items() if hasattr(pairs, "items") else pairs
    return "&".join(f"{quote_plus(str(k))}={quote_plus(str(v))}" for k, v in items)
