"""HTTP details of the protocol: byte ranges, upload ranges, Link pagination.

Two range dialects meet in a registry:

- blob downloads use RFC 9110: ``Range: bytes=a-b`` in, ``Content-Range:
  bytes a-b/size`` out with 206;
- uploads use the distribution spec's own: a chunk is sent with ``Content-Range:
  a-b`` (inclusive, no unit) and the server reports progress with ``Range: 0-n``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from dockyard.distribution.errors import ErrorCode, RegistryError


class RangeNotSatisfiable(ValueError):
    """A Range that names no byte of the representation (answer 416)."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.I)


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """A single-range ``Range`` header against a blob of ``size`` bytes.

    None means "send it all" (no header, or one we do not understand, such as
    several ranges: ignoring Range is always allowed). Raises
    RangeNotSatisfiable when the range lies past the end.
    """
    if not header:
        return None
    m = _RANGE_RE.match(header)
    if not m:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        # suffix range: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable(header)
        return ByteRange(max(size - n, 0), size - 1) if size else _unsatisfiable(header)
    start = int(first)
    if last != "" and int(last) < start:
        return None  # syntactically invalid: ignore the header (RFC 9110)
    if start >= size:
        raise RangeNotSatisfiable(header)
    end = int(last) if last != "" else size - 1
    return ByteRange(start, min(end, size - 1))


def _unsatisfiable(header: str):
    raise RangeNotSatisfiable(header)


def format_range_request(start: int, end: int | None = None) -> str:
    """``Range`` for a client resuming a download at ``start``."""
    return f"bytes={start}-" + ("" if end is None else str(end))


_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)


def parse_content_range(header: str) -> tuple[int, int, int | None]:
    """A 206 answer's ``Content-Range: bytes a-b/size`` -> (a, b, size or None)."""
    m = _CONTENT_RANGE_RE.match(header or "")
    if not m:
        raise ValueError(f"invalid Content-Range {header!r}")
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), int(m.group(2)), total


_UPLOAD_RANGE_RE = re.compile(r"^\s*(?:bytes[\s=]+)?(\d+)\s*-\s*(\d+)(?:/(?:\d+|\*))?\s*$", re.I)


def parse_upload_content_range(header: str) -> tuple[int, int]:
    """A chunk's ``Content-Range: a-b`` (inclusive) -> (a, b).

    Also accepts the RFC form ``bytes a-b/total`` that some clients send.
    Raises BLOB_UPLOAD_INVALID (416) when malformed.
    """
    m = _UPLOAD_RANGE_RE.match(header or "")
    if not m or int(m.group(2)) < int(m.group(1)):
        raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, f"invalid Content-Range {header!r}",
                            status=416)
    return int(m.group(1)), int(m.group(2))


def format_upload_content_range(start: int, length: int) -> str:
    """What a client sends with a chunk of ``length`` bytes at ``start``."""
    return f"{start}-{start + length - 1}"


def format_upload_range(size: int) -> str:
    """The ``Range`` a server reports for an upload holding ``size`` bytes.

    As distribution does: ``0-(size-1)``, and ``0-0`` when empty.
    """
    return f"0-{max(size - 1, 0)}"


def parse_upload_range(header: str | None) -> int:
    """A server's upload ``Range: 0-n`` -> the offset to continue from (n+1).

    ``0-0`` is ambiguous (nothing or one byte); registries send it for an empty
    upload, so it reads as 0 -- a client then resends from the start, which is
    always safe.
    """
    if not header:
        return 0
    m = _UPLOAD_RANGE_RE.match(header)
    if not m:
        raise ValueError(f"invalid upload Range {header!r}")
    end = int(m.group(2))
    return 0 if end == 0 else end + 1


# -- pagination -------------------------------------------------------------

MAX_PAGE = 10000


def parse_page_params(n: str | None, last: str | None, default: int | None = None) -> tuple[int | None, str | None]:
    """``?n=&last=`` -> (page size or None for everything, last)."""
    if n is None or n == "":
        return default, last or None
    try:
        count = int(n)
    except ValueError:
        raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID, detail={"n": n}) from None
    if count < 0:
        raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID, detail={"n": n})
    return min(count, MAX_PAGE), last or None


def paginate(items: list[str], n: int | None, last: str | None) -> tuple[list[str], str | None]:
    """Sorted ``items`` after ``last``, at most ``n`` of them; and the ``last``
    for the next page, or None when this page is the final one."""
    ordered = sorted(items)
    if last is not None:
        ordered = [i for i in ordered if i > last]
    if n is None:
        return ordered, None
    page = ordered[:n]
    more = len(ordered) > n and n > 0
    return page, (page[-1] if more else None)


def link_header(path: str, n: int, last: str, extra: dict[str, str] | None = None) -> str:
    """``Link: </v2/...?n=N&last=X>; rel="next"``."""
    params = dict(extra or {})
    params.update({"n": str(n), "last": last})
    return f'<{path}?{urlencode(params)}>; rel="next"'


_LINK_RE = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,]+)*)')


def parse_link_next(header: str | None) -> str | None:
    """The rel="next" URL of a Link header, or None."""
    if not header:
        return None
    for m in _LINK_RE.finditer(header):
        params = m.group(2)
        if re.search(r'rel\s*=\s*"?next"?', params):
            return m.group(1)
    return None


def next_page_params(link: str | None) -> dict[str, str] | None:
    """The query of a next-page link, as a dict (a client re-issues it)."""
    url = parse_link_next(link)
    if url is None:
        return None
    return dict(parse_qsl(urlsplit(url).query))
