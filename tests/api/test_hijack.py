"""Detach keys: parsing Docker's syntax and spotting them in a stream split anywhere."""

import pytest

from dockyard.api.hijack import DetachScanner, parse_detach_keys


def test_parse_detach_keys():
    assert parse_detach_keys(None) == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"
    assert parse_detach_keys("ctrl-@,ctrl-[") == b"\x00\x1b"
    for bad in ("ctrl-", "ctrl-1", "abc"):
        with pytest.raises(ValueError):
            parse_detach_keys(bad)


@pytest.mark.parametrize("cut", range(1, 8))
def test_scanner_finds_keys_across_chunks(cut):
    data = b"ab\x10c\x10\x11zz"
    s = DetachScanner(b"\x10\x11")
    fwd, det = s.feed(data[:cut])
    if not det:
        more, det = s.feed(data[cut:])
        fwd += more
    assert det and fwd == b"ab\x10c"


def test_scanner_passes_everything_without_keys():
    s = DetachScanner(b"\x10\x11")
    assert s.feed(b"abc\x10") == (b"abc", False)
    assert s.feed(b"d") == (b"\x10d", False)
    assert s.flush() == b""
