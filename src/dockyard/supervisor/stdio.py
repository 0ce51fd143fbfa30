"""The supervisor's side of a task's stdio: output from its pipes or pty master to its
log (through the output journal, ``outjournal.py``) and to attached clients; input
from clients to its stdin. A mixin of ``server.Supervisor``."""

from __future__ import annotations

import asyncio
import errno
import logging
import os

from dockyard.supervisor import outjournal, protocol
from dockyard.supervisor.jsonlog import JSONLogWriter
from dockyard.supervisor.tasks import Task

log = logging.getLogger("dockyard.supervisor")


class Stdio:
    def _watch_output(self, task: Task, fd: int, stream: int) -> None:
        os.set_blocking(fd, False)
        task.out_fds[fd] = stream
        if not task.held_back:   # else from _read_adopted on
            asyncio.get_running_loop().add_reader(fd, self._on_output, task, fd)

    @property
    def scratch(self) -> outjournal.Scratch:
        if self._scratch is None:
            self._scratch = outjournal.Scratch()
        return self._scratch

    def _on_output(self, task: Task, fd: int) -> None:
        """Output is ready on ``fd``. A container's with a log goes through its output
        journal (nothing lost when we are killed): a pipe is read by the journal; a
        tty's master is spliced into our pipe first (a move in the kernel)."""
        if fd not in task.out_fds:
            return   # closed meanwhile (a call queued at adoption)
        stream = task.out_fds[fd]
        if task.journal is not None and not task.tty:
            try:
                data = task.journal.take(fd, 1 if stream == protocol.STDERR else 0, self.scratch)
            except OSError as e:
                log.warning("read from task %s: %s", task.id, e)
                data = b""
            if data is None:
                return
            if not data:
                self._close_out(task, fd)
                return
            self._send_output(task, stream, data)
            return
        if task.journal is not None and task.tty:
            self._on_pty(task, fd)
            return
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: pty whose slave side is gone
                log.warning("read from task %s: %s", task.id, e)
            data = b""
        if not data:
            self._close_out(task, fd)
            return
        self._send_output(task, stream, data)

    def _on_pty(self, task: Task, master: int) -> None:
        """A logged tty's output: the master spliced into our pipe (``task.relay``,
        which the holder keeps too), that pipe read through the journal; without
        splice from a tty (Linux < 6.5), read and noted at once."""
        journal = task.journal
        ended = False
        if task.relay is None:
            try:
                data = os.read(master, outjournal.CHUNK)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.EIO:
                    log.warning("read from task %s: %s", task.id, e)
                data = b""
            if data:
                journal.put(0, data)
                self._send_output(task, protocol.STDOUT, data)
            else:
                self._close_out(task, master)
            return
        relay_r, relay_w = task.relay
        while True:
            while (data := journal.take(relay_r, 0, self.scratch)):
                self._send_output(task, protocol.STDOUT, data)
            if ended:
                self._close_out(task, master)
                return
            try:
                n = os.splice(master, relay_w, outjournal.CHUNK, flags=os.SPLICE_F_NONBLOCK)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EINVAL and not getattr(task, "_spliced", False):
                    self._drop_relay(task)   # this kernel cannot: read it directly
                    self._on_pty(task, master)
                    return
                if e.errno != errno.EIO:   # EIO: the slave side is gone
                    log.warning("read from task %s: %s", task.id, e)
                n = 0
            if n == 0:
                ended = True
            else:
                task._spliced = True   # type: ignore[attr-defined]

    def _drop_relay(self, task: Task) -> None:
        if task.relay is None:
            return
        if self.holder is not None:
            self.holder.drop(task.id, "stdout", "relay")
        for fd in task.relay:
            os.close(fd)
        task.relay = None

    def _send_output(self, task: Task, stream: int, data: bytes) -> None:
        if task.log is not None and task.journal is None:
            try:
                task.log.write("stderr" if stream == protocol.STDERR else "stdout", data)
            except OSError as e:
                # a full disk: said once per task (not a traceback per chunk); the
                # output still reaches attached clients
                if not getattr(task, "_log_failed", False):
                    task._log_failed = True   # type: ignore[attr-defined]
                    log.warning("task %s: log not written: %s", task.id[:12], e)
            else:
                if getattr(task, "_log_failed", False):
                    task._log_failed = False   # type: ignore[attr-defined]
                    log.warning("task %s: log written again", task.id[:12])
        for a in list(task.attachments):
            want = a.stderr if stream == protocol.STDERR else a.stdout
            if not want or a.writer.is_closing():
                continue
            a.send(data if task.tty else protocol.frame(stream, data))
            if a.writer.transport.get_write_buffer_size() > 16 * 1024 * 1024:
                a.writer.close()  # a client that does not read must not cost us memory

    def _close_out(self, task: Task, fd: int) -> None:
        if task.out_fds.pop(fd, None) is None:
            return
        if not task.out_fds and task.drained is not None:
            task.drained.set()
        asyncio.get_running_loop().remove_reader(fd)
        if task.relay is not None and task.tty:
            for r in task.relay:
                os.close(r)
            task.relay = None
        if task.tty and fd == task.stdin_fd:
            return  # the pty master is also stdin: closed with it
        os.close(fd)

    def _write_stdin(self, task: Task, data: bytes) -> None:
        if task.stdin_fd is None:
            return
        task.stdin_buf += data
        self._flush_stdin(task)

    def _flush_stdin(self, task: Task) -> None:
        loop = asyncio.get_running_loop()
        fd = task.stdin_fd
        if fd is None:
            return
        try:
            while task.stdin_buf:
                n = os.write(fd, task.stdin_buf)
                del task.stdin_buf[:n]
        except BlockingIOError:
            loop.add_writer(fd, self._flush_stdin, task)
            return
        except OSError:
            task.stdin_buf.clear()
        loop.remove_writer(fd)
        if getattr(task, "_close_after_flush", False):
            self._close_stdin(task)

    def _close_stdin(self, task: Task) -> None:
        fd = task.stdin_fd
        if fd is None:
            return
        if task.stdin_buf:
            task._close_after_flush = True  # type: ignore[attr-defined]
            return
        asyncio.get_running_loop().remove_writer(fd)
        task.stdin_fd = None
        if task.tty:
            if fd in task.out_fds:
                return  # pty master still carries output; closed when it ends
        elif self.holder is not None:
            self.holder.drop(task.id, "stdin")   # else the container never reads its end
        os.close(fd)

    def _open_log(self, task: Task) -> None:
        """An adopted container's log, and its output journal: what the killed
        supervisor had taken from the pipes but not written is written now."""
        if not (task.log_path and task.kind == "container"):
            return
        try:
            task.log = JSONLogWriter(task.log_path, task.log_max_size or 10 << 20,
                                     task.log_max_file or 3, attrs=task.log_attrs,
                                     compress=task.log_compress)
            task.journal = outjournal.open_for(self._task_dir(task.id), task.log, task.id[:12])
            task.journal.recover()
        except OSError as e:
            log.warning("task %s: cannot reopen its log: %s", task.id[:12], e)

    def _settle_log(self, task: Task) -> None:
        """An exited container whose output journal was left mid-chunk (no holder
        kept its pipes): what it holds goes to the log."""
        if not (task.log_path and task.kind == "container") or \
                not outjournal.unsettled(self._task_dir(task.id)):
            return   # the common case: read from its header, nothing opened
        self._open_log(task)
        self._close_log(task)

    def _close_log(self, task: Task) -> None:
        """The output ended: partial lines become entries, the log is closed."""
        try:
            if task.journal is not None:
                for stream in (0, 1):
                    task.journal.finish(stream)
            if task.log is not None:
                task.log.close()
        except OSError as e:   # its last partial line not written (a full disk)
            log.warning("task %s: log not closed cleanly: %s", task.id[:12], e)
        if task.journal is not None:
            task.journal.close()
        task.log, task.journal = None, None
