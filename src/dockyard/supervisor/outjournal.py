"""A container's output, from its pipes to its json-file log, with nothing lost or
written twice when the supervisor is killed at any instruction.

The pipes outlive a supervisor (the holder keeps their reading ends), so what a
killed supervisor had not taken yet waits there for the next one. What it had taken
is the problem: a chunk read from the pipe but not yet in the log, and the part of a
line after the last newline, which waits for the rest of the line. Both live here,
in a small file of the task's directory that the supervisor maps shared: a store to
it is in the page cache the moment it is made, so a SIGKILL cannot take it away
(a crash of the machine can: not our promise, and no fsync per chunk).

A chunk goes through these steps, each made durable by one byte store (the control
byte: the state in its low bits, which of two partial-line slots each stream uses in
the next two):
  1. ``tee`` copies what the pipe holds without taking it (a copy in our memory), and
     the first byte is noted with a marker at the head of the chunk area that differs
     from it; state CONSUMING.
  2. ``read`` takes the same bytes from the pipe straight into the chunk area: the
     kernel moves them in one step, so after a kill the area's first byte tells
     whether the read happened. State CONSUMED.
  3. The lines (the stream's partial line + the chunk, cut by ``split_lines``) are
     appended to the log; before each write(2) a mark records the file's inode and
     size and which lines the write holds, so a successor knows which of them reached
     the file (the file changed) and drops a torn tail (the file grew by less).
  4. The new partial line goes to the stream's other slot; state IDLE with that slot
     made current.
A tty has no pipe to ``tee`` from: its pty master is first spliced into a pipe of
ours (the holder keeps both its ends), a move inside the kernel, and that pipe is
read as above. Where splicing from a tty is not supported (Linux before 6.5), a
tty's output is read directly: a chunk read but not yet noted can be lost then.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import struct

from dockyard.supervisor.jsonlog import MAX_LINE, JSONLogWriter, split_lines

_log = logging.getLogger(__name__)
CHUNK = 65536
IDLE, CONSUMING, CONSUMED = 0, 1, 2
STREAMS = ("stdout", "stderr")

# layout: a 4 KiB header, the chunk area, then the partial-line slots [stream][slot]
_CTRL, _STREAM, _MARK, _FIRST, _FINAL, _N = 0, 1, 2, 3, 4, 8
_MARKS = 16                    # two marks: ino, size, length (Q), first, count (I)
_MARK_FMT = struct.Struct("<QQQII")
_PLEN = 96                     # partial lengths: [stream][slot] (I)
_HEADER = 4096
_AREA = _HEADER
_PARTIALS = _AREA + CHUNK
_SIZE = _PARTIALS + 4 * MAX_LINE
NO_MARK = 0xFF
SPLICE_F_NONBLOCK = 2

_libc = None


def _tee(fd_in: int, fd_out: int, length: int) -> int:
    """tee(2): copy up to ``length`` bytes from pipe ``fd_in`` to pipe ``fd_out``
    without taking them. 0 at end of file; BlockingIOError when it is empty."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.tee.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint)
        _libc.tee.restype = ctypes.c_ssize_t
    n = _libc.tee(fd_in, fd_out, length, SPLICE_F_NONBLOCK)
    if n < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return n


