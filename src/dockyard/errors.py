"""The engine's error types, shared by every service.

Services raise these; the API layer maps them to HTTP status codes and the
CLI to exit codes. Services never know about HTTP.
"""

from __future__ import annotations


class DockyardError(Exception):
    """Base class. ``status`` is the HTTP status the API answers with."""

    status = 500


class InvalidParameter(DockyardError):
    status = 400


class Unauthorized(DockyardError):
    status = 401


class Forbidden(DockyardError):
    status = 403


class NotFound(DockyardError):
    status = 404


class Conflict(DockyardError):
    status = 409


class NotModified(DockyardError):
    status = 304


class Unavailable(DockyardError):
    status = 503


class SystemError_(DockyardError):
    status = 500
