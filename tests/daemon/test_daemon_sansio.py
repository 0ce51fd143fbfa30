"""The pure parts: Go-template subset, tabwriter, units, timestamps, filters, stream codecs,
event matching."""

from __future__ import annotations

import pytest

from dockyard.api.filters import bool_value, parse_filters
from dockyard.api.streams import JSONLinesDecoder, ProgressEncoder, encode_event
from dockyard.api.timestamps import get_timestamp, parse_duration_ns, parse_timestamp_ns
from dockyard.api.versions import check
from dockyard.cli.format import (Context, Template, TemplateError, format_rows, go_json, render,
                                 tabwrite)
from dockyard.cli.units import bytes_size, human_duration, human_size, truncate_id
from dockyard.daemon.events import EventBus, event_matches, make_event
from dockyard.errors import InvalidParameter


# ------------------------------------------------------------------ templates

DATA = {"Id": "sha256:abc", "Config": {"Cmd": ["/bin/sh", "-c"], "Env": None,
                                       "Labels": {"b": "2", "a": "1"}},
        "Size": 1982263, "Tags": [], "Ok": True, "Name": "<none>"}


@pytest.mark.parametrize("tmpl,out", [
    ("{{.Id}}", "sha256:abc"),
    ("{{.Config.Cmd}}", "[/bin/sh -c]"),
    ("{{.Config.Env}}", "[]"),
    ("{{.Config.Labels}}", "map[a:1 b:2]"),
    ("{{.Size}}", "1982263"),
    ("{{.Ok}}", "true"),
    ("{{.Missing}}", "<no value>"),
    ("{{json .Config.Cmd}}", '["/bin/sh","-c"]'),
    ("{{json .Name}}", '"<none>"'),  # docker's template json: SetEscapeHTML(false)
    ("{{index .Config.Labels \"a\"}}", "1"),
    ("{{join .Config.Cmd \",\"}}", "/bin/sh,-c"),
    ("{{.Name | upper}} {{lower \"ABC\"}} {{title \"ab cd\"}}", "<NONE> abc Ab Cd"),
    ("{{if .Tags}}t{{else if .Ok}}ok{{else}}no{{end}}", "ok"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}},{{end}}", "a=1,b=2,"),
    ("{{range .Config.Cmd}}<{{.}}>{{end}}", "</bin/sh><-c>"),
    ("{{with .Config}}{{len .Cmd}}{{end}}", "2"),
    ("{{printf \"%-4s|%5d\" \"ab\" 42}}", "ab  |   42"),
    ("{{if and .Ok (eq .Size 1982263)}}y{{end}}", "y"),
    ("{{if not .Tags}}empty{{end}}", "empty"),
    ("{{truncate .Id 6}}", "sha256"),
    ("a {{- \" b \" -}} c", "a b c"),
    ("{{/* comment */}}x", "x"),
    ("{{$x := .Id}}{{$x}}", "sha256:abc"),
])
def test_template_subset(tmpl, out):
    assert render(tmpl, DATA) == out


@pytest.mark.parametrize("bad", ["{{.Id", "{{if .Ok}}x", "{{end}}", "{{nosuchfunc .Id}}"])
def test_template_errors(bad):
    with pytest.raises(TemplateError):
        render(bad, DATA)


class Row(Context):
    FIELDS = ("Repository", "Tag")

    def __init__(self, r, t):
        self.Repository, self.Tag = r, t


def test_format_rows_table_plain_and_json():
    rows = [Row("busybox", "latest"), Row("a-much-longer-repository/name", "v1")]
    header = {"Repository": "REPOSITORY", "Tag": "TAG"}
    assert format_rows("table {{.Repository}}\\t{{.Tag}}", rows, header) == (
        "REPOSITORY                      TAG\n"
        "busybox                         latest\n"
        "a-much-longer-repository/name   v1\n")
    assert format_rows("{{.Repository}}:{{.Tag}}", rows, header) == \
        "busybox:latest\na-much-longer-repository/name:v1\n"
    assert format_rows("json", rows[:1], header) == '{"Repository":"busybox","Tag":"latest"}\n'
    # a table with no rows still has its header
    assert format_rows("table {{.Tag}}", [], header) == "TAG\n"
    with pytest.raises(TemplateError):
        Template("{{.Nope}}").execute(rows[0])


