"""The CLI's side of a hijacked stream (attach, exec, run): terminal, pumps, signals.

    with RawTerminal(enabled=tty and stdin):     # raw mode, restored even on errors
        result = pump(hijacked, tty=..., stdin=..., detach_keys=b"\\x10\\x11")

Without a tty the daemon's output is multiplexed (8-byte frames, demultiplexed with
the client's sans-IO FrameDecoder) to our stdout and stderr; with a tty it is
raw. Piped stdin is half-closed at EOF so the daemon knows the input is done.
"""

from __future__ import annotations

import _signal as signal  # the C module: no enum classes to build at startup
import _socket
import os
import sys
import threading

from dockyard.detachkeys import DEFAULT_DETACH_KEYS, DetachScanner, parse_detach_keys  # noqa: F401

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


class EscapeScanner(DetachScanner):
    """The CLI forwards the detach sequence to the daemon, which acts on it."""

    def __init__(self, keys: bytes) -> None:
        super().__init__(keys, keep_keys=True)


class RawTerminal:
    """Put a terminal fd in raw mode for the duration; restores it even on errors."""

    def __init__(self, fd: int = 0, enabled: bool = True) -> None:
        self.fd = fd
        self.enabled = enabled and os.isatty(fd)
        self._saved = None

    def __enter__(self) -> "RawTerminal":
        if self.enabled:
            import termios
            import tty

            self._saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd, termios.TCSANOW)
        return self

    def restore(self) -> None:
        if self._saved is not None:
            import termios

            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            except termios.error:
                pass
            self._saved = None

    def __exit__(self, *exc) -> None:
        self.restore()


def terminal_size(fd: int = 1) -> tuple[int, int]:
    """(height, width) of the terminal on fd, (0, 0) when it is not one."""
    try:
        sz = os.get_terminal_size(fd)
        return sz.lines, sz.columns
    except OSError:
        return 0, 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError:
            return  # a closed stdout must not stop the stream
        view = view[n:]


def pump(h, tty: bool, stdin: bool, detach_keys: bytes | None = DEFAULT_DETACH_KEYS,
         in_fd: int = 0, out_fd: int = 1, err_fd: int = 2,
         on_start: Callable[[], None] | None = None) -> str:
    """Copy a hijacked connection to our stdio until the output ends.

    Returns ``"eof"`` when the daemon ended the stream, ``"detached"`` when the
    user typed the detach keys (tty and stdin only, as docker)."""
    from dockyard.streamframes import FrameDecoder

    sock = h.sock
    out_done = threading.Event()
    detached = threading.Event()

    def output() -> None:
        dec = None if tty else FrameDecoder()
        try:
            data = h.buffered
            while True:
                if data:
                    if dec is None:
                        _write_all(out_fd, data)
                    else:
                        for stream, payload in dec.feed(data):
                            _write_all(err_fd if stream == 2 else out_fd, payload)
                data = sock.recv(65536)
                if not data:
                    return
        except Exception:  # noqa: BLE001 - a broken stream ends like a closed one
            return
        finally:
            out_done.set()

    def inp() -> None:
        scanner = EscapeScanner(detach_keys or b"") if tty else None
        try:
            while True:
                try:
                    data = os.read(in_fd, 32768)
                except InterruptedError:
                    continue
                if not data:
                    break
                hit = False
                if scanner is not None:
                    data, hit = scanner.feed(data)
                if hit:
                    # set first: the daemon sees the keys too and may end the stream at once
                    detached.set()
                if data:
                    sock.sendall(data)
                if hit:
                    return
            sock.shutdown(_socket.SHUT_WR)  # stdin is done; output keeps coming
        except OSError:
            pass

    t_out = threading.Thread(target=output, daemon=True)
    t_out.start()
    if stdin:
        threading.Thread(target=inp, daemon=True).start()
    if on_start is not None:
        on_start()
    while not out_done.is_set():
        if detached.is_set():
            # the daemon saw the keys too: give it a moment to end the stream cleanly
            out_done.wait(2)
            h.close()
            return "detached"
        out_done.wait(0.2)
    return "detached" if detached.is_set() else "eof"


# signals a `run`/`attach` without a tty forwards to the container (docker's sig-proxy)
PROXIED = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM",
           "SIGCONT", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGVTALRM", "SIGPROF", "SIGIO",
           "SIGPWR", "SIGSYS", "SIGXCPU", "SIGXFSZ")


class SignalProxy:
    """While active, signals we receive are sent to the container with ``kill``."""

    def __init__(self, send: Callable[[int], None], enabled: bool = True) -> None:
        self.send = send
        self.enabled = enabled
        self._old: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        threading.Thread(target=self._send, args=(signum,), daemon=True).start()

    def _send(self, signum: int) -> None:
        try:
            self.send(signum)
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self) -> "SignalProxy":
        if self.enabled and threading.current_thread() is threading.main_thread():
            for name in PROXIED:
                sig = getattr(signal, name, None)
                if sig is None:
                    continue
                try:
                    self._old[sig] = signal.signal(sig, self._handler)
                except (OSError, ValueError):
                    pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            try:
                signal.signal(sig, old)  # type: ignore[arg-type]
            except (OSError, ValueError, TypeError):
                pass
        self._old.clear()


class ResizeOnWinch:
    """Sends the terminal size now and on every SIGWINCH."""

    def __init__(self, resize: Callable[[int, int], None], enabled: bool = True,
                 fd: int = 1, nudge: bool = False) -> None:
        self.resize = resize
        self.enabled = enabled and os.isatty(fd)
        self.fd = fd
        self.nudge = nudge  # attach: h+1,w+1 first so a same-size terminal still redraws
        self._old = None

    def send(self) -> None:
        h, w = terminal_size(self.fd)
        if h or w:
            try:
                self.resize(h, w)
            except Exception:  # noqa: BLE001 - a failed resize is not fatal
                pass

    def __enter__(self) -> "ResizeOnWinch":
        if self.enabled:
            if self.nudge:
                h, w = terminal_size(self.fd)
                if h or w:
                    try:
                        self.resize(h + 1, w + 1)
                    except Exception:  # noqa: BLE001
                        pass
            self.send()
            if threading.current_thread() is threading.main_thread():
                self._old = signal.signal(
                    signal.SIGWINCH,
                    lambda s, f: threading.Thread(target=self.send, daemon=True).start())
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGWINCH, self._old)  # type: ignore[arg-type]
            self._old = None


def stdin_is_tty() -> bool:
    return sys.stdin is not None and os.isatty(0)
