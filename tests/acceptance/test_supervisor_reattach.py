"""Attached clients keep their stream when the supervisor is killed (kill -9) or reloaded:
the daemon re-attaches to the new supervisor (containers/reattach.py), which holds an
adopted task's output back until then (supervisor/adoption.ADOPT_GRACE). `docker run`
keeps receiving every line, `run -it` and `exec -it` shells still answer and detach,
and an exec that ended meanwhile ends its client with its exit code."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import threading
import time

import pytest

from acceptance.harness import DOCKER, Daemon
from acceptance.test_supervisor_holder import _numbers, _read_until, _state, _wait_new_supervisor

pytestmark = pytest.mark.slow

LINES = "i=0; while true; do i=$((i+1)); echo n $i; usleep 20000; done"


class _Term:
    """A docker CLI on a terminal of its own."""

    def __init__(self, argv: list[str], env: dict) -> None:
        self.master, slave = pty.openpty()
        self.p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                  start_new_session=True)
        os.close(slave)

    def ask(self, send: bytes, expect: bytes, timeout: float = 10) -> bytes:
        os.write(self.master, send)
        return _read_until(self.master, expect, timeout)

    def wait(self, timeout: float = 15) -> tuple[int | None, bytes]:
        """The CLI's exit code (None: still running) and what it wrote meanwhile."""
        got = b""
        deadline = time.monotonic() + timeout
        while self.p.poll() is None and time.monotonic() < deadline:
            got += _read_until(self.master, b"\0never\0", 0.2)
        try:
            self.p.wait(0.5)
        except subprocess.TimeoutExpired:
            pass
        got += _read_until(self.master, b"\0never\0", 0.3)   # what it wrote last
        return self.p.returncode, got

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        os.close(self.master)


class _Lines:
    """`docker run` of a container printing numbered lines, its output collected."""

    def __init__(self, d: Daemon) -> None:
        self.p = subprocess.Popen([DOCKER, "run", "--name", "lines", "busybox", "sh", "-c", LINES],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, env=d.env)
        self.buf = b""
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self) -> None:
        while data := self.p.stdout.read1(65536):
            self.buf += data

    def numbers(self) -> list[int]:
        return _numbers(self.buf.decode(errors="replace"), "n")

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        self.t.join(5)
        self.p.stdout.close()


def _wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _exec_pid(d: Daemon, container: str, nth: int) -> int:
    """The host pid of the container's ``nth`` exec, once it runs."""
    c = d.client()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            eids = json.loads(d.out("inspect", "-f", "{{json .ExecIDs}}", container)) or []
            pid = c.api.exec_inspect(eids[nth])["Pid"] if len(eids) > nth else 0
            if pid > 1:
                return pid
            time.sleep(0.1)
        raise AssertionError(f"exec {nth} of {container} did not start\n{d.log_text()}")
    finally:
        c.close()


@pytest.mark.parametrize("how", ["kill9", "reload"])
def test_attached_clients_keep_their_stream_across_a_new_supervisor(fresh_daemon, how):
    d = fresh_daemon
    d.docker("run", "-d", "--name", "tgt", "busybox", "sleep", "1000")
    lines = _Lines(d)
    sh = _Term([DOCKER, "run", "-it", "--name", "sh", "busybox", "sh"], d.env)
    ex = _Term([DOCKER, "exec", "-it", "tgt", "sh"], d.env)
    ended = None
    holder = d.holder_pid()
    stopped = False
    try:
        _wait_for(lambda: len(lines.numbers()) > 20, 20, "no lines from docker run")
        assert b"a-3" in sh.ask(b"echo a-$((1+2))\r", b"a-3")
        assert b"b-4" in ex.ask(b"echo b-$((2+2))\r", b"b-4")
        if how == "kill9":   # an exec that ends while no supervisor runs
            ended = _Term([DOCKER, "exec", "-i", "tgt", "sh", "-c", "read x"], d.env)
            exec_pid = _exec_pid(d, "tgt", 1)
        old = d.supervisor_pid()
        before = lines.numbers()[-1]
        if how == "kill9":
            # the holder stopped: the gap lasts (the output waits in the pipes), and the
            # exec ends in it
            os.kill(holder, signal.SIGSTOP)
            stopped = True
            os.kill(old, signal.SIGKILL)
            time.sleep(0.5)
            os.kill(exec_pid, signal.SIGKILL)
            # typed while no supervisor runs: the daemon keeps it for the re-attach
            os.write(sh.master, b"echo gap-$((7*7))\r")
            time.sleep(1.5)
            os.kill(holder, signal.SIGCONT)
            stopped = False
        else:
            os.kill(holder, signal.SIGHUP)
        _wait_new_supervisor(d, old)

        # docker run goes on receiving, every line (what was printed in the gap too)
        _wait_for(lambda: lines.numbers()[-1] > before + 100, 20,
                  f"docker run's output stopped at {lines.numbers()[-1]} (kill at {before})\n"
                  f"{d.log_text()}")
        got = lines.numbers()
        assert got == list(range(got[0], got[-1] + 1)), [
            (a, b) for a, b in zip(got, got[1:]) if b != a + 1]
        logged = _numbers(d.docker("logs", "lines").stdout, "n")
        assert set(got) <= set(logged)

        if how == "kill9":
            assert b"gap-49" in _read_until(sh.master, b"gap-49", 10), d.log_text()
        # the shells still answer, then detach (ctrl-p ctrl-q) and exit
        assert b"c-6" in sh.ask(b"echo c-$((3+3))\r", b"c-6"), d.log_text()
        assert b"d-8" in ex.ask(b"echo d-$((4+4))\r", b"d-8"), d.log_text()
        os.write(sh.master, b"\x10\x11")
        code, out = sh.wait()
        assert code == 0, (code, out)   # docker run -it detached, as with dockerd
        assert _state(d, "sh")["Status"] == "running"
        os.write(ex.master, b"exit 5\r")
        code, out = ex.wait()
        assert code == 5, (code, out)
        if ended is not None:   # its exit code, as if no supervisor had been replaced
            code, out = ended.wait()
            assert code == 137, (code, out, d.log_text())
        # a new session works as well, and docker run still runs
        again = _Term([DOCKER, "attach", "sh"], d.env)
        try:
            time.sleep(1)
            assert b"e-10" in again.ask(b"echo e-$((5+5))\r", b"e-10")
            os.write(again.master, b"\x10\x11")
            code, out = again.wait()
            assert code == 1 and b"read escape sequence" in out, (code, out)
        finally:
            again.close()
        assert lines.p.poll() is None
    finally:
        if stopped:
            os.kill(holder, signal.SIGCONT)
        for t in (sh, ex, ended):
            if t is not None:
                t.close()
        lines.close()


