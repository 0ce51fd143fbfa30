"""The client's sans-IO HTTP/1.1 response parser and request encoders."""

from __future__ import annotations

import urllib.parse

import pytest

from dockyard.client import http11
from dockyard.client.http11 import NEED_DATA, End, Head, ProtocolError, ResponseParser


def run(data: bytes, method: str = "GET", eof: bool = False, pieces: list[int] | None = None,
        max_bytes: int | None = None) -> tuple[Head, bytes, End | None, ResponseParser]:
    """Feed ``data`` (split at the ``pieces`` offsets), collect the head, body and end."""
    p = ResponseParser(method)
    cuts = [0, *(pieces or []), len(data)]
    head, body, end = None, bytearray(), None
    for a, b in zip(cuts, cuts[1:]):
        p.feed(data[a:b])
        while True:
            ev = p.next_event(max_bytes)
            if ev is NEED_DATA:
                break
            if isinstance(ev, Head):
                assert head is None
                head = ev
                if p.switched:
                    return head, bytes(body), None, p
            elif isinstance(ev, End):
                end = ev
                break
            else:
                assert isinstance(ev, bytes) and ev
                if max_bytes is not None:
                    assert len(ev) <= max_bytes
                body += ev
        if end is not None:
            break
    if end is None and eof:
        p.feed_eof()
        while True:
            ev = p.next_event(max_bytes)
            if isinstance(ev, End):
                end = ev
                break
            if isinstance(ev, Head):
                head = ev
            else:
                body += ev
    return head, bytes(body), end, p


CHUNKED = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\nServer: x\r\n\r\n"
           b"5;name=value;quoted=\"a;b\"\r\nhello\r\n"
           b"1\r\n \r\n"
           b"0000000006 ; ext\r\nworld!\r\n"
           b"A\r\n0123456789\r\n"
           b"0;last\r\nX-Trailer: one\r\nX-Other:  two  \r\n\r\n")
CHUNKED_BODY = b"hello world!0123456789"


def test_content_length_body_and_keep_alive():
    data = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nApi-Version: 1.47\r\n\r\nabcde"
    head, body, end, p = run(data)
    assert (head.status, head.reason, head.version) == (201, "Created", "HTTP/1.1")
    assert body == b"abcde" and end is not None and p.done and p.keep_alive
    # names keep their case, lookups ignore it
    assert head.headers.items() == [("Content-Length", "5"), ("Api-Version", "1.47")]
    assert head.headers.get("api-version") == "1.47" and head.headers["API-VERSION"] == "1.47"
    assert "content-length" in head.headers and head.headers["missing"] is None


def test_chunked_with_extensions_and_trailers():
    head, body, end, p = run(CHUNKED)
    assert head.status == 200 and body == CHUNKED_BODY
    assert end.trailers.items() == [("X-Trailer", "one"), ("X-Other", "two")]
    assert p.done and p.keep_alive and p.trailing_data() == b""


@pytest.mark.parametrize("data,body", [
    (CHUNKED, CHUNKED_BODY),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", b"hello world"),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
])
def test_split_at_every_byte_boundary(data, body):
    for i in range(len(data) + 1):
        head, got, end, _ = run(data, pieces=[i])
        assert head.status == 200 and got == body and end is not None, i
    # and one byte at a time, with bodies handed out at most 3 bytes at once
    head, got, end, _ = run(data, pieces=list(range(1, len(data))), max_bytes=3)
    assert got == body and end is not None


def test_chunked_split_at_every_pair_of_boundaries():
    n = len(CHUNKED)
    for i in range(1, n, 3):
        for j in range(i + 1, n, 5):
            _, got, end, _ = run(CHUNKED, pieces=[i, j])
            assert got == CHUNKED_BODY and end is not None, (i, j)


def test_bare_lf_line_endings_are_accepted():
    data = b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n"
    head, body, end, _ = run(data)
    assert head.headers["transfer-encoding"] == "chunked" and body == b"abc" and end


def test_close_delimited_body():
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nstream until the end"
    head, body, end, p = run(data, eof=True, pieces=[30, 40])
    assert body == b"stream until the end" and end is not None and not p.keep_alive


