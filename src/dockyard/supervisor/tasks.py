"""The supervisor's tasks: a container's or an exec's process with its stdio, log and
exit (``Task``; what ``record`` gives is saved as ``tasks/<id>/task.json``), the
clients attached to it (``Attachment``), and the errors its operations raise."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

from dockyard.supervisor import outjournal
from dockyard.supervisor.jsonlog import JSONLogWriter


class TaskError(Exception):
    kind = "DockyardError"


class NotFoundError(TaskError):
    kind = "NotFound"


class ConflictError(TaskError):
    kind = "Conflict"


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


@dataclass
class Attachment:
    writer: asyncio.StreamWriter
    stdout: bool
    stderr: bool
    stdin: bool
    # An attached exec's reply must precede its output: hold output until then.
    ready: bool = True
    held: list = field(default_factory=list)

    def send(self, data: bytes) -> None:
        if self.ready:
            self.writer.write(data)
        else:
            self.held.append(data)

    def release(self) -> None:
        self.ready = True
        for data in self.held:
            self.writer.write(data)
        self.held.clear()


@dataclass
class Task:
    id: str                      # container id, or exec id for exec tasks
    container_id: str
    kind: str                    # "container" | "exec"
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    pid: int = 0
    status: str = "creating"     # creating, created, running, exited
    exit_code: int | None = None
    started_at: str = ""
    finished_at: str = ""
    log_path: str = ""
    log_max_size: int = 0
    log_max_file: int = 0
    log_compress: bool = False   # rotated files gzipped
    log_attrs: dict = field(default_factory=dict)   # in every entry (labels, env, tag)
    fifos: bool = False          # stdout/stderr are FIFOs in the task's directory
    runtime: dict = field(default_factory=dict)   # runtime, runtime_root, ... (for start)
    # live state, not persisted
    stdin_fd: int | None = None
    out_fds: dict = field(default_factory=dict)   # fd -> stream number
    drained: asyncio.Event | None = None          # set when the last output fd closes
    log: JSONLogWriter | None = None
    journal: outjournal.OutputJournal | None = None   # lossless output (with a log)
    relay: tuple | None = None   # a tty's (read, write) pipe its master is spliced into
    attachments: list = field(default_factory=list)
    exit_event: asyncio.Event = field(default_factory=asyncio.Event)
    stdin_buf: bytearray = field(default_factory=bytearray)
    exiting: bool = False        # its exit is being handled (_task_exited)
    held_back: bool = False      # adopted: output not read yet (ADOPT_GRACE)

    def record(self) -> dict:
        return {k: getattr(self, k) for k in (
            "id", "container_id", "kind", "tty", "open_stdin", "stdin_once", "pid", "status",
            "exit_code", "started_at", "finished_at", "log_path", "log_max_size",
            "log_max_file", "log_compress", "log_attrs", "fifos", "runtime")}