def _raw_attach(d: Daemon, name: str) -> socket.socket:
    """An API attach (stdout, stream) on a socket of ours, past its 101."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(d.sock))
    s.sendall(f"POST /containers/{name}/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: d\r\n"
              "Upgrade: tcp\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = s.recv(1)
        assert data, head
        head += data
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def _read_some(s: socket.socket, timeout: float) -> bytes | None:
    """What arrives within ``timeout``: b"" at its end, None if nothing came."""
    r, _, _ = select.select([s], [], [], timeout)
    return s.recv(65536) if r else None


def test_a_stream_waiting_for_a_new_supervisor_ends_when_the_daemon_stops(fresh_daemon):
    """While no supervisor runs (its holder stopped), the daemon keeps the client's
    stream open, re-attaching; a SIGTERM to the daemon ends it at once."""
    d = fresh_daemon
    d.docker("run", "-d", "--name", "lines", "busybox", "sh", "-c", LINES)
    s = _raw_attach(d, "lines")
    holder = d.holder_pid()
    os.kill(holder, signal.SIGSTOP)
    try:
        assert _read_some(s, 5)   # output flows
        os.kill(d.supervisor_pid(), signal.SIGKILL)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:   # what was in flight, then nothing: still open
            got = _read_some(s, 0.2)
            assert got != b"", "the stream ended with the supervisor"
        d.proc.terminate()
        t = time.monotonic()
        while (got := _read_some(s, 5)) not in (b"", None):
            pass
        assert got == b"" and time.monotonic() - t < 3, (got, time.monotonic() - t)
    finally:
        os.kill(holder, signal.SIGCONT)
        s.close()


def test_a_detached_exec_that_ends_while_no_supervisor_runs_gets_its_exit_code(fresh_daemon):
    """Its exit event went out before the daemon subscribed again: the daemon reads it
    from the new supervisor's task list."""
    d = fresh_daemon
    d.docker("run", "-d", "--name", "tgt", "busybox", "sleep", "1000")
    d.docker("exec", "-d", "tgt", "sleep", "500")
    pid = _exec_pid(d, "tgt", 0)
    eid = json.loads(d.out("inspect", "-f", "{{json .ExecIDs}}", "tgt"))[0]
    holder, old = d.holder_pid(), d.supervisor_pid()
    os.kill(holder, signal.SIGSTOP)
    try:
        os.kill(old, signal.SIGKILL)
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        time.sleep(1)
    finally:
        os.kill(holder, signal.SIGCONT)
    _wait_new_supervisor(d, old)
    c = d.client()
    try:
        deadline = time.monotonic() + 15
        while c.api.exec_inspect(eid)["Running"] and time.monotonic() < deadline:
            time.sleep(0.2)
        ex = c.api.exec_inspect(eid)
    finally:
        c.close()
    assert (ex["Running"], ex["ExitCode"]) == (False, 137), (ex, d.log_text())