def test_http10_and_connection_close():
    _, _, _, p = run(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert p.done and not p.keep_alive
    _, _, _, p = run(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")
    assert p.keep_alive
    _, _, _, p = run(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx")
    assert p.done and not p.keep_alive


def test_no_body_for_head_204_304():
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
    head, body, end, p = run(data, method="HEAD")
    assert head.headers["Content-Length"] == "1234" and body == b"" and p.done
    for status in (204, 304):
        _, body, end, p = run(b"HTTP/1.1 %d X\r\n\r\n" % status)
        assert body == b"" and p.done and p.keep_alive


def test_switching_protocols_keeps_the_raw_bytes():
    data = (b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
            b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n\x01\x00\x00\x00\x00\x00\x00\x02hi")
    for i in range(len(data) + 1):
        p = ResponseParser("POST")
        p.feed(data[:i])
        ev = p.next_event()
        if ev is NEED_DATA:
            p.feed(data[i:])
            ev = p.next_event()
        else:
            p.feed(data[i:])
        assert ev.status == 101 and p.switched
        assert p.trailing_data() == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
    with pytest.raises(ProtocolError, match="switched"):
        p.next_event()


def test_interim_responses_are_skipped():
    data = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}")
    head, body, _, _ = run(data)
    assert (head.status, head.reason, body) == (404, "Not Found", b"{}")


def test_status_line_without_reason_and_folded_header():
    head, _, _, _ = run(b"HTTP/1.1 200\r\nX-Long: a\r\n  b\r\nContent-Length: 0\r\n\r\n")
    assert head.reason == "" and head.headers["x-long"] == "a b"


def test_transfer_encoding_wins_over_content_length():
    data = (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\n\r\n")
    _, body, end, p = run(data)
    assert body == b"ok" and end and not p.keep_alive  # a smuggling smell: don't reuse


def test_data_after_the_message_is_kept():
    _, _, _, p = run(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxEXTRA")
    assert p.trailing_data() == b"EXTRA"


@pytest.mark.parametrize("data,msg", [
    (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP response"),
    (b"HTTP/2 200\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "malformed status code"),
    (b"HTTP/1.1 abc OK\r\n\r\n", "malformed status code"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\n folded first\r\n\r\n", "continuation line first"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", "invalid Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "conflicting"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", "invalid chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", "invalid chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n", "invalid chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
     "invalid chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "missing CRLF"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n",
     "malformed trailer line"),
])
def test_bad_input_is_a_clear_error(data, msg):
    with pytest.raises(ProtocolError, match=msg):
        run(data)


def test_limits():
    with pytest.raises(ProtocolError, match="response head larger"):
        run(b"HTTP/1.1 200 OK\r\n" + b"X-A: " + b"a" * http11.MAX_HEAD + b"\r\n\r\n")
    with pytest.raises(ProtocolError, match="chunk size line too long"):
        run(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" +
            b"x" * http11.MAX_CHUNK_LINE)


@pytest.mark.parametrize("data,msg", [
    (b"", "without a response"),
    (b"HTTP/1.1 200 OK\r\n", "middle of the response head"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "7 bytes of the body"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "chunked body"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5", "chunked body"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n", "chunked body"),
])
def test_early_eof_is_an_error(data, msg):
    with pytest.raises(ProtocolError, match=msg) as ei:
        run(data, eof=True)
    assert isinstance(ei.value, http11.ClosedBeforeResponse) == (data == b"")


def test_feed_after_eof_is_an_error():
    p = ResponseParser()
    p.feed_eof()
    with pytest.raises(ProtocolError):
        p.feed(b"x")


def test_request_head_and_chunks():
    head = http11.encode_request_head("POST", "/v1.47/containers/create?name=x",
                                      [("Host", "localhost"), ("Content-Length", 2)])
    assert head == (b"POST /v1.47/containers/create?name=x HTTP/1.1\r\nHost: localhost\r\n"
                    b"Content-Length: 2\r\n\r\n")
    assert http11.encode_chunk(b"x" * 26) == b"1A\r\n" + b"x" * 26 + b"\r\n"
    # what we encode, we parse
    p = ResponseParser()
    p.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
           http11.encode_chunk(b"abc") + http11.LAST_CHUNK)
    assert [type(p.next_event()).__name__ for _ in range(3)] == ["Head", "bytes", "End"]
    for bad in ([("X", "a\r\nInjected: 1")], [("Bad:Name", "v")]):
        with pytest.raises(ValueError):
            http11.encode_request_head("GET", "/", bad)
    with pytest.raises(ValueError):
        http11.encode_request_head("GET", "/a b", [])


@pytest.mark.parametrize("s", ["busybox:latest", "localhost:5000/a/b@sha256:ab", "sp ace",
                               "ünï/cødé", "a+b&c=d?e#f%g", "~_.-", ""])
def test_quote_and_urlencode_match_urllib(s):
    for safe in ("/", "/:@", ""):
        assert http11.quote(s, safe) == urllib.parse.quote(s, safe=safe)
    assert http11.quote_plus(s) == urllib.parse.quote_plus(s)
    pairs = [("filters", s), ("all", "1"), ("k y", s)]
    assert http11.urlencode(pairs) == urllib.parse.urlencode(pairs)
    assert http11.urlencode(dict(pairs)) == urllib.parse.urlencode(dict(pairs))
