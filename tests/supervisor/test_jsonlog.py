"""json-file logs: Docker's line format, rotation by size, readers and followers."""

from __future__ import annotations

import json

from dockyard.supervisor import jsonlog
from dockyard.supervisor.protocol import FrameDecoder, LineDecoder, frame


def test_lines_become_entries_and_partials_wait(tmp_path):
    p = str(tmp_path / "c-json.log")
    w = jsonlog.JSONLogWriter(p)
    w.write("stdout", b"a\nb", now_ns=1_700_000_000_123_456_789)
    w.write("stdout", b"c\n")
    w.write("stderr", b"tail-without-newline")
    w.close()
    lines = [json.loads(x) for x in open(p)]
    assert lines[0] == {"log": "a\n", "stream": "stdout", "time": "2023-11-14T22:13:20.123456789Z"}
    assert [x["log"] for x in lines] == ["a\n", "bc\n", "tail-without-newline"]


def test_rotation_caps_disk_use(tmp_path):
    p = str(tmp_path / "c-json.log")
    w = jsonlog.JSONLogWriter(p, max_size=2000, max_file=3)
    for i in range(1000):
        w.write("stdout", f"line {i}\n".encode())
    w.close()
    files = jsonlog.log_files(p)
    assert len(files) == 3
    assert all((tmp_path / f).stat().st_size <= 2000 for f in files)
    entries = jsonlog.read_entries(p)
    assert entries[-1].data == b"line 999\n"
    nums = [int(e.data.split()[1]) for e in entries]
    assert nums == sorted(nums) and nums[0] > 0  # oldest lines were dropped, order kept


def test_tail_since_until(tmp_path):
    p = str(tmp_path / "c-json.log")
    w = jsonlog.JSONLogWriter(p)
    for i in range(5):
        w.write("stdout", f"{i}\n".encode(), now_ns=(i + 1) * 1_000_000_000)
    w.close()
    assert [e.data for e in jsonlog.read_entries(p, tail=2)] == [b"3\n", b"4\n"]
    assert jsonlog.read_entries(p, tail=0) == []
    got = jsonlog.read_entries(p, since_ns=2_000_000_000, until_ns=3_000_000_000)
    assert [e.data for e in got] == [b"1\n", b"2\n"]


def test_follower_sees_appends_across_rotation(tmp_path):
    p = str(tmp_path / "c-json.log")
    w = jsonlog.JSONLogWriter(p, max_size=300, max_file=2)
    w.write("stdout", b"before\n")
    f = jsonlog.LogFollower(p)
    seen = []
    for i in range(20):
        w.write("stdout", f"n{i}\n".encode())
        seen += [e.data for e in f.poll()]
    assert seen == [f"n{i}\n".encode() for i in range(20)]


def test_parse_size_and_time_roundtrip():
    assert jsonlog.parse_size("10m") == 10 << 20 and jsonlog.parse_size("1k") == 1024
    for bad in ("x", "-1", "0"):
        try:
            jsonlog.parse_size(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    ns = 1_700_000_000_000_000_001
    assert jsonlog.parse_rfc3339nano(jsonlog.rfc3339nano(ns)) == ns
    assert jsonlog.parse_rfc3339nano("2023-11-14T23:13:20+01:00") == 1_700_000_000 * 10**9


def test_frames_and_lines_roundtrip_in_pieces():
    data = frame(1, b"hello") + frame(2, b"") + frame(2, b"x" * 70000)
    dec = FrameDecoder()
    out = []
    for i in range(0, len(data), 7):
        out += dec.feed(data[i:i + 7])
    assert out == [(1, b"hello"), (2, b""), (2, b"x" * 70000)] and dec.pending == 0
    ld = LineDecoder()
    assert ld.feed(b'{"a":1}\n{"b"') == [{"a": 1}]
    assert ld.feed(b':2}\nraw') == [{"b": 2}] and ld.rest() == b"raw"
