"""The UI's plain pieces: stats samples folded as the docker CLI does, pull
progress as one bar, sessions and CSRF tokens, the reference checks."""

from __future__ import annotations

import pytest

from dockyard.ui.progress import Progress
from dockyard.ui.security import Sessions, csrf_ok, is_loopback
from dockyard.ui.stats import summarize


def test_stats_as_the_docker_cli():
    sample = {
        "read": "2024-01-01T00:00:01Z",
        "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000}, "system_cpu_usage": 20_000_000_000,
                      "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000}, "system_cpu_usage": 10_000_000_000},
        "memory_stats": {"usage": 10_000_000, "limit": 1_000_000_000, "stats": {"inactive_file": 4_000_000}},
        "networks": {"eth0": {"rx_bytes": 100, "tx_bytes": 50}, "eth1": {"rx_bytes": 1, "tx_bytes": 2}},
        "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 7}, {"op": "Write", "value": 9},
                                                        {"op": "read", "value": 1}]},
        "pids_stats": {"current": 3},
    }
    assert summarize(sample) == {"cpu": 20.0, "mem": 6_000_000, "mem_limit": 1_000_000_000, "rx": 101,
                                 "tx": 52, "blk_r": 8, "blk_w": 9, "pids": 3}
    # cgroup v1 names the page cache total_inactive_file; the first sample has no delta
    v1 = {"memory_stats": {"usage": 5, "stats": {"total_inactive_file": 2}}, "cpu_stats": {}, "precpu_stats": {}}
    assert summarize(v1)["mem"] == 3 and summarize(v1)["cpu"] == 0.0
    assert summarize({})["cpu"] == 0.0


def test_pull_progress_is_one_bar_that_never_goes_back():
    p = Progress()
    seen = [p.feed(m)["percent"] for m in [
        {"status": "Pulling from ui/big", "id": "v1"},
        {"status": "Already exists", "id": "a"},           # only named so far: 0, not 100
        {"status": "Pulling fs layer", "id": "b"},
        {"status": "Downloading", "id": "b", "progressDetail": {"current": 50, "total": 100}},
        {"status": "Download complete", "id": "b"},
        {"status": "Extracting", "id": "b", "progressDetail": {"current": 10, "total": 100}},
        {"status": "Pull complete", "id": "b"},
        {"status": "Digest: sha256:00"},
        {"status": "Status: Downloaded newer image for ui/big:v1"},
    ]]
    assert seen == [0.0, 0.0, 0.0, 75.0, 100.0, 100.0, 100.0, 100.0, 100.0]
    assert p.snapshot()["layers"] == 2 and p.snapshot()["layers_done"] == 2
    bad = Progress()
    assert bad.feed({"errorDetail": {"message": "manifest unknown"}, "error": "manifest unknown"})["error"] == \
        "manifest unknown"


def test_sessions_expire_and_csrf_is_per_session():
    now = [0.0]
    s = Sessions(clock=lambda: now[0])
    a, b = s.create("token"), s.create("alice")
    assert s.get(a.id) is a and a.csrf != b.csrf
    assert csrf_ok(a, a.csrf) and not csrf_ok(a, b.csrf) and not csrf_ok(a, None) and not csrf_ok(None, a.csrf)
    now[0] += 11 * 3600
    assert s.get(a.id) is a            # used: idle time starts again
    now[0] += 12 * 3600 + 1
    assert s.get(a.id) is None and s.get(b.id) is None
    s.drop("nope")
    assert s.get(None) is None and s.get("") is None


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                       ("localhost", True), ("0.0.0.0", False), ("10.1.2.3", False),
                                       ("example.org", False), ("::", False)])
def test_loopback(host, loop):
    assert is_loopback(host) is loop


def test_build_output_lines_steps_image_and_error():
    from dockyard.ui.progress import BuildOutput

    b = BuildOutput()
    lines = [b.feed(m) for m in [
        {"stream": "Step 1/2 : FROM busybox\n"},
        {"status": "Pulling from library/busybox", "id": "latest"},
        {"status": "Downloading", "id": "abc", "progress": "[=>  ] 1MB/2MB", "progressDetail": {"current": 1}},
        {"stream": " ---> d36b3eea731d\n"},
        {"stream": "Step 2/2 : RUN true\n"},
        {"aux": {"ID": "sha256:" + "1" * 64}},
        {"stream": "Successfully built 111111111111\n"},
        {"unknown": 1},
        "not an object",
    ]]
    assert lines[0] == {"text": "Step 1/2 : FROM busybox\n", "step": [1, 2]}
    assert lines[1] == {"text": "latest: Pulling from library/busybox\n", "status": True}
    assert lines[2]["text"] == "abc: Downloading [=>  ] 1MB/2MB\n"
    assert lines[3]["step"] == [1, 2] and lines[4]["step"] == [2, 2]
    assert lines[5] == {"id": "sha256:" + "1" * 64} and lines[7] is None and lines[8] is None
    assert b.summary() == {"done": True, "ok": True, "id": "sha256:" + "1" * 64, "error": None, "step": [2, 2]}
    bad = BuildOutput()
    assert bad.feed({"errorDetail": {"code": 3, "message": "returned a non-zero code: 3"},
                     "error": "returned a non-zero code: 3"}) == {"error": "returned a non-zero code: 3"}
    assert bad.summary()["ok"] is False and bad.summary()["error"] == "returned a non-zero code: 3"


def test_build_params_are_an_allow_list():
    import json

    from aiohttp import web
    from multidict import MultiDict

    from dockyard.ui.routes import build_params

    q = MultiDict([("t", "a:1"), ("t", "reg:5000/b/c:2"), ("t", ""), ("dockerfile", "docker/x.Dockerfile"),
                   ("buildargs", json.dumps({"A": "1", "B": None})), ("nocache", "1"), ("pull", "0"),
                   ("remote", "http://evil.example/ctx.tar"), ("networkmode", "host"), ("cpuquota", "1")])
    p = build_params(q)
    assert p == {"dockerfile": "docker/x.Dockerfile", "t": ["a:1", "reg:5000/b/c:2"], "rm": "1", "forcerm": "1",
                 "buildargs": json.dumps({"A": "1", "B": None}), "nocache": "1"}
    assert build_params(MultiDict())["dockerfile"] == "Dockerfile"
    for bad in ([("t", "a b")], [("t", "../x")], [("t", "x")] * 21, [("dockerfile", "a\nb")],
                [("buildargs", "[1]")], [("buildargs", '{"A": 1}')], [("buildargs", '{"=x": "1"}')],
                [("buildargs", "nope")]):
        with pytest.raises(web.HTTPBadRequest):
            build_params(MultiDict(bad))