def test_tabwriter_like_go():
    # minwidth 10, padding 3; the last cell is not padded; single-cell lines end blocks
    assert tabwrite("a\tbb\tc\nxxxxxxxxxxxx\ty\tz\n") == \
        "a              bb        c\nxxxxxxxxxxxx   y         z\n"
    assert tabwrite("T\tU\n\nlonger-cell\tv\n") == "T         U\n\nlonger-cell   v\n"
    assert tabwrite(" Version:\t1\n API version:\t2\n", minwidth=20, padding=1) == \
        " Version:           1\n API version:       2\n"


def test_go_json_escapes_like_encoding_json():
    # --format json (json.Marshal) escapes; the template function does not
    assert go_json({"a": "<&>"}, escape_html=True) == '{"a":"\\u003c\\u0026\\u003e"}'
    assert go_json({"a": "<&>"}) == '{"a":"<&>"}'
    # row contexts marshal themselves with json.Marshal in Docker's CLI: escaped
    assert render("{{json .}}", Row("<none>", "x")) == \
        '{"Repository":"\\u003cnone\\u003e","Tag":"x"}'


# ------------------------------------------------------------------ units

@pytest.mark.parametrize("size,prec,out", [
    (0, 3, "0B"), (999, 3, "999B"), (1000, 3, "1kB"), (1982263, 3, "1.98MB"),
    (1982263, 4, "1.982MB"), (123456789012, 3, "123GB"), (999999, 3, "1e+03kB"),
])
def test_human_size(size, prec, out):
    assert human_size(size, prec) == out


def test_bytes_size_and_durations_and_ids():
    assert bytes_size(25276510208) == "23.54GiB"
    assert [human_duration(s) for s in (0.5, 1, 59, 60, 119, 3599, 3600, 5400, 86400 * 3,
                                        86400 * 20, 86400 * 90, 86400 * 800)] == [
        "Less than a second", "1 second", "59 seconds", "About a minute", "About a minute",
        "59 minutes", "About an hour", "2 hours", "3 days", "2 weeks", "3 months", "2 years"]
    assert truncate_id("sha256:fed81993b24814f8efd23f") == "fed81993b248"
    assert truncate_id("<missing>") == "<missing>"


# ------------------------------------------------------------------ timestamps, filters, versions

def test_timestamps():
    now = 1_700_000_000_123_456_789
    assert get_timestamp("10m", now) == "1699999400.123456789"
    assert get_timestamp("1h30m", now) == "1699994600.123456789"
    assert get_timestamp("0s", now) == "1700000000.123456789"
    assert get_timestamp("2024-01-02T03:04:05Z") == "1704164645.000000000"
    assert get_timestamp("2024-01-02T03:04:05.5+01:00") == "1704161045.500000000"
    assert get_timestamp("1700000000.5") == "1700000000.5"
    with pytest.raises(InvalidParameter):
        get_timestamp("yesterday")
    assert parse_timestamp_ns("1700000000.5") == 1_700_000_000_500_000_000
    assert parse_timestamp_ns("1700000000") == 1_700_000_000_000_000_000
    assert parse_timestamp_ns(None) is None
    assert parse_duration_ns("1.5s") == 1_500_000_000 and parse_duration_ns("abc") is None


def test_filters_and_versions():
    assert parse_filters('{"dangling":{"true":true},"label":["a=b"]}') == \
        {"dangling": ["true"], "label": ["a=b"]}
    assert parse_filters(None) == {} and parse_filters("") == {}
    for bad in ("{", "[1]", '{"a": 3}'):
        with pytest.raises(InvalidParameter):
            parse_filters(bad)
    with pytest.raises(InvalidParameter):
        parse_filters('{"x":["1"]}', allowed={"y"})
    assert bool_value({"dangling": ["true"]}, "dangling") is True
    assert bool_value({}, "dangling") is None
    with pytest.raises(InvalidParameter):
        bool_value({"dangling": ["maybe"]}, "dangling")
    assert check("1.41") == (1, 41)
    with pytest.raises(InvalidParameter, match="too new"):
        check("1.48")
    with pytest.raises(InvalidParameter, match="too old"):
        check("1.23")


