"""The build cache's pure parts: Go durations, the prune selection (dangling/all, filters),
and the context session's manifest checks."""

from __future__ import annotations

import json

import pytest

from dockyard.builder import cache, sessions
from dockyard.errors import InvalidParameter


@pytest.mark.parametrize("text,seconds", [("0", 0), ("10s", 10), ("1h30m", 5400),
                                          ("1.5h", 5400), ("250ms", 0.25), ("2h0m1s", 7201)])
def test_go_durations(text, seconds):
    assert cache.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1d", "h", "1h 2m", "--1s"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        cache.parse_duration(text)


def rec(i, *, shared=False, inuse=False, last=0.0, size=10, desc="RUN x", labels=None):
    return {"ID": f"{i:025d}", "_key": f"sha256:{i:064d}", "Parent": "", "Type": "regular",
            "Description": desc, "InUse": inuse, "Shared": shared, "Size": size,
            "_last": last, "_labels": labels or {}, "_image": f"img{i}"}


def test_select_dangling_all_and_filters():
    now = 10_000.0
    recs = [rec(1, last=now), rec(2, shared=True, last=now), rec(3, inuse=True, last=now),
            rec(4, last=now - 7200, labels={"a": "b"})]
    ids = lambda rs: [r["ID"][-1] for r in rs]   # noqa: E731
    assert ids(cache._select(recs, {}, False, now)) == ["1", "4"]
    assert ids(cache._select(recs, {}, True, now)) == ["1", "2", "4"]     # never in use
    assert ids(cache._select(recs, {"until": ["1h"]}, True, now)) == ["4"]
    assert ids(cache._select(recs, {"unused-for": ["3h"]}, True, now)) == []
    assert ids(cache._select(recs, {"label": ["a=b"]}, True, now)) == ["4"]
    assert ids(cache._select(recs, {"label!": ["a"]}, True, now)) == ["1", "2"]
    assert ids(cache._select(recs, {"shared": ["true"]}, False, now)) == ["2"]
    assert ids(cache._select(recs, {"id": [recs[0]["ID"]]}, True, now)) == ["1"]
    with pytest.raises(InvalidParameter, match="invalid filter 'colour'"):
        cache._select(recs, {"colour": ["red"]}, True, now)
    with pytest.raises(InvalidParameter):
        cache._select(recs, {"shared": ["maybe"]}, True, now)


def test_manifest_checks():
    ok = sessions.parse_manifest(json.dumps([["d", "dir", 0o40755, 0, 1, ""],
                                             ["d/f", "file", 0o100644, 3, 2, ""],
                                             ["l", "symlink", 0o777, 0, 3, "d/f"]]).encode())
    assert ok[0] == ("d", "dir", 0o755, 0, 1, "") and ok[1][2] == 0o644
    for bad in ([["/abs/../..", "file", 1, 1, 1, ""]], [["x", "file", -1, 1, 1, ""]],
                [["x", "file", True, 1, 1, ""]], [["x", "block", 1, 1, 1, ""]],
                [["f", "file", 1, 1, 1, ""], ["f", "file", 1, 1, 1, ""]],
                [["f", "file", 1, 1, 1, ""], ["f/g", "file", 1, 1, 1, ""]]):
        with pytest.raises(InvalidParameter):
            sessions.parse_manifest(json.dumps(bad).encode())
    with pytest.raises(InvalidParameter):
        sessions.parse_manifest(b"{")