class Scratch:
    """The pipe ``tee`` copies into, drained after each copy (one per supervisor)."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        import fcntl
        fcntl.fcntl(self.w, 1031, 4 * CHUNK)   # F_SETPIPE_SZ: room for a full pipe's buffers

    def peek(self, fd: int) -> bytes | None:
        """What pipe ``fd`` holds (up to CHUNK bytes), left in it. b"" at end of
        file, None when it is empty."""
        try:
            n = _tee(fd, self.w, CHUNK)
        except BlockingIOError:
            return None
        if n == 0:
            return b""
        parts, got = [], 0
        while got < n:
            b = os.read(self.r, n - got)
            parts.append(b)
            got += len(b)
        return b"".join(parts)


class OutputJournal:
    """The mapped file ``path`` for one container's output, and its log."""

    def __init__(self, path: str, log: JSONLogWriter, label: str = "") -> None:
        self.path = path
        self.label = label or path
        self.log = log
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            # Blocks allocated now (a new file: zeros, IDLE, slots 0, empty partials): a
            # store to a page of a sparse file on a full disk is a SIGBUS, not an error.
            os.posix_fallocate(fd, 0, _SIZE)
            self.mm = mmap.mmap(fd, _SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.failed = False   # the log cannot be written (a full disk): said once

    # ---- the recorded state -----------------------------------------------------
    def _ctrl(self) -> int:
        return self.mm[_CTRL]

    def _slot(self, stream: int) -> int:
        return (self._ctrl() >> (2 + stream)) & 1

    def _set_ctrl(self, state: int, slots: int | None = None) -> None:
        if slots is None:
            slots = self._ctrl() & 0b1100
        self.mm[_CTRL] = state | slots   # one byte: the step's commit

    def partial(self, stream: int) -> bytes:
        slot = self._slot(stream)
        (n,) = struct.unpack_from("<I", self.mm, _PLEN + 4 * (2 * stream + slot))
        off = _PARTIALS + (2 * stream + slot) * MAX_LINE
        return self.mm[off:off + min(n, MAX_LINE - 1)]

    # ---- the steps ----------------------------------------------------------------
    def take(self, fd: int, stream: int, scratch: Scratch) -> bytes | None:
        """Move what pipe ``fd`` holds into the journal (steps 1-2) and to the log
        (3-4); returns it (for attached clients). b"" at end of file (the partial
        line is then written out), None when the pipe is empty."""
        data = scratch.peek(fd)
        if data is None:
            return None
        if not data:
            self.finish(stream)
            return b""
        n = len(data)
        mm = self.mm
        mm[_STREAM] = stream
        mm[_MARK] = NO_MARK
        mm[_FIRST] = data[0]
        mm[_FINAL] = 0
        struct.pack_into("<I", mm, _N, n)
        mm[_AREA] = data[0] ^ 0xFF
        self._set_ctrl(CONSUMING)
        got = os.readv(fd, [memoryview(mm)[_AREA:_AREA + n]])
        if got != n:   # nobody else reads these pipes
            raise OSError(errno.EIO, f"read {got} of {n} bytes seen in the pipe")
        self._set_ctrl(CONSUMED)
        self._write_out(stream, data, final=False, done=0)
        return data

    def put(self, stream: int, data: bytes) -> None:
        """Output already read (a tty without splice): noted, then written out."""
        mm = self.mm
        n = len(data)
        mm[_STREAM] = stream
        mm[_MARK] = NO_MARK
        mm[_FINAL] = 0
        struct.pack_into("<I", mm, _N, n)
        mm[_AREA:_AREA + n] = data
        self._set_ctrl(CONSUMED)
        self._write_out(stream, data, final=False, done=0)

    def finish(self, stream: int) -> None:
        """The stream ended: its partial line becomes an entry."""
        if not self.partial(stream):
            return
        mm = self.mm
        mm[_STREAM] = stream
        mm[_MARK] = NO_MARK
        mm[_FINAL] = 1
        struct.pack_into("<I", mm, _N, 0)
        self._set_ctrl(CONSUMED)
        self._write_out(stream, b"", final=True, done=0)

    def _write_out(self, stream: int, data: bytes, final: bool, done: int) -> None:
        pieces, rest = split_lines(self.partial(stream) + data, final)
        if len(pieces) > done:
            self._append(stream, pieces[done:], done)
        # step 4: the new partial line into the other slot, then one byte makes it current
        slot = 1 - self._slot(stream)
        off = _PARTIALS + (2 * stream + slot) * MAX_LINE
        self.mm[off:off + len(rest)] = rest
        struct.pack_into("<I", self.mm, _PLEN + 4 * (2 * stream + slot), len(rest))
        slots = self._ctrl() & 0b1100
        slots = (slots & ~(1 << (2 + stream))) | (slot << (2 + stream))
        self._set_ctrl(IDLE, slots)

    def _append(self, stream: int, pieces: list[bytes], done: int) -> None:
        """Step 3. A full disk drops the lines from the log (said once, not per chunk;
        attached clients still get them)."""
        marks = [0]

        def before_write(ino: int, size: int, length: int, first: int, count: int) -> None:
            i = marks[0] & 1
            marks[0] += 1
            _MARK_FMT.pack_into(self.mm, _MARKS + 32 * i, ino, size, length, done + first, count)
            self.mm[_MARK] = i

        try:
            self.log.write_pieces(STREAMS[stream], pieces, before_write=before_write)
        except OSError as e:
            if not self.failed:
                self.failed = True
                _log.warning("%s: log not written: %s", self.label, e)
            return
        if self.failed:
            self.failed = False
            _log.warning("%s: log written again", self.label)

    # ---- after a kill ---------------------------------------------------------------
    def recover(self) -> None:
        """Finish what a killed supervisor left half-done (call before reading the
        pipes again, with the log reopened)."""
        state = self._ctrl() & 0b11
        mm = self.mm
        if state == CONSUMING:
            if mm[_AREA] == mm[_FIRST]:
                state = CONSUMED          # the read happened: the bytes are in the area
            else:
                self._set_ctrl(IDLE)      # it did not: they are still in the pipe
                return
        if state != CONSUMED:
            return
        stream = mm[_STREAM] & 1
        (n,) = struct.unpack_from("<I", mm, _N)
        data = bytes(mm[_AREA:_AREA + min(n, CHUNK)])
        self._write_out(stream, data, final=bool(mm[_FINAL]), done=self._lines_done())

    def _lines_done(self) -> int:
        """How many of the in-flight chunk's lines are in the log already."""
        i = self.mm[_MARK]
        if i == NO_MARK:
            return 0
        ino, size, length, first, count = _MARK_FMT.unpack_from(self.mm, _MARKS + 32 * (i & 1))
        try:
            st = os.stat(self.log.path)
        except FileNotFoundError:
            return first + count
        if st.st_ino != ino:
            return first + count          # rotated after the write: it was made
        if st.st_size == size:
            return first                  # not made
        if size < st.st_size < size + length:
            os.truncate(self.log.path, size)   # torn: the lines are written again
            self.log.resync()
            return first
        return first + count

    def close(self) -> None:
        self.mm.close()


def unsettled(task_dir: str) -> bool:
    """Whether the task's journal holds anything for its log (a chunk in flight or a
    partial line): one read of its header, without mapping it."""
    try:
        with open(os.path.join(task_dir, "output.journal"), "rb") as f:
            head = f.read(_PLEN + 16)
    except OSError:
        return False
    if len(head) < _PLEN + 16:
        return False
    ctrl = head[_CTRL]
    if ctrl & 0b11 != IDLE:
        return True
    lengths = struct.unpack_from("<4I", head, _PLEN)
    return any(lengths[2 * stream + ((ctrl >> (2 + stream)) & 1)] for stream in (0, 1))


def open_for(task_dir: str, log: JSONLogWriter, label: str = "") -> OutputJournal:
    return OutputJournal(os.path.join(task_dir, "output.journal"), log, label)
