"""The output journal: a reader of a container's pipe killed with SIGKILL at random
moments, again and again, loses no line and writes none twice."""

from __future__ import annotations

import os
import random
import select
import signal
import time

from dockyard.supervisor import jsonlog, outjournal


def _reader(rfd: int, task_dir: str, log_path: str) -> None:
    """A supervisor's reading loop, in a child process (killed at any moment)."""
    try:
        writer = jsonlog.JSONLogWriter(log_path, max_size=200000, max_file=50)
        j = outjournal.open_for(task_dir, writer)
        j.recover()
        scratch = outjournal.Scratch()
        while True:
            select.select([rfd], [], [], 1.0)
            data = j.take(rfd, 0, scratch)
            if data == b"":
                os._exit(0)
    except BaseException:
        import traceback
        traceback.print_exc()
        os._exit(3)


def _producer(wfd: int, total: int) -> None:
    rnd = random.Random(7)
    buf = b"".join(b"line %d\n" % i for i in range(1, total + 1))
    pos = 0
    while pos < len(buf):
        n = rnd.choice((1, 3, 7, 40, 200, 5000))   # lines cut anywhere
        pos += os.write(wfd, buf[pos:pos + n])
        if rnd.random() < 0.5:
            time.sleep(0.003)   # a run of a few seconds: many kills
    os._exit(0)


def test_random_kills_lose_and_repeat_nothing(tmp_path):
    total = 60000
    task_dir = str(tmp_path)
    log_path = str(tmp_path / "c-json.log")
    r, w = os.pipe()
    prod = os.fork()
    if prod == 0:
        os.close(r)
        _producer(w, total)
    os.close(w)
    os.set_blocking(r, False)
    rnd = random.Random(11)
    kills = 0
    try:
        while True:
            pid = os.fork()
            if pid == 0:
                _reader(r, task_dir, log_path)
            time.sleep(rnd.uniform(0.001, 0.03))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, status = os.waitpid(pid, 0)
            if os.WIFEXITED(status):
                assert os.WEXITSTATUS(status) == 0
                break
            kills += 1
            assert kills < 5000
    finally:
        os.close(r)
        os.waitpid(prod, 0)
    entries = jsonlog.read_entries(log_path)
    assert kills > 20
    got = [e.data for e in entries]
    want = [b"line %d\n" % i for i in range(1, total + 1)]
    if got != want:
        missing = sorted(set(want) - set(got))[:5]
        repeated = len(got) - len(set(got))
        raise AssertionError(f"{len(got)} entries of {total}; missing {missing}; "
                             f"{repeated} repeated; after {kills} kills")
    assert all(e.stream == "stdout" for e in entries)


def test_partial_line_survives_a_kill_and_ends_with_the_stream(tmp_path):
    log_path = str(tmp_path / "c-json.log")
    r, w = os.pipe()
    os.set_blocking(r, False)
    scratch = outjournal.Scratch()
    j = outjournal.open_for(str(tmp_path), jsonlog.JSONLogWriter(log_path))
    os.write(w, b"one\ntw")
    assert j.take(r, 0, scratch) == b"one\ntw"
    j.close()   # as if killed: the journal's file is all that is left
    j = outjournal.open_for(str(tmp_path), jsonlog.JSONLogWriter(log_path))
    j.recover()
    os.write(w, b"o\nthr")
    os.close(w)
    assert j.take(r, 0, scratch) == b"o\nthr"
    assert j.take(r, 0, scratch) == b""   # end of file: the partial line is written
    assert [e.data for e in jsonlog.read_entries(log_path)] == [b"one\n", b"two\n", b"thr"]
    assert j.take(r, 0, scratch) == b""   # and only once
    assert len(jsonlog.read_entries(log_path)) == 3


def test_max_file_one_rotation_makes_a_new_file(tmp_path):
    log_path = str(tmp_path / "c-json.log")
    w = jsonlog.JSONLogWriter(log_path, max_size=200, max_file=1)
    f = jsonlog.LogFollower(log_path)
    seen = []
    for i in range(30):
        w.write("stdout", b"n%d\n" % i)
        seen += [e.data for e in f.poll()]
    assert seen == [b"n%d\n" % i for i in range(30)]   # a follower sees every line
    assert os.path.getsize(log_path) <= 200
    assert not os.path.exists(log_path + ".new")
