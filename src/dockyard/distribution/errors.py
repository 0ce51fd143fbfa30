"""The distribution spec's error codes, with their HTTP statuses and JSON bodies.

A registry answers every failure with ``{"errors": [{"code", "message", "detail"}]}``.
Both sides use :class:`RegistryError`: the server raises it and renders
:meth:`RegistryError.body`; a client turns a response back into one with
:func:`parse_error_response`.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from dockyard.errors import DockyardError


class ErrorCode(enum.Enum):
    # value: (default HTTP status, default message)
    BLOB_UNKNOWN = (404, "blob unknown to registry")
    BLOB_UPLOAD_INVALID = (400, "blob upload invalid")
    BLOB_UPLOAD_UNKNOWN = (404, "blob upload unknown to registry")
    DIGEST_INVALID = (400, "provided digest did not match uploaded content")
    MANIFEST_BLOB_UNKNOWN = (404, "manifest references a manifest or blob unknown to registry")
    MANIFEST_INVALID = (400, "manifest invalid")
    MANIFEST_UNKNOWN = (404, "manifest unknown to registry")
    NAME_INVALID = (400, "invalid repository name")
    NAME_UNKNOWN = (404, "repository name not known to registry")
    SIZE_INVALID = (400, "provided length did not match content length")
    TAG_INVALID = (400, "manifest tag did not match URI")
    UNAUTHORIZED = (401, "authentication required")
    DENIED = (403, "requested access to the resource is denied")
    UNSUPPORTED = (405, "the operation is unsupported")
    TOOMANYREQUESTS = (429, "too many requests")    # the spec's spelling (no underscores)
    TOO_MANY_REQUESTS = (429, "too many requests")  # an alias: .name is TOOMANYREQUESTS
    PAGINATION_NUMBER_INVALID = (400, "invalid number of results requested")
    RANGE_INVALID = (416, "invalid content range")
    UNKNOWN = (500, "unknown error")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]


# The OCI distribution spec's error codes: the only ones a registry's JSON error
# body may carry ("The code field MUST be one of the following"). The members
# above that are not here (docker distribution's TAG_INVALID, RANGE_INVALID,
# PAGINATION_NUMBER_INVALID, UNKNOWN) are for reading other registries' answers
# and for our own errors; our registry answers them without a JSON body.
SPEC_CODES = frozenset({
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
    "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED",
    "TOOMANYREQUESTS"})


class RegistryError(DockyardError):
    """One spec error. ``status`` defaults to the code's, but may be overridden
    (a chunk out of order is BLOB_UPLOAD_INVALID with 416)."""

    def __init__(self, code: ErrorCode, message: str | None = None, detail: Any = None,
                 status: int | None = None, headers: dict[str, str] | None = None):
        self.code = code
        self.message = message or code.message
        self.detail = detail
        self.status = status if status is not None else code.status
        self.headers = dict(headers or {})
        super().__init__(f"{code.name}: {self.message}")

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"code": self.code.name, "message": self.message}
        if self.detail is not None:
            d["detail"] = self.detail
        return d

    def body(self) -> bytes:
        return error_body([self])


def error_body(errors: list[RegistryError]) -> bytes:
    return json.dumps({"errors": [e.to_dict() for e in errors]}).encode()


def parse_error_response(status: int, body: bytes) -> RegistryError:
    """What a client makes of a failed response: the first spec error in the
    body, or a generic one for the status when the body is not the spec's."""
    try:
        errors = json.loads(body or b"{}").get("errors") or []
        first = errors[0]
        try:
            code = ErrorCode[first.get("code", "")]
        except KeyError:
            code = _code_for_status(status)
        return RegistryError(code, first.get("message") or None, first.get("detail"), status=status)
    except (ValueError, AttributeError, IndexError, TypeError):
        return RegistryError(_code_for_status(status), f"HTTP {status}", status=status)


def _code_for_status(status: int) -> ErrorCode:
    return {401: ErrorCode.UNAUTHORIZED, 403: ErrorCode.DENIED, 405: ErrorCode.UNSUPPORTED,
            416: ErrorCode.RANGE_INVALID, 429: ErrorCode.TOO_MANY_REQUESTS}.get(status, ErrorCode.UNKNOWN)
