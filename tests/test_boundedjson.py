"""boundedjson: nesting is bounded before parsing; brackets inside strings do not count."""

import json

import pytest

from dockyard import boundedjson


def test_depth_limit_is_exact():
    assert boundedjson.loads(b"[" * 100 + b"]" * 100) is not None
    with pytest.raises(boundedjson.JSONError, match="nested deeper than 100"):
        boundedjson.loads(b"[" * 101 + b"]" * 101)
    with pytest.raises(boundedjson.JSONError, match="nested deeper"):
        boundedjson.loads(b'{"a":' * 101 + b"1" + b"}" * 101)


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000, b"[" * 100_000,
                                 b'{"a":' * 50_000, "[" * 5000])
def test_deep_input_is_a_json_error_never_a_recursion_error(raw):
    with pytest.raises(boundedjson.JSONError):
        boundedjson.loads(raw)


def test_brackets_in_strings_do_not_count():
    doc = {"a": "[" * 5000, "b": '\\"[[[' * 300, "c": [{"d": "}]" * 1000}]}
    assert boundedjson.loads(json.dumps(doc)) == doc


def test_bad_json_and_bad_utf8_are_json_errors():
    for raw in (b"{", b"\xff\xfe{}", b"[1,]", b""):
        with pytest.raises(boundedjson.JSONError):
            boundedjson.loads(raw)
    assert issubclass(boundedjson.JSONError, ValueError)
