"""Staying attached to a container process: `run` and `exec` without --detach.

We are the process's subreaper, so it is reparented to us and we can wait
for it. Signals we receive are forwarded to it (SIGCHLD and SIGWINCH are
ours: the first wakes the loop, the second resizes the pty). With a
terminal and no console socket we own the pty master and copy bytes between
it and our own stdio (in raw mode if our stdin is a terminal).

Signals reach the loop through ``signal.set_wakeup_fd``: the handler does
nothing, the kernel-level wakeup byte *is* the signal number, so the loop is
a plain ``poll`` with no races between handler and waitpid.
"""

from __future__ import annotations

import errno
from dockyard.runtime import fastos as os
import select
import _signal as signal  # not `signal`: it builds enums at import

FORWARD = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
           signal.SIGUSR2, signal.SIGCONT, signal.SIGALRM, signal.SIGPIPE, signal.SIGTSTP,
           signal.SIGTTIN, signal.SIGTTOU, signal.SIGPWR)


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def reset_in_child() -> None:
    """Undo arm() in a forked child: default dispositions, no wakeup fd."""
    signal.set_wakeup_fd(-1)
    for s in (*FORWARD, signal.SIGCHLD, signal.SIGWINCH):
        signal.signal(s, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


class Attached:
    def __init__(self, pid: int = 0, master_fd: int | None = None) -> None:
        self.pid = pid
        self.master = master_fd
        self.status: int | None = None
        self._tty_saved = None
        self._rfd: int | None = None
        self._saved: dict = {}

    def arm(self, later: tuple[int, ...] = ()) -> "Attached":
        """Catch the signals to forward *before* the process starts, so none
        is lost (or kills us) in between; they queue in the wakeup pipe.
        ``later``: signals to leave alone until :meth:`catch` (e.g. SIGPIPE
        while the runtime itself still writes to pipes)."""
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self._saved = {}
        for s in (*FORWARD, signal.SIGCHLD, signal.SIGWINCH):
            if s not in later:
                self.catch(s)
        self._rfd = r
        return self

    def catch(self, sig: int) -> None:
        """Forward ``sig`` too from now on (see :meth:`arm`'s ``later``)."""
        self._saved.setdefault(sig, signal.signal(sig, lambda *_: None))

    def disarm(self) -> None:
        """Undo :meth:`arm` (the process to attach to was never started)."""
        w = signal.set_wakeup_fd(-1)
        for s, handler in self._saved.items():
            signal.signal(s, handler)
        for fd in (self._rfd, w):
            if fd is not None and fd >= 0:
                os.close(fd)
        self._rfd = None

    def _raw_stdin(self) -> None:
        if self.master is None or not os.isatty(0):
            return
        import termios
        import tty
        self._tty_saved = termios.tcgetattr(0)
        tty.setraw(0)
        self._resize()

    def _restore(self) -> None:
        if self._tty_saved is not None:
            import termios
            termios.tcsetattr(0, termios.TCSADRAIN, self._tty_saved)

    def _resize(self) -> None:
        if self.master is None or not os.isatty(0):
            return
        from . import syscalls as sc
        try:
            sc.set_winsize(self.master, sc.get_winsize(0))
        except OSError:
            pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.status = status

    def _signals(self, rfd: int) -> None:
        try:
            data = os.read(rfd, 512)
        except BlockingIOError:
            return
        for signum in data:
            if signum == signal.SIGCHLD:
                continue
            if signum == signal.SIGWINCH:
                self._resize()
                continue
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def _copy(self, src: int, dst: int) -> bool:
        try:
            data = os.read(src, 65536)
        except OSError as e:
            if e.errno in (errno.EIO, errno.EBADF):
                return False
            raise
        if not data:
            return False
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(dst, view):]
            except BlockingIOError:
                select.select([], [dst], [])
        return True

    def wait(self) -> int:
        rfd = self._rfd if self._rfd is not None else self.arm()._rfd
        self._raw_stdin()
        try:
            return self._loop(rfd)
        finally:
            self._restore()
            signal.set_wakeup_fd(-1)

    def _loop(self, rfd: int) -> int:
        poller = select.poll()
        poller.register(rfd, select.POLLIN)
        stdin_open = self.master is not None
        if self.master is not None:
            poller.register(self.master, select.POLLIN)
            poller.register(0, select.POLLIN)
        master_open = self.master is not None
        self._reap()
        while self.status is None or master_open:
            events = poller.poll(None if self.status is None else 200)
            if not events and self.status is not None:
                break
            for fd, ev in events:
                if fd == rfd:
                    self._signals(rfd)
                elif fd == self.master:
                    if not self._copy(self.master, 1):
                        poller.unregister(self.master)
                        master_open = False
                elif fd == 0 and stdin_open:
                    if not self._copy(0, self.master):
                        poller.unregister(0)
                        stdin_open = False
                        try:
                            os.write(self.master, b"\x04")  # EOF for the canonical tty
                        except OSError:
                            pass
            self._reap()
        return exit_code(self.status)