# ------------------------------------------------------------------ streams and events

def test_progress_stream_codec_round_trip():
    enc = ProgressEncoder()
    data = enc.status("sha256:x") + enc.stream("Loaded image: a\n") + enc.error("boom")
    assert data.count(b"\r\n") == 3 and enc.failed
    dec = JSONLinesDecoder()
    msgs = dec.feed(data[:7]) + dec.feed(data[7:]) + dec.close()
    assert msgs == [{"status": "sha256:x"}, {"stream": "Loaded image: a\n"},
                    {"errorDetail": {"message": "boom"}, "error": "boom"}]
    ev = make_event("image", "tag", "sha256:1", {"name": "a:b"}, "local", 5_000_000_001)
    assert encode_event(ev).endswith(b"}\n")


def test_event_matching():
    img = make_event("image", "tag", "sha256:1", {"name": "busybox:v1"}, "local", 1)
    ctr = make_event("container", "start", "abcdef123", {"name": "web", "image": "busybox",
                                                         "x": "1"}, "local", 2)
    assert ctr["from"] == "busybox" and "from" not in img
    net = make_event("network", "create", "n1", {"name": "net"}, "local", 3)
    assert "status" not in net
    m = event_matches
    assert m(img, {}) and m(img, {"type": ["image"]}) and not m(img, {"type": ["container"]})
    assert m(img, {"image": ["busybox"]}) and m(img, {"image": ["busybox:v1"]})
    assert not m(img, {"image": ["alpine"]})
    assert m(ctr, {"container": ["web"]}) and m(ctr, {"container": ["abcd"]})
    assert m(ctr, {"image": ["busybox"]}) and m(ctr, {"label": ["x"]})
    assert m(ctr, {"label": ["x=1"]}) and not m(ctr, {"label": ["x=2"]})
    assert m(ctr, {"event": ["start", "stop"]}) and not m(ctr, {"event": ["die"]})


def test_event_bus_replay_and_close():
    import asyncio

    async def go():
        bus = EventBus(capacity=3)
        for i in range(5):
            bus.emit("image", "tag", f"sha256:{i}", {"name": f"n{i}"})
        past, sub = bus.subscribe({"type": ["image"]}, since_ns=0)
        assert [e["Actor"]["ID"] for e in past] == ["sha256:2", "sha256:3", "sha256:4"]
        assert all(a["timeNano"] < b["timeNano"] for a, b in zip(past, past[1:]))
        # emitted from another thread: delivered on the subscriber's loop
        await asyncio.get_running_loop().run_in_executor(
            None, bus.emit, "image", "delete", "sha256:9", {})
        ev = await sub.get(5)
        assert ev["Action"] == "delete"
        assert bus.listeners == 1
        bus.close()
        assert await sub.get(5) is None
        sub.close()
        assert bus.listeners == 0

    asyncio.run(go())


def test_progress_printer_like_jsonmessage():
    import io as _io

    from dockyard.cli.progress import ProgressPrinter

    msgs = [{"status": "Loading layer", "id": "abc", "progressDetail": {"current": 5,
                                                                       "total": 10}},
            {"status": "Loading layer", "id": "abc", "progressDetail": {"current": 10,
                                                                       "total": 10}},
            {"status": "Verifying", "id": "abc"},
            {"status": "sha256:1234"},
            {"stream": "Loaded image: a:b\n"}]
    out = _io.StringIO()
    ProgressPrinter(out, tty=False).run(msgs)
    # no progress bars off a terminal
    assert out.getvalue() == "abc: Verifying\nsha256:1234\nLoaded image: a:b\n"
    out = _io.StringIO()
    ProgressPrinter(out, tty=True).run(msgs)
    text = out.getvalue()
    assert "\x1b[2K" in text and "abc: Loading layer [" in text and "10B/10B" in text
    assert text.endswith("Loaded image: a:b\n")
