"""json-file logs: Docker's line format, rotation by size, readers and followers."""

from __future__ import annotations

import json
import os

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


# ---- the read side: parsing, --tail from the end, batches, followers ----------------------

def _old_parse_time(s: str) -> int:
    """parse_rfc3339nano as it was (time.strptime): the behaviour to keep."""
    import calendar
    import time

    s = s.strip()
    offset = 0
    if s.endswith("Z"):
        s = s[:-1]
    elif len(s) > 6 and s[-6] in "+-" and s[-3] == ":":
        sign = 1 if s[-6] == "+" else -1
        offset = sign * (int(s[-5:-3]) * 3600 + int(s[-2:]) * 60)
        s = s[:-6]
    frac_ns = 0
    if "." in s:
        s, frac = s.split(".", 1)
        frac_ns = int((frac + "000000000")[:9])
    return (calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%S")) - offset) * 10**9 + frac_ns


def _outcome(fn, s):
    try:
        return fn(s)
    except ValueError:
        return "ValueError"


def test_parse_rfc3339nano_as_strptime_did():
    import random

    rnd = random.Random(7)
    cases = ["2023-11-14T22:13:20Z", "2023-11-14T22:13:20.1Z", "2023-11-14T23:13:20+01:00",
             "2023-11-14T20:43:20.000000001-01:30", "0001-01-01T00:00:00Z", "1969-12-31T23:59:59.5Z",
             "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2023-04-31T00:00:00Z",
             "2023-13-01T00:00:00Z", "2023-00-01T00:00:00Z", "2023-01-00T00:00:00Z",
             "2023-11-14T24:00:00Z", "2023-11-14T22:60:00Z", "2023-11-14T22:13:60Z",
             "2023-11-14T22:13:61Z", "0000-01-01T00:00:00Z", " 2023-11-14T22:13:20Z\n",
             "2023-1-5T1:2:3Z", "2023-11-14t22:13:20Z", "2023-11-14T22:13:20.1234567891Z",
             "2023-11-14T22:13:20.Z", "2023-11-14T22:13:20.1x2Z", "2023-11-14T22:13:20",
             "2023-11-14T22:13:20+0100", "2023-11-14 22:13:20Z", "", "Z", "garbage",
             "9999-12-31T23:59:59.999999999Z"]
    for _ in range(3000):
        cases.append(jsonlog.rfc3339nano(rnd.randrange(-(10**19), 10**20)))
    for s in cases:
        assert _outcome(jsonlog.parse_rfc3339nano, s) == _outcome(_old_parse_time, s), s


def test_timestamps_as_docker_logs_t_prints_them():
    # dockerd 20.10 (checked): the stored time with nine digits of fraction
    f = jsonlog.rfc3339nano_fixed
    assert f("2026-12-07T03:06:04.68645249Z") == "2026-12-07T03:06:04.686452490Z"
    assert f("2026-12-07T03:06:04Z") == "2026-12-07T03:06:04.000000000Z"
    assert f("2026-12-07T03:06:04.686174836Z") == "2026-12-07T03:06:04.686174836Z"
    assert f("2023-11-14T23:13:20.5+01:00") == "2023-11-14T23:13:20.500000000+01:00"


def _old_read(path: str, since_ns: int = 0, until_ns: int = 0, tail: int = -1) -> list:
    """read_entries as it was (json.loads of every line, every time parsed): the
    output to keep."""
    out = []
    for f in jsonlog.log_files(path):
        with open(f, "rb") as fh:
            for line in fh:
                try:
                    obj = json.loads(line)
                    t = obj["time"]
                    e = (obj.get("stream", "stdout"), obj["log"].encode(), _old_parse_time(t), t)
                except (ValueError, KeyError, TypeError):
                    continue
                if (since_ns and e[2] < since_ns) or (until_ns and e[2] > until_ns):
                    continue
                out.append(e)
    if tail >= 0:
        out = out[-tail:] if tail else []
    return out


def _mixed_log(p: str, seed: int, max_size: int) -> None:
    import random

    rnd = random.Random(seed)
    w = jsonlog.JSONLogWriter(p, max_size=max_size, max_file=1000)   # nothing dropped
    t = 1_700_000_000_000_000_000
    for i in range(400):
        t += rnd.choice([0, 1, 1000, 10**9, 123456789, 86400 * 10**9 * 13])
        c = rnd.random()
        data = (f"line {i}\n".encode() if c < 0.5 else
                "ünï €😀 \"q\" \\ \t\x01\x7f\n".encode() if c < 0.6 else
                b"\xff\xfe not utf-8\n" if c < 0.7 else
                b"x" * rnd.randint(1, 40000) if c < 0.75 else   # partial messages
                b"\r\n" if c < 0.8 else f"part{i}".encode())
        w.write(rnd.choice(["stdout", "stderr"]), data, now_ns=t)
        if rnd.random() < 0.03:
            w.flush_partial()
    w.close()
    with open(p, "ab") as f:   # other writers' lines, odd ones, and a torn last line
        f.write(b'{"stream":"stderr","log":"foreign\\n","time":"2023-11-14T23:13:20+01:00"}\n'
                b'{"log":"attrs\\n","stream":"stdout","attrs":{"a":"b"},"time":"2023-11-14T22:13:20.5Z"}\n'
                b'\n{"log":"x\\u00e9\\ud83d\\ude00","stream":"stdout","time":"2023-11-14T22:13:20.000000001Z"}\n'
                b'{"log":"bad month\\n","stream":"stdout","time":"2023-13-14T22:13:20Z"}\n'
                b'{"log":"feb 30\\n","stream":"stdout","time":"2023-02-30T22:13:20Z"}\n'
                b'{"log":"feb 29\\n","stream":"stdout","time":"2024-02-29T22:13:20Z"}\n'
                b'{"log":"tab in time\\n","stream":"stdout","time":"2023-11-14T22:13:20Z\t"}\n'
                b'{"log":"escaped time\\n","stream":"stdout","time":"2023-11-14T22:13:2\\u0030Z"}\n'
                b'{"log":"raw ctl \x01","stream":"stdout","time":"2023-11-14T22:13:20Z"}\n'
                b'{"log":"lone \\udc80","stream":"stdout","time":"2023-11-14T22:13:20Z"}\n'
                b'{"log":"other stream","stream":"stdin","time":"2023-11-14T22:13:20Z"}\n'
                b'{"log":"a","stream":"stdout","time":"2023-11-14T22:13:20Z","log":"b"}\n'
                b'{"log":"torn li')


def test_reads_give_what_the_old_reader_gave_on_a_mixed_log(tmp_path):
    for seed, max_size in ((1, 10**7), (2, 3000), (3, 700)):
        p = str(tmp_path / f"m{seed}-json.log")
        _mixed_log(p, seed, max_size)
        everything = _old_read(p)
        assert len(everything) > 300
        times = sorted(e[2] for e in everything)
        for since, until in ((0, 0), (times[len(times) // 3], 0), (0, times[len(times) // 2]),
                             (times[10], times[-10]), (times[-1] + 1, 0)):
            for tail in (-1, 0, 1, 2, 7, 100, 399, 10**6):
                want = _old_read(p, since, until, tail)
                got = [(e.stream, e.data, e.time_ns, e.time)
                       for e in jsonlog.read_entries(p, since, until, tail)]
                assert got == want, (seed, since, until, tail)


def _big_log(p: str, files: int, lines_each: int) -> list[int]:
    """A log of ``files`` files (rotated as the writer does), numbered lines; the
    sizes of the files, oldest first."""
    w = jsonlog.JSONLogWriter(p, max_size=1 << 40, max_file=files)
    n = 0
    for f in range(files):
        if f:
            w._rotate()
        for _ in range(lines_each // 10000):
            w.write_pieces("stdout", [b"%09d xxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n" % (n + i)
                                      for i in range(10000)], now_ns=1_700_000_000 * 10**9 + n)
            n += 10000
    w.close()
    import os

    return [os.path.getsize(x) for x in jsonlog.log_files(p)]


def test_tail_reads_only_the_end(tmp_path):
    import os

    p = str(tmp_path / "c-json.log")
    sizes = _big_log(p, 3, 200_000)   # 3 files of ~18 MB
    os.rename(p + ".2", p + ".2.gone")
    os.mkdir(p + ".2")   # the oldest file cannot be read: a tail that needs no more works
    before = jsonlog.bytes_read
    got = jsonlog.read_entries(p, tail=5)
    assert [int(e.data[:9]) for e in got] == list(range(599_995, 600_000))
    assert jsonlog.bytes_read - before <= 2 * jsonlog.TAIL_BLOCK
    # the newest file and the end of the one before
    before = jsonlog.bytes_read
    got = list(jsonlog.iter_entry_batches(p, tail=200_005))
    assert [int(e.data[:9]) for e in got[0][:2]] == [399_995, 399_996]
    assert sum(map(len, got)) == 200_005 and int(got[-1][-1].data[:9]) == 599_999
    # read twice over: backwards to find the start, then forwards from it
    assert jsonlog.bytes_read - before <= 2 * (sizes[-1] + 2 * jsonlog.TAIL_BLOCK)
    assert max(map(len, got)) <= jsonlog.BLOCK // 40   # in batches, never all at once


def test_a_full_read_streams_in_bounded_memory(tmp_path):
    import tracemalloc

    p = str(tmp_path / "c-json.log")
    _big_log(p, 1, 100_000)   # 9 MB, 100,000 entries (all of them in a list: ~25 MB)
    tracemalloc.start()
    try:
        n = last = 0
        for batch in jsonlog.iter_entry_batches(p):
            n += len(batch)
            last = int(batch[-1].data[:9])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 100_000 and last == 99_999
    assert peak < 4 << 20, peak


def _read_upto(p: str, follower: jsonlog.LogFollower) -> list[bytes]:
    return [e.data for b in jsonlog.iter_entry_batches(p, upto=follower.position()) for e in b]


def test_a_read_stops_where_its_follower_starts(tmp_path):
    p = str(tmp_path / "c-json.log")
    t = 1_700_000_000_123_456_789
    size = len(jsonlog._entries("stdout", [b"old 0\n"], t)[0])
    w = jsonlog.JSONLogWriter(p, max_size=5 * size + 10, max_file=3)
    for i in range(5):
        w.write("stdout", b"old %d\n" % i, now_ns=t)
    f = jsonlog.LogFollower(p)
    for i in range(4):   # the first one rotates the file
        w.write("stdout", b"new %d\n" % i, now_ns=t)
    assert len(jsonlog.log_files(p)) == 2
    assert _read_upto(p, f) == [b"old %d\n" % i for i in range(5)]
    assert [e.data for e in f.poll()] == [b"new %d\n" % i for i in range(4)]
    w.close()
    # a follower that had no file yet reads the current file from its start
    q = str(tmp_path / "d-json.log")
    f = jsonlog.LogFollower(q)
    w = jsonlog.JSONLogWriter(q)
    w.write("stdout", b"first\n")
    assert _read_upto(q, f) == []
    assert [e.data for e in f.poll()] == [b"first\n"]
    w.close()
    f.close()


def test_a_followers_backlog_comes_in_bounded_steps(tmp_path):
    p = str(tmp_path / "c-json.log")
    w = jsonlog.JSONLogWriter(p)
    f = jsonlog.LogFollower(p)
    w.write_pieces("stdout", [b"%06d\n" % i for i in range(40_000)])   # ~3 MB behind
    got, steps = [], 0
    while True:
        batch, more = f.poll_batch()
        got += batch
        steps += 1
        if not more:
            break
    assert [int(e.data) for e in got] == list(range(40_000))
    assert steps > 3_000_000 // jsonlog.BLOCK
    w.close()
    f.close()


def test_compressed_rotation_is_read_back_whole(tmp_path):
    """compress: each rotated file becomes <log>.N.gz (dockerd's names and header: its
    last entry's time in the gzip FEXTRA field); every reader reads them."""
    import gzip

    p = str(tmp_path / "c-json.log")
    w = jsonlog.JSONLogWriter(p, max_size=2000, max_file=4, compress=True,
                              attrs={"app": "x"})
    f = jsonlog.LogFollower(p)
    followed = []
    for i in range(150):
        w.write("stdout", f"line {i}\n".encode(), now_ns=(i + 1) * 1_000_000_000)
        followed += [e.data for e in f.poll()]
    w.wait_compressed()
    w.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["c-json.log", "c-json.log.1.gz", "c-json.log.2.gz", "c-json.log.3.gz"]
    with open(p + ".1.gz", "rb") as g:
        head = g.read(12 + 64)
    assert head[:3] == b"\x1f\x8b\x08" and head[3] & 0x04 and head[9] == 0xFF
    xlen = head[10] | head[11] << 8
    last = json.loads(head[12:12 + xlen])["lastTime"]
    newest_rotated = [json.loads(x) for x in gzip.open(p + ".1.gz")]
    assert newest_rotated[-1]["time"] <= last and newest_rotated[-1]["attrs"] == {"app": "x"}
    entries = jsonlog.read_entries(p)
    nums = [int(e.data.split()[1]) for e in entries]
    assert nums == list(range(nums[0], 150)) and nums[0] > 0
    assert len(nums) > 3 * 20   # every file (a gzipped one's inode may be reused: still read)
    assert all(e.attrs == {"app": "x"} for e in entries)
    tail = jsonlog.read_entries(p, tail=len(nums) - 3)
    assert [int(e.data.split()[1]) for e in tail] == nums[3:]
    assert followed == [f"line {i}\n".encode() for i in range(150)]
    # a file being gzipped (both there) is read once; one left plain by a crash is read
    os.rename(p + ".2.gz", p + ".2.gz.keep")
    with open(p + ".2", "wb") as plain, open(p + ".2.gz.keep", "rb") as g:
        plain.write(gzip.decompress(g.read()))
    os.link(p + ".2", p + ".2.gz")
    os.unlink(p + ".2.gz.keep")
    assert [int(e.data.split()[1]) for e in jsonlog.read_entries(p)] == nums
    # the next rotation shifts both kinds and drops the oldest, compressed or not
    w = jsonlog.JSONLogWriter(p, max_size=2000, max_file=4, compress=True)
    for i in range(150, 200):
        w.write("stdout", f"line {i}\n".encode())
    w.wait_compressed()
    w.close()
    after = [int(e.data.split()[1]) for e in jsonlog.read_entries(p)]
    assert after == list(range(after[0], 200)) and after[0] > nums[0]


def test_follower_reads_the_files_rotated_between_two_polls(tmp_path):
    """Two or more rotations between two polls: the file(s) in the middle are read too,
    in order, gzipped or not (a follower used to finish its old file and jump to the
    current one)."""
    for compress in (False, True):
        p = str(tmp_path / f"c{int(compress)}-json.log")
        w = jsonlog.JSONLogWriter(p, max_size=600, max_file=6, compress=compress)
        w.write("stdout", b"before\n")
        f = jsonlog.LogFollower(p)
        seen, n = [], 0
        for burst in (3, 25, 1, 30, 0, 12):
            for _ in range(burst):   # ~75 bytes an entry: 8 a file, so 25 are 3 rotations
                w.write("stdout", f"n{n}\n".encode())
                n += 1
            w.wait_compressed()
            seen += [e.data for e in f.poll()]
        f.close()
        w.close()
        assert seen == [f"n{i}\n".encode() for i in range(n)], (compress, seen)


def test_lines_with_attrs_are_read_as_json_loads_reads_them():
    """The hand parser takes attrs lines (ours and dockerd's shape) apart as json.loads
    would; anything odd goes the general way."""
    w = jsonlog.attrs_field({"tag": 'a/b "},"time":"x', "b": "<&>", "é": "ü\u2028"})
    lines = [('{"log":"hi\\n","stream":"stdout",%s"time":"2026-12-07T04:14:23.123456789Z"}\n'
              % w).encode(),
             b'{"log":"hi\\n","stream":"stderr","attrs":{},"time":"2026-12-07T04:14:23.12Z"}',
             b'{"log":"hi\\n","stream":"stderr","attrs":{"a":1},"time":"2026-12-07T04:14:23Z"}',
             b'{"log":"hi","stream":"stderr","attrs":{"a":"1"},"time":"2026-12-07T04:14:23+01:00"}',
             b'{"log":"hi\\n","stream":"stderr","attrs":{"a":"1"}}',
             b'{"log":"hi\\n","stream":"stderr","attrs":{"a":"1"},"time":"2026-12-07T04:1',
             b'{"log":"x","stream":"stdout","attrs":{"a":"1"},"time":"2026-12-07T04:14:23Z","x":1}']
    for line in lines:
        e = jsonlog._parse_line(line)
        try:
            o = json.loads(line)
            a = o.get("attrs")
            want = (o["stream"], o["log"].encode(), o["time"], a if isinstance(a, dict) and a
                    else None, jsonlog.parse_rfc3339nano(o["time"]))
        except (ValueError, KeyError):
            want = None
        assert (e and (e.stream, e.data, e.time, e.attrs, e.time_ns)) == want, line
    assert jsonlog._parse_line(lines[0]).attrs["tag"] == 'a/b "},"time":"x'


def test_since_skips_gzipped_files_older_than_it(tmp_path):
    p = str(tmp_path / "c-json.log")
    w = jsonlog.JSONLogWriter(p, max_size=500, max_file=5, compress=True)
    for i in range(40):
        w.write("stdout", f"n{i}\n".encode(), now_ns=(i + 1) * 10**9)
    w.wait_compressed()
    w.close()
    since = 30 * 10**9
    before = jsonlog.bytes_read
    got = [e.data for e in jsonlog.read_entries(p, since_ns=since)]
    assert got == [f"n{i}\n".encode() for i in range(29, 40)]
    # only the files that can hold such entries were unpacked and read
    assert jsonlog.bytes_read - before < 2 * 500 + 100
