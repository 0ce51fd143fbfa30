"""Our CLI in a real terminal (a pty): run -it, detach keys, attach, exec -it; docker beside it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time
import uuid

import pytest

pytestmark = [pytest.mark.xdist_group("cli_tty"), pytest.mark.slow]

OURS = [sys.executable, "-m", "dockyard"]
DOCKER = ["/usr/local/bin/docker"]


class Term:
    """A command on a pty of 30 rows x 100 columns."""

    def __init__(self, argv: list[str], env: dict):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            try:
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        self.status: int | None = None
        self.out = b""

    def read_until(self, needle: bytes, timeout: float = 20) -> bytes:
        start = len(self.out)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if needle in self.out[start:]:
                break
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if r:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                self.out += data
        return self.out[start:]

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 20) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.read_until(b"\x00never", 0.2)
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(st)
                return self.status
        raise AssertionError(f"still running; output so far: {self.out!r}")

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)


@pytest.fixture
def term(daemon):
    made: list[Term] = []

    def start(argv: list[str]) -> Term:
        t = Term(argv, daemon.env)
        made.append(t)
        return t

    yield start
    for t in made:
        t.close()


PROMPT = b"/ # "


@pytest.mark.parametrize("cli", [OURS, DOCKER], ids=["dockyard", "docker"])
def test_run_it_shell(daemon, term, cli):
    t = term(cli + ["run", "-it", "--rm", "busybox", "sh"])
    assert PROMPT in t.read_until(PROMPT)
    t.send(b"ps; echo END$((1+1))\r")  # the marker only appears once ps has run
    out = t.read_until(b"END2")
    lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.strip()]
    procs = [ln for ln in lines if ln.lstrip()[:1].isdigit()]
    assert len(procs) == 2 and "PID" in out.decode(), out  # only the shell and ps
    t.send(b"stty size\r")
    assert b"30 100" in t.read_until(b"30 100")
    # the terminal changes size: SIGWINCH -> /resize
    fcntl.ioctl(t.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    for _ in range(20):
        time.sleep(0.25)
        t.send(b"stty size\r")
        if b"40 120" in t.read_until(b"40 120", 2):
            break
    else:
        pytest.fail(f"no resize: {t.out[-300:]!r}")
    t.send(b"exit 5\r")
    assert t.wait() == 5


@pytest.mark.parametrize("cli", [OURS, DOCKER], ids=["dockyard", "docker"])
def test_detach_keys_leave_it_running_then_attach(daemon, term, cli):
    name = f"det-{uuid.uuid4().hex[:8]}"
    try:
        t = term(cli + ["run", "-it", "--name", name, "busybox", "sh"])
        assert PROMPT in t.read_until(PROMPT)
        t.send(b"\x10\x11")  # ctrl-p ctrl-q
        assert t.wait() == 0
        assert b"read escape" not in t.out
        st = daemon.docker("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        assert st == "running"
        a = term(OURS + ["attach", name])
        time.sleep(0.5)
        a.send(b"echo back$((1+1))\r")
        assert b"back2" in a.read_until(b"back2")
        a.send(b"exit 4\r")
        assert a.wait() == 4
    finally:
        daemon.docker("rm", "-f", name)


def test_custom_detach_keys_and_exec_it(daemon, term):
    name = f"det-{uuid.uuid4().hex[:8]}"
    try:
        r = daemon.dockyard("run", "-d", "--name", name, "busybox", "sleep", "1000")
        assert r.returncode == 0, r.stderr
        t = term(OURS + ["exec", "-it", name, "sh"])
        assert PROMPT in t.read_until(PROMPT)
        t.send(b"stty size; echo $((6*7))\r")
        out = t.read_until(b"42")
        assert b"30 100" in out and b"42" in out
        t.send(b"exit 3\r")
        assert t.wait() == 3
        t = term(OURS + ["run", "-it", "--detach-keys", "ctrl-a,x", "--name", name + "b",
                         "busybox", "sh"])
        assert PROMPT in t.read_until(PROMPT)
        t.send(b"\x01x")
        assert t.wait() == 0
        st = daemon.docker("inspect", "--format", "{{.State.Status}}", name + "b").stdout
        assert st.strip() == "running"
    finally:
        daemon.docker("rm", "-f", name, name + "b")


def test_tty_refusals(daemon, term):
    name = f"ex-{uuid.uuid4().hex[:8]}"
    try:
        daemon.docker("create", "--name", name, "busybox")
        t = term(OURS + ["export", name])
        assert t.wait() == 1
        assert b"cowardly refusing to save to a terminal" in t.out
        # -it with stdin that is not a terminal
        r = daemon.dockyard("run", "-it", "--rm", "busybox", "true", input="")
        assert (r.returncode, r.stderr) == (1, "the input device is not a TTY\n")
    finally:
        daemon.docker("rm", "-f", name)


def test_stats_stream_redraws_the_screen(daemon, term):
    name = f"st-{uuid.uuid4().hex[:8]}"
    try:
        assert daemon.dockyard("run", "-d", "--name", name, "busybox", "sleep", "1000"
                               ).returncode == 0
        t = term(OURS + ["stats", "--format", "{{.Name}}: {{.PIDs}}", name])
        out = t.read_until(b"\x1b[H" + name.encode() + b": 1", 15)
        out += t.read_until(b"\x1b[2J\x1b[H" + name.encode() + b": 1", 15)
        assert out.count(b"\x1b[2J\x1b[H") >= 2, out
        os.kill(t.pid, signal.SIGINT)
        assert t.wait() in (0, 130)
    finally:
        daemon.docker("rm", "-f", name)


def test_start_ai_with_a_tty(daemon, term):
    name = f"sai-{uuid.uuid4().hex[:8]}"
    try:
        assert daemon.docker("create", "-it", "--name", name, "busybox", "sh").returncode == 0
        t = term(OURS + ["start", "-ai", name])
        assert PROMPT in t.read_until(PROMPT)
        t.send(b"echo hi$((2+3))\r")
        assert b"hi5" in t.read_until(b"hi5")
        t.send(b"exit 3\r")
        assert t.wait() == 3
    finally:
        daemon.docker("rm", "-f", name)
