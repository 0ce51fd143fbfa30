"""JSON request bodies: read with a size cap, decoded with bounded nesting, checked
against the Docker type of the endpoint (:mod:`dockyard.api.schema`).

Every handler that takes a JSON body reads it through :func:`read_json`, so bad
input is a 400 (too large: 413) with a clear message before any service sees it.
Bodies that are archives (build contexts, load, import, archive PUT) are streams
and never come through here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard import boundedjson
from dockyard.api import schema
from dockyard.errors import DockyardError, InvalidParameter

# A Docker request record of megabytes is nonsense (a 200 MB create body once grew the
# metadata database by 420 MB); dockerd sets no cap, so this is ours.
MAX_JSON_BODY = 4 * 1024 * 1024
# what an oversized body's sender may still push at us to get our answer, not a reset
_DRAIN_AT_MOST = 64 * 1024 * 1024


class TooLarge(DockyardError):
    status = 413


async def _drain(request: web.Request) -> None:
    """Read (and drop) what the client still sends, up to a bound: past it the client
    gets a reset instead of our answer."""
    left = _DRAIN_AT_MOST
    try:
        while left > 0:
            chunk = await request.content.readany()
            if not chunk:
                break
            left -= len(chunk)
    except Exception:  # noqa: BLE001 - the answer matters more
        pass


async def read_raw(request: web.Request, limit: int = MAX_JSON_BODY) -> bytes:
    """The whole body, refused (413) beyond ``limit`` bytes."""
    too_large = TooLarge(f"request body too large: a JSON body may be at most {limit} bytes")
    length = request.content_length
    if length is not None and length > limit:
        if length <= _DRAIN_AT_MOST:
            await _drain(request)
        raise too_large
    chunks, size = [], 0
    while True:
        chunk = await request.content.read(min(65536, limit + 1 - size) or 1)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            await _drain(request)
            raise too_large
    return b"".join(chunks)


def decode(raw: bytes) -> Any:
    try:
        return boundedjson.loads(raw)
    except boundedjson.JSONError as e:
        raise InvalidParameter(f"invalid JSON: {e}") from None


async def read_json(request: web.Request, t: schema.Struct | None = None,
                    required: bool = True) -> dict:
    """The body as the JSON object of type ``t`` (normalized as Go would decode it).

    An empty body is ``{}`` unless ``required`` (then 400, as dockerd's "invalid JSON:
    empty body")."""
    raw = await read_raw(request)
    if not raw.strip():
        if required:
            raise InvalidParameter("invalid JSON: empty body")
        return {}
    body = decode(raw)
    if body is None and not required:
        return {}
    if t is None:
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: expected an object")
        return body
    return schema.check(t, body)
