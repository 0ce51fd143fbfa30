"""The life of a blob upload session, as one transition table.

Both ends follow it: the server keeps one per ``Docker-Upload-UUID`` (persisted
with the session), a pushing client keeps one per blob it sends.

    IDLE --start--> OPEN --chunk/resume--> OPEN --commit--> COMMITTED
      \\                 \\--cancel--> CANCELLED
       \\                 \\--reject--> FAILED   (digest or size did not verify)
        \\--commit--> COMMITTED                  (monolithic POST ?digest=)

Any other move raises :class:`IllegalUploadMove`. The one special case, next to
the table: a chunk must start exactly at the current offset.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from dockyard.distribution.errors import ErrorCode, RegistryError
from dockyard.distribution.http import format_upload_range


class UploadState(enum.Enum):
    IDLE = "idle"
    OPEN = "open"
    COMMITTED = "committed"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (UploadState.COMMITTED, UploadState.CANCELLED, UploadState.FAILED)


# -- events -----------------------------------------------------------------

@dataclass(frozen=True)
class Start:
    """The session was created (server: POST answered 202)."""


@dataclass(frozen=True)
class Chunk:
    """``length`` bytes appended. ``start`` is the chunk's declared offset
    (Content-Range), or None for a streamed PATCH that just appends."""

    length: int
    start: int | None = None


@dataclass(frozen=True)
class Resume:
    """The client learned the server's offset (GET status, or a 416 answer)."""

    offset: int


@dataclass(frozen=True)
class Commit:
    """The content was verified and is now a blob."""


@dataclass(frozen=True)
class Reject:
    """Commit failed verification; the data is discarded."""


@dataclass(frozen=True)
class Cancel:
    """DELETE of the session."""


Event = Start | Chunk | Resume | Commit | Reject | Cancel

S = UploadState
TRANSITIONS: dict[tuple[UploadState, type], UploadState] = {
    (S.IDLE, Start): S.OPEN,
    (S.IDLE, Commit): S.COMMITTED,
    (S.IDLE, Reject): S.FAILED,
    (S.OPEN, Chunk): S.OPEN,
    (S.OPEN, Resume): S.OPEN,
    (S.OPEN, Commit): S.COMMITTED,
    (S.OPEN, Reject): S.FAILED,
    (S.OPEN, Cancel): S.CANCELLED,
}


class IllegalUploadMove(RegistryError):
    """A move the table does not allow (or a chunk at the wrong offset)."""

    def __init__(self, state: UploadState, event: Event, code: ErrorCode, message: str,
                 status: int | None = None, headers: dict | None = None):
        self.state = state
        self.event = event
        super().__init__(code, message, status=status, headers=headers)


@dataclass(frozen=True)
class UploadSession:
    state: UploadState = UploadState.IDLE
    offset: int = 0

    def handle(self, event: Event) -> "UploadSession":
        """The session after ``event``, or IllegalUploadMove."""
        new_state = TRANSITIONS.get((self.state, type(event)))
        if new_state is None:
            code = ErrorCode.BLOB_UPLOAD_UNKNOWN if self.state.terminal else ErrorCode.BLOB_UPLOAD_INVALID
            raise IllegalUploadMove(self.state, event, code,
                                    f"cannot {type(event).__name__.lower()} an upload that is {self.state.value}")
        offset = self.offset
        if isinstance(event, Chunk):
            # The special case: chunks are strictly in order. 416 tells the
            # client where we are, so it can resume from there.
            if event.start is not None and event.start != self.offset:
                raise IllegalUploadMove(self.state, event, ErrorCode.BLOB_UPLOAD_INVALID,
                                        f"chunk starts at {event.start}, upload is at {self.offset}",
                                        status=416, headers={"Range": format_upload_range(self.offset)})
            if event.length < 0:
                raise IllegalUploadMove(self.state, event, ErrorCode.BLOB_UPLOAD_INVALID,
                                        "negative chunk length")
            offset += event.length
        elif isinstance(event, Resume):
            offset = event.offset
        return replace(self, state=new_state, offset=offset)

    def check(self, event: Event) -> None:
        """Raise if ``event`` would be illegal now, without moving."""
        self.handle(event)
