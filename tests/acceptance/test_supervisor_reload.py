"""Reloading the supervisor in place (an upgrade: `systemctl reload dockyard-supervisor`,
`dockyard supervisor --root DIR --reload`, SIGHUP to its holder): the holder stops the
supervisor cleanly and starts a new one at once, and keeps, meanwhile, what it holds.
The containers notice nothing: no tty hangs up, no exit code is lost (an exit between
the two supervisors is reaped by the holder), stdin still reaches them, every log line
is there once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from acceptance.harness import Daemon
from acceptance.test_supervisor_holder import (LOGGER, _alive, _contiguous, _logs, _numbers,
                                               _state, _ttys_and_stdin_still_work,
                                               _wait_new_supervisor, exiter)

pytestmark = pytest.mark.slow


def _dockyard_supervisor(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dockyard", "supervisor", *args],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not _alive(pid), f"process {pid} did not end"


def test_reload_keeps_ttys_stdin_exit_codes_and_every_line(fresh_daemon):
    d = fresh_daemon
    d.docker("run", "-d", "--name", "log", "busybox", "sh", "-c", LOGGER)
    d.docker("run", "-d", "-t", "--name", "tlog", "busybox", "sh", "-c", LOGGER)
    d.docker("run", "-d", "-i", "-t", "--name", "tsh", "busybox", "sh")
    d.docker("run", "-d", "-i", "--name", "in", "busybox", "sh", "-c",
             "while read l; do echo got $l; done; echo eof; exit 3")
    d.docker("run", "-d", "--name", "x7", "busybox", "sh", "-c", exiter(7))
    time.sleep(1)
    x7 = _state(d, "x7")["Pid"]
    holder, old = d.holder_pid(), d.supervisor_pid()
    assert holder and old

    # x7 ends between the two supervisors: stopped with a SIGTERM pending, it goes on
    # once the old supervisor is gone (its parent is then the holder, not yet a new
    # supervisor; with no holder it would be init's, and its exit code 255)
    os.kill(x7, signal.SIGSTOP)
    try:
        os.kill(x7, signal.SIGTERM)
        os.kill(holder, signal.SIGHUP)
        _wait_gone(old)
    finally:
        os.kill(x7, signal.SIGCONT)
    new = _wait_new_supervisor(d, old)
    assert d.holder_pid() == holder
    time.sleep(1.5)

    s = _state(d, "x7")
    assert (s["Status"], s["ExitCode"]) == ("exited", 7), (s, d.log_text())
    assert d.out("wait", "x7", timeout=10) == "7"
    out, _ = _logs(d, "x7")
    assert _contiguous(_numbers(out, "seq")) and out.splitlines()[-1].strip() == "bye", out[-300:]
    for name in ("log", "tlog", "tsh", "in"):   # a tty's hang-up would have ended tlog and tsh
        assert _state(d, name)["Status"] == "running", (name, d.log_text())

    _ttys_and_stdin_still_work(d)

    # every line, before, across and after the reload, once
    for name in ("log", "tlog"):
        seqs = _numbers(_logs(d, name)[0], "seq")
        assert _contiguous(seqs) and len(seqs) > 400, (name, seqs[:3], len(seqs))
    assert d.supervisor_pid() == new and d.holder_pid() == holder


def test_reload_command(fresh_daemon, tmp_path):
    d = fresh_daemon
    root = str(d.data / "supervisor")
    d.docker("run", "-d", "-t", "--name", "tlog", "busybox", "sh", "-c", LOGGER)
    holder, old = d.holder_pid(), d.supervisor_pid()
    r = _dockyard_supervisor("--root", root, "--reload")
    assert r.returncode == 0, (r.stdout, r.stderr)
    new = d.supervisor_pid()
    assert new not in (None, old) and d.holder_pid() == holder
    assert f"pid {new}" in r.stdout, r.stdout
    # twice in a row: the second one waits for a supervisor newer than the first one's
    r = _dockyard_supervisor("--root", root, "--reload")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert d.supervisor_pid() not in (None, old, new) and d.holder_pid() == holder
    assert _state(d, "tlog")["Status"] == "running"
    seqs = _numbers(_logs(d, "tlog")[0], "seq")
    assert _contiguous(seqs) and len(seqs) > 50, (seqs[:3], len(seqs))


def test_reload_command_without_a_holder(tmp_path):
    r = _dockyard_supervisor("--root", str(tmp_path / "nothing"), "--reload")
    assert r.returncode == 1
    assert "no supervisor holder runs for" in r.stderr and str(tmp_path / "nothing") in r.stderr, \
        r.stderr
    assert not (tmp_path / "nothing").exists()   # nothing made on the way
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / "holder.lock").write_text(f"{os.getpid()}\n")   # no lock held
    r = _dockyard_supervisor("--root", str(tmp_path / "stale"), "--reload")
    assert r.returncode == 1 and "no supervisor holder runs for" in r.stderr, r.stderr


def test_reload_then_sigterm_stops_both(fresh_daemon):
    """A SIGTERM to the holder still ends it and its supervisor after a reload."""
    d: Daemon = fresh_daemon
    holder, old = d.holder_pid(), d.supervisor_pid()
    os.kill(holder, signal.SIGHUP)
    new = _wait_new_supervisor(d, old)
    os.kill(holder, signal.SIGTERM)
    _wait_gone(holder)
    _wait_gone(new)
