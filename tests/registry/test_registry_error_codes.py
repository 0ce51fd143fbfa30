"""Every error code our registry answers is one of the OCI distribution spec's.

The spec: "The code field MUST be one of the following" (BLOB_UNKNOWN ...
TOOMANYREQUESTS). docker distribution's extra codes (TAG_INVALID,
RANGE_INVALID, PAGINATION_NUMBER_INVALID, UNKNOWN) are not, and clients
written to the spec expect e.g. 404 MANIFEST_UNKNOWN for a manifest asked by a
tag that cannot exist."""

from __future__ import annotations

import json

import pytest

from dockyard.distribution.errors import ErrorCode, RegistryError

# written from the spec's table (distribution-spec, "Error Codes"), not from our code
SPEC = {"BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
        "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED",
        "TOOMANYREQUESTS"}


def _json_codes(status: int, content_type: str, body: bytes) -> list[str]:
    if "json" not in content_type:
        return []
    return [e["code"] for e in json.loads(body)["errors"]]


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.name)
def test_every_error_the_server_can_render_carries_a_spec_code(code):
    """All of ErrorCode's members go through the server's one error renderer: a
    JSON body only with a spec code; the status is kept either way."""
    from dockyard.registry.server import _error_response
    r = _error_response(RegistryError(code, "why"))
    assert r.status == code.status
    codes = _json_codes(r.status, r.content_type, r.body)
    assert set(codes) <= SPEC, codes
    if code.name in SPEC:
        assert codes == [code.name]
    else:
        assert b"why" in r.body


def test_manifest_by_an_invalid_tag_is_unknown(registry):
    c = registry.client()
    _, m = c.push_image("t", "ok")
    for method in ("GET", "HEAD"):
        r = c.request(method, "/v2/t/manifests/.INVALID")
        assert r.status == 404, (method, r.status, r.body)
        if method == "GET":
            assert r.codes == ["MANIFEST_UNKNOWN"]
    r = c.request("GET", "/v2/nothere/manifests/.INVALID")
    assert r.status == 404 and r.codes == ["NAME_UNKNOWN"]
    r = c.push_manifest("t", ".INVALID", m)
    assert r.status == 400 and r.codes == ["MANIFEST_INVALID"]
    assert c.request("GET", "/v2/t/tags/list").json()["tags"] == ["ok"]


def test_bad_requests_answer_only_spec_codes(registry):
    c = registry.client()
    d, m = c.push_image("e", "v1", layers=[b"layer-bytes"])
    blob = m["layers"][0]["digest"]
    seen: dict[str, int] = {}
    cases = [
        ("GET", "/v2/e/manifests/.INVALID", None, {}),
        ("GET", "/v2/e/manifests/sha256:zz", None, {}),
        ("GET", "/v2/e/manifests/nosuchtag", None, {}),
        ("GET", "/v2/UPPER/tags/list", None, {}),
        ("GET", "/v2/nothere/tags/list", None, {}),
        ("GET", "/v2/e/tags/list?n=x", None, {}),
        ("GET", "/v2/_catalog?n=-1", None, {}),
        ("GET", f"/v2/e/blobs/{blob}", None, {"Range": "bytes=100000-200000"}),
        ("GET", "/v2/e/blobs/sha256:" + "0" * 64, None, {}),
        ("GET", "/v2/e/blobs/uploads/nosuchupload", None, {}),
        ("PUT", "/v2/e/manifests/v2", b"{not json", {"Content-Type":
                                                     "application/vnd.oci.image.manifest.v1+json"}),
        ("DELETE", "/v2/e/manifests/nosuchtag", None, {}),
        ("DELETE", "/v2/e/manifests/.INVALID", None, {}),
        ("PATCH", "/v2/e/tags/list", None, {}),
        ("GET", "/v2/no/such/api/path/x", None, {}),
    ]
    for method, path, body, headers in cases:
        r = c.request(method, path, body=body, headers=headers)
        assert r.status >= 400, (method, path, r.status)
        codes = _json_codes(r.status, r.headers.get("Content-Type", ""), r.body)
        for code in codes:
            seen[code] = r.status
        assert set(codes) <= SPEC, (method, path, r.status, r.body[:200])
    assert {"MANIFEST_UNKNOWN", "NAME_INVALID", "NAME_UNKNOWN", "BLOB_UNKNOWN",
            "MANIFEST_INVALID", "DIGEST_INVALID"} <= set(seen), seen
