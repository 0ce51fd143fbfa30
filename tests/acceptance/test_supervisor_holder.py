"""Nothing is lost when the supervisor is killed (issue 16): its holder (its parent,
supervisor/holder.py) reaps the containers while no supervisor runs and records their
true exit codes, keeps the output FIFOs, the pty masters and the stdin pipes open, and
hands them to the replacement; every line is in `docker logs`, ttys and stdin still
work."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time

import pytest

from acceptance.harness import DOCKER, Daemon

pytestmark = pytest.mark.slow

LOOP = "i=0; while true; do i=$((i+1)); echo seq $i; {err}usleep 5000; done"
LOGGER = LOOP.format(err="")
BOTH = LOOP.format(err="echo err $i >&2; ")


def exiter(code: int) -> str:
    return f"trap 'echo bye; exit {code}' TERM; " + LOGGER


def _numbers(text: str, word: str) -> list[int]:
    return [int(line.split()[1]) for line in text.splitlines() if line.startswith(word + " ")]


def _logs(d: Daemon, name: str) -> tuple[str, str]:
    r = d.docker("logs", name)
    return r.stdout, r.stderr


def _contiguous(nums: list[int]) -> bool:
    """Every line from 1 on, in order, none missing, none repeated: what a killed
    supervisor had taken from a pipe but not yet written is in its output journal."""
    return nums == list(range(1, len(nums) + 1))


def _wait_new_supervisor(d: Daemon, old: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = d.supervisor_pid()
        if pid not in (None, old):
            return pid
        time.sleep(0.1)
    raise AssertionError(f"no new supervisor\n{d.log_text()}")


def _state(d: Daemon, name: str) -> dict:
    return json.loads(d.out("inspect", name))[0]["State"]


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while needle not in got and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                got += os.read(fd, 65536)
            except OSError:
                break
    return got


def _on_a_pty(argv: list[str], env: dict, send: bytes, expect: bytes) -> bytes:
    """Run the docker CLI on a terminal of its own, type ``send``, read until ``expect``."""
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                         start_new_session=True)
    os.close(slave)
    try:
        time.sleep(1)   # attached
        os.write(master, send)
        return _read_until(master, expect, 10)
    finally:
        p.kill()
        p.wait()
        os.close(master)


def _ttys_and_stdin_still_work(d: Daemon) -> None:
    """exec -t and exec -it into "tlog", attach to the shell "tsh", and stdin still
    reaches "in" (which echoes `got <line>`)."""
    r = d.docker("exec", "-t", "tlog", "echo", "exec-ok")
    assert "exec-ok" in r.stdout
    got = _on_a_pty([DOCKER, "exec", "-it", "tlog", "sh"], d.env,
                    b"echo it-$((40+2))\r", b"it-42")
    assert b"it-42" in got, got
    got = _on_a_pty([DOCKER, "attach", "tsh"], d.env, b"echo ok-$((2+3))\r", b"ok-5")
    assert b"ok-5" in got, got
    p = subprocess.Popen([DOCKER, "attach", "in"], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=d.env)
    try:
        time.sleep(1)
        p.stdin.write(b"hello\n")
        p.stdin.flush()
        deadline = time.monotonic() + 10
        while "got hello" not in _logs(d, "in")[0] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "got hello" in _logs(d, "in")[0]
    finally:
        p.kill()
        p.wait()
    assert _state(d, "in")["Status"] == "running"


def test_kill9_of_the_supervisor_loses_no_line_no_exit_code_no_tty_no_stdin(fresh_daemon):
    d = fresh_daemon
    for name in ("log0", "log1", "log2"):
        d.docker("run", "-d", "--name", name, "busybox", "sh", "-c", LOGGER)
    d.docker("run", "-d", "--name", "both", "busybox", "sh", "-c", BOTH)
    d.docker("run", "-d", "--name", "x11", "busybox", "sh", "-c", exiter(11))
    d.docker("run", "-d", "--name", "x12", "busybox", "sh", "-c", exiter(12))
    d.docker("run", "-d", "-t", "--name", "tlog", "busybox", "sh", "-c", LOGGER)
    d.docker("run", "-d", "-t", "--name", "tx13", "busybox", "sh", "-c", exiter(13))
    d.docker("run", "-d", "-i", "-t", "--name", "tsh", "busybox", "sh")
    d.docker("run", "-d", "-i", "--name", "in", "busybox", "sh", "-c",
             "while read l; do echo got $l; done; echo eof; exit 3")
    time.sleep(1)
    exiting = {n: _state(d, n)["Pid"] for n in ("x11", "x12", "tx13")}

    # kill -9 the supervisor while no new one can start (its holder is stopped), and
    # end three containers meanwhile
    holder = d.holder_pid()
    old = d.supervisor_pid()
    if holder:
        os.kill(holder, signal.SIGSTOP)
    try:
        os.kill(old, signal.SIGKILL)
        time.sleep(0.5)
        for pid in exiting.values():
            os.kill(pid, signal.SIGTERM)
        time.sleep(2)
    finally:
        if holder:
            os.kill(holder, signal.SIGCONT)
    new = _wait_new_supervisor(d, old)
    time.sleep(1)
    # a second kill, the holder running: a replacement at once, from the same holder
    os.kill(new, signal.SIGKILL)
    _wait_new_supervisor(d, new)
    assert d.holder_pid() == holder
    time.sleep(1.5)

    # the true exit codes, seen by docker wait too
    for name, code in (("x11", 11), ("x12", 12), ("tx13", 13)):
        s = _state(d, name)
        assert (s["Status"], s["ExitCode"]) == ("exited", code), (name, s, d.log_text())
        assert d.out("wait", name, timeout=10) == str(code)
    for name in ("log0", "log1", "log2", "both", "tlog", "tsh", "in"):
        assert _state(d, name)["Status"] == "running", name

    # every line, before, across and after the kills
    for name in ("log0", "log1", "log2", "both", "tlog"):
        out, err = _logs(d, name)
        seqs = _numbers(out, "seq")
        assert _contiguous(seqs) and len(seqs) > 600, (name, seqs[:3], len(seqs))
        if name == "both":
            errs = _numbers(err, "err")
            assert _contiguous(errs) and len(errs) > 600, (name, errs[:3], len(errs))
    for name in ("x11", "x12", "tx13"):
        out, _ = _logs(d, name)
        seqs = _numbers(out, "seq")
        assert _contiguous(seqs) and len(seqs) > 100, (name, len(seqs))
        assert out.splitlines()[-1].strip() == "bye", (name, out[-200:])

    _ttys_and_stdin_still_work(d)


# each line in two writes (the number after the word): lines cut across the kills
# (bursts of 200 lines, 10 ms apart: a run of 5 s at least, so that the kills land in it)
BURST = ("i=0; while [ $i -lt {n} ]; do i=$((i+1)); printf 'seq '; echo $i; "
         "{err}[ $((i % 200)) = 0 ] && usleep 10000; done; echo end")


def test_fast_output_across_many_supervisor_kills_is_whole(fresh_daemon):
    """Containers writing as fast as they can, half lines included, while the supervisor
    is killed again and again: every line once, in order, tty or not."""
    d = fresh_daemon
    n = 100000
    big = ["--log-opt", "max-size=200m"]   # rotation must not drop the first lines
    d.docker("run", "-d", *big, "--name", "fast", "busybox", "sh", "-c", BURST.format(n=n, err=""))
    d.docker("run", "-d", *big, "--name", "fast2", "busybox", "sh", "-c",
             BURST.format(n=n, err="echo err $i >&2; "))
    d.docker("run", "-d", *big, "-t", "--name", "tfast", "busybox", "sh", "-c",
             BURST.format(n=n, err=""))
    kills = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = [_state(d, name)["Status"] for name in ("fast", "fast2", "tfast")]
        if all(s == "exited" for s in states):
            break
        old = d.supervisor_pid()
        if old and kills < 5:   # the holder waits 0, 1, 2, 4 s before each restart
            time.sleep(0.05 + 0.1 * (kills % 3))
            os.kill(old, signal.SIGKILL)
            kills += 1
            _wait_new_supervisor(d, old)
        else:
            time.sleep(0.5)
    assert kills >= 4, kills
    for name in ("fast", "fast2", "tfast"):
        s = _state(d, name)
        assert (s["Status"], s["ExitCode"]) == ("exited", 0), (name, s)
        out, err = _logs(d, name)
        seqs = _numbers(out, "seq")
        assert _contiguous(seqs) and len(seqs) == n, (name, len(seqs), kills, _gap(seqs))
        assert out.splitlines()[-1].strip() == "end", (name, out[-100:])
        if name == "fast2":
            errs = _numbers(err, "err")
            assert _contiguous(errs) and len(errs) == n, (name, len(errs), _gap(errs))


def _gap(nums: list[int]) -> str:
    for i, (a, b) in enumerate(zip(nums, nums[1:])):
        if b != a + 1:
            return f"at {i}: {a} -> {b}"
    return "none"


def test_the_holder_ends_with_its_supervisor(fresh_daemon):
    """A holder that keeps nothing goes with a killed supervisor (the daemon starts a
    new pair); a stopped supervisor ends its holder; no process is left behind."""
    d = fresh_daemon
    holder, old = d.holder_pid(), d.supervisor_pid()
    assert holder and old
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(holder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(holder)
    d.docker("run", "--rm", "busybox", "true")       # a new supervisor and holder
    holder2, sup2 = d.holder_pid(), d.supervisor_pid()
    assert holder2 and holder2 != holder and sup2 != old
    os.kill(sup2, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while (_alive(holder2) or _alive(sup2)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(holder2) and not _alive(sup2)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
