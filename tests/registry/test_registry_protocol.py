"""The sans-IO protocol pieces alone: grammar, digests, ranges, challenges,
scopes, manifests, pagination, and the upload transition table."""

from __future__ import annotations

import hashlib
import json

import pytest

from dockyard.distribution import auth, http, manifest as mf, paths, upload
from dockyard.distribution.errors import ErrorCode, RegistryError, parse_error_response
from dockyard.distribution.reference import (Digest, Digester, ImageReference, is_valid_name,
                                             is_valid_tag, parse_reference)
from dockyard.errors import InvalidParameter

H = "a" * 64


@pytest.mark.parametrize("name", ["a", "library/busybox", "a/b/c", "a-b", "a--b", "a__b", "a.b",
                                  "x1/y2.z3_w4-v5", "a" * 255])
def test_valid_names(name):
    assert is_valid_name(name)


@pytest.mark.parametrize("name", ["", "A", "a/", "/a", "a//b", "-a", "a-", "a___b", "a..b", "a_.b",
                                  "a/B", "a:b", "a" * 256, "_catalog"])
def test_invalid_names(name):
    assert not is_valid_name(name)


@pytest.mark.parametrize("tag,ok", [("latest", True), ("v1.0.0-rc_1", True), ("_x", True),
                                    ("A" * 128, True), ("A" * 129, False), (".x", False),
                                    ("-x", False), ("a/b", False), ("a:b", False), ("", False)])
def test_tags(tag, ok):
    assert is_valid_tag(tag) is ok


def test_digest_parse_and_verify():
    data = b"hello"
    d = Digest.from_bytes(data)
    assert str(d) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert Digest.parse(str(d)) == d
    assert d.verify(data) and not d.verify(b"other")
    d512 = Digest.parse("sha512:" + "b" * 128)
    assert d512.algorithm == "sha512"


@pytest.mark.parametrize("bad", ["sha256:" + "A" * 64, "sha256:abc", "md5:" + H[:32], "sha256",
                                 ":" + H, "sha256:" + H + "0", "SHA256:" + H])
def test_bad_digests(bad):
    with pytest.raises(RegistryError) as e:
        Digest.parse(bad)
    assert e.value.code is ErrorCode.DIGEST_INVALID and e.value.status == 400


def test_streaming_digester_matches_one_shot():
    dg = Digester()
    for chunk in (b"a" * 10, b"b" * 1000, b""):
        dg.update(chunk)
    assert dg.size == 1010
    assert dg.digest() == Digest.from_bytes(b"a" * 10 + b"b" * 1000)


def test_parse_reference():
    assert parse_reference("v1") == "v1"
    assert parse_reference(f"sha256:{H}") == Digest("sha256", H)
    with pytest.raises(RegistryError) as e:
        parse_reference("bad/tag")
    assert e.value.code is ErrorCode.TAG_INVALID
    with pytest.raises(RegistryError) as e:
        parse_reference("sha256:zz")
    assert e.value.code is ErrorCode.DIGEST_INVALID


@pytest.mark.parametrize("text,domain,repo,tag,name", [
    ("busybox", "docker.io", "library/busybox", "latest", "busybox"),
    ("user/app:1", "docker.io", "user/app", "1", "user/app"),
    ("127.0.0.1:5000/x/busybox:v1", "127.0.0.1:5000", "x/busybox", "v1", "127.0.0.1:5000/x/busybox"),
    ("localhost/a", "localhost", "a", "latest", "localhost/a"),
    ("registry.example.com/a/b/c", "registry.example.com", "a/b/c", "latest",
     "registry.example.com/a/b/c"),
    ("index.docker.io/library/alpine:3", "docker.io", "library/alpine", "3", "alpine"),
])
def test_image_reference(text, domain, repo, tag, name):
    r = ImageReference.parse(text)
    assert (r.domain, r.repository, r.tag, r.name) == (domain, repo, tag, name)


def test_image_reference_digest_and_errors():
    r = ImageReference.parse(f"host:5000/a@sha256:{H}")
    assert r.tag is None and r.reference == f"sha256:{H}" and str(r) == f"host:5000/a@sha256:{H}"
    for bad in ("a/UPPER", "a//b", "a:b:c", "host:5000/a@sha256:short", ""):
        with pytest.raises(InvalidParameter):
            ImageReference.parse(bad)


def test_error_bodies_round_trip():
    e = RegistryError(ErrorCode.MANIFEST_BLOB_UNKNOWN, detail={"digests": ["x"]})
    body = json.loads(e.body())
    assert body == {"errors": [{"code": "MANIFEST_BLOB_UNKNOWN", "message": e.message,
                                "detail": {"digests": ["x"]}}]}
    back = parse_error_response(404, e.body())
    assert back.code is ErrorCode.MANIFEST_BLOB_UNKNOWN and back.status == 404
    assert parse_error_response(401, b"<html>").code is ErrorCode.UNAUTHORIZED
    assert parse_error_response(503, b"").code is ErrorCode.UNKNOWN


def test_error_statuses():
    expected = {"BLOB_UNKNOWN": 404, "BLOB_UPLOAD_INVALID": 400, "BLOB_UPLOAD_UNKNOWN": 404,
                "DIGEST_INVALID": 400, "MANIFEST_BLOB_UNKNOWN": 404, "MANIFEST_INVALID": 400,
                "MANIFEST_UNKNOWN": 404, "NAME_INVALID": 400, "NAME_UNKNOWN": 404, "SIZE_INVALID": 400,
                "UNAUTHORIZED": 401, "DENIED": 403, "UNSUPPORTED": 405, "TOO_MANY_REQUESTS": 429}
    for code, status in expected.items():
        assert ErrorCode[code].status == status


# -- challenges and scopes ------------------------------------------------------------

def test_bearer_challenge_round_trip():
    scopes = [auth.Scope.repository("a/b", "push", "pull"), auth.Scope.repository("c", "pull")]
    ch = auth.bearer_challenge("http://127.0.0.1:5000/token", "reg", scopes, error="insufficient_scope")
    header = ch.render()
    assert header.startswith('Bearer realm="http://127.0.0.1:5000/token",service="reg",'
                             'scope="repository:a/b:pull,push repository:c:pull"')
    (parsed,) = auth.parse_challenges(header)
    assert parsed.scheme == "bearer" and parsed.realm == "http://127.0.0.1:5000/token"
    assert parsed.service == "reg" and parsed.error == "insufficient_scope"
    assert parsed.scopes == scopes


def test_parse_several_and_odd_challenges():
    hdr = 'Basic realm="Registry Realm", Bearer realm="https://auth.io/token",service=registry.io'
    basic, bearer = auth.parse_challenges(hdr)
    assert basic.scheme == "basic" and basic.realm == "Registry Realm"
    assert bearer.realm == "https://auth.io/token" and bearer.service == "registry.io"
    (q,) = auth.parse_challenges('Bearer realm="a \\"quoted\\" realm" , scope="x:y:z"')
    assert q.realm == 'a "quoted" realm' and q.params["scope"] == "x:y:z"
    assert auth.parse_challenges("Negotiate") == [auth.Challenge("negotiate", {})]
    assert auth.parse_challenges("") == []


def test_scope_parsing():
    s = auth.Scope.parse("repository:host:5000/a/b:pull,push")
    assert (s.type, s.name, s.actions) == ("repository", "host:5000/a/b", frozenset({"pull", "push"}))
    assert s.render() == "repository:host:5000/a/b:pull,push"
    assert auth.Scope.parse("registry:catalog:*").covers(auth.Scope("registry", "catalog", frozenset({"*"})))
    with pytest.raises(ValueError):
        auth.Scope.parse("nonsense")
    merged = auth.parse_scopes(["repository:a:pull", "repository:a:push repository:b:pull"])
    assert merged == [auth.Scope.repository("a", "pull", "push"), auth.Scope.repository("b", "pull")]
    grants = [auth.Scope.repository("a", "pull")]
    assert auth.granted(grants, [auth.Scope.repository("a", "pull")])
    assert not auth.granted(grants, [auth.Scope.repository("a", "pull", "push")])
    assert not auth.granted(grants, [auth.Scope.repository("b", "pull")])


def test_basic_credentials_and_token_request():
    h = auth.basic_authorization("alice", "p:w")
    assert auth.parse_basic_authorization(h) == ("alice", "p:w")
    assert auth.parse_basic_authorization("Basic !!!") is None
    assert auth.parse_basic_authorization("Bearer x") is None
    assert auth.parse_bearer_authorization("Bearer tok") == "tok"
    ch = auth.bearer_challenge("http://r/token", "svc", [auth.Scope.repository("a", "pull")])
    url = auth.token_request(ch, [auth.Scope.repository("a", "push")], account="alice")
    assert url == "http://r/token?service=svc&scope=repository%3Aa%3Apull%2Cpush&account=alice"
    t = auth.TokenResponse.from_json({"access_token": "T", "expires_in": 10})
    assert t.token == "T" and t.expires_in == 60  # at least 60s, as the spec says
    with pytest.raises(ValueError):
        auth.TokenResponse.from_json({})


# -- manifests ------------------------------------------------------------------------

def _desc(mt, data=b"x"):
    return {"mediaType": mt, "digest": str(Digest.from_bytes(data)), "size": len(data)}


def test_parse_image_manifest_and_references():
    foreign = {**_desc(mf.DOCKER_FOREIGN_LAYER, b"f"), "urls": ["https://example/f"]}
    doc = {"schemaVersion": 2, "mediaType": mf.DOCKER_MANIFEST, "config": _desc(mf.DOCKER_CONFIG, b"c"),
           "layers": [_desc(mf.DOCKER_LAYER, b"l"), foreign]}
    body = json.dumps(doc).encode()
    m = mf.parse_manifest(body, mf.DOCKER_MANIFEST)
    assert m.digest == Digest.from_bytes(body) and not m.is_index
    assert [str(d.digest) for d in m.blob_references()] == [str(Digest.from_bytes(b"c")),
                                                             str(Digest.from_bytes(b"l"))]


def test_parse_index_and_subject():
    sub = _desc(mf.OCI_MANIFEST, b"s")
    doc = {"schemaVersion": 2, "mediaType": mf.OCI_INDEX,
           "manifests": [{**_desc(mf.OCI_MANIFEST, b"m"), "platform": {"os": "linux", "architecture": "arm64"}},
                         {**_desc(mf.OCI_MANIFEST, b"n"), "platform": {"os": "linux", "architecture": "amd64"}}],
           "subject": sub, "artifactType": "application/x-sig"}
    m = mf.parse_manifest(json.dumps(doc).encode(), None)
    assert m.is_index and str(m.subject.digest) == sub["digest"]
    assert m.descriptor().artifact_type == "application/x-sig"
    assert mf.select_platform(m, "linux", "amd64").digest == Digest.from_bytes(b"n")
    assert mf.select_platform(m, "linux", "s390x") is None


@pytest.mark.parametrize("body,ctype", [
    (b"not json", mf.OCI_MANIFEST),
    (b"[]", mf.OCI_MANIFEST),
    (json.dumps({"schemaVersion": 1}).encode(), mf.DOCKER_SCHEMA1),
    (json.dumps({"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST, "layers": []}).encode(), mf.OCI_MANIFEST),
    (json.dumps({"schemaVersion": 2, "mediaType": mf.OCI_INDEX}).encode(), mf.OCI_INDEX),
    (json.dumps({"schemaVersion": 2, "mediaType": mf.DOCKER_MANIFEST,
                 "config": _desc(mf.DOCKER_CONFIG), "layers": []}).encode(), mf.OCI_MANIFEST),
    (json.dumps({"schemaVersion": 2, "mediaType": "text/plain", "config": _desc("x")}).encode(), "text/plain"),
    (json.dumps({"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:zz", "size": 1},
                 "layers": []}).encode(), mf.OCI_MANIFEST),
    (json.dumps({"schemaVersion": 2, "config": {**_desc("x"), "size": -1}, "layers": []}).encode(), None),
])
def test_invalid_manifests(body, ctype):
    with pytest.raises(RegistryError) as e:
        mf.parse_manifest(body, ctype)
    assert e.value.code is ErrorCode.MANIFEST_INVALID


def test_negotiation():
    assert mf.negotiate(mf.OCI_INDEX, []) == mf.SERVE
    assert mf.negotiate(mf.OCI_INDEX, ["*/*"]) == mf.SERVE
    assert mf.negotiate(mf.OCI_INDEX, [mf.OCI_INDEX, mf.OCI_MANIFEST]) == mf.SERVE
    assert mf.negotiate(mf.DOCKER_MANIFEST_LIST, [mf.DOCKER_MANIFEST]) == mf.PICK_PLATFORM
    assert mf.negotiate(mf.OCI_INDEX, ["application/json"]) == mf.NOT_ACCEPTABLE
    assert mf.negotiate(mf.OCI_MANIFEST, [mf.DOCKER_MANIFEST]) == mf.SERVE
    assert mf.parse_accept(f"{mf.OCI_MANIFEST}; q=0.5, {mf.OCI_INDEX}") == [mf.OCI_MANIFEST, mf.OCI_INDEX]


def test_referrers_index_filter():
    a = mf.Descriptor(mf.OCI_MANIFEST, Digest.from_bytes(b"a"), 1, artifact_type="t/a")
    b = mf.Descriptor(mf.OCI_MANIFEST, Digest.from_bytes(b"b"), 1, artifact_type="t/b")
    assert len(mf.referrers_index([a, b])["manifests"]) == 2
    only = mf.referrers_index([a, b], "t/b")["manifests"]
    assert [d["digest"] for d in only] == [str(b.digest)]


# -- ranges and pagination ----------------------------------------------------------------

@pytest.mark.parametrize("header,size,expected", [
    (None, 10, None), ("bytes=0-4", 10, (0, 4)), ("bytes=5-", 10, (5, 9)), ("bytes=-3", 10, (7, 9)),
    ("bytes=0-100", 10, (0, 9)), ("bytes=4-2", 10, None), ("bytes=0-1,3-4", 10, None), ("items=0-1", 10, None),
])
def test_parse_range(header, size, expected):
    r = http.parse_range(header, size)
    assert (None if r is None else (r.start, r.end)) == expected


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=20-30", "bytes=-0"])
def test_unsatisfiable_range(header):
    with pytest.raises(http.RangeNotSatisfiable):
        http.parse_range(header, 10)


def test_range_formats():
    assert http.ByteRange(2, 5).content_range(10) == "bytes 2-5/10"
    assert http.parse_content_range("bytes 2-5/10") == (2, 5, 10)
    assert http.parse_upload_content_range("0-99") == (0, 99)
    assert http.parse_upload_content_range("bytes 100-199/*") == (100, 199)
    for bad in ("5-2", "x", ""):
        with pytest.raises(RegistryError) as e:
            http.parse_upload_content_range(bad)
        assert e.value.status == 416
    assert http.format_upload_content_range(100, 50) == "100-149"
    assert http.format_upload_range(0) == "0-0" and http.format_upload_range(10) == "0-9"
    assert http.parse_upload_range("0-9") == 10 and http.parse_upload_range("0-0") == 0
    assert http.format_range_request(5) == "bytes=5-"


def test_pagination_and_links():
    items = ["c", "a", "e", "b", "d"]
    assert http.paginate(items, 2, None) == (["a", "b"], "b")
    assert http.paginate(items, 2, "b") == (["c", "d"], "d")
    assert http.paginate(items, 2, "d") == (["e"], None)
    assert http.paginate(items, None, "c") == (["d", "e"], None)
    assert http.paginate(items, 5, None) == (sorted(items), None)
    link = http.link_header("/v2/a/tags/list", 2, "b")
    assert link == '</v2/a/tags/list?n=2&last=b>; rel="next"'
    assert http.parse_link_next(link) == "/v2/a/tags/list?n=2&last=b"
    assert http.next_page_params(link) == {"n": "2", "last": "b"}
    assert http.parse_link_next('<x>; rel="prev"') is None
    with pytest.raises(RegistryError) as e:
        http.parse_page_params("-1", None)
    assert e.value.code is ErrorCode.PAGINATION_NUMBER_INVALID


# -- paths --------------------------------------------------------------------------------

@pytest.mark.parametrize("path,route", [
    ("/v2/", paths.Route("base")),
    ("/v2/_catalog", paths.Route("catalog")),
    ("/v2/a/b/c/blobs/uploads/", paths.Route("uploads", "a/b/c")),
    ("/v2/a/blobs/uploads/u-1", paths.Route("upload", "a", "u-1")),
    (f"/v2/a/b/blobs/sha256:{H}", paths.Route("blob", "a/b", f"sha256:{H}")),
    ("/v2/a/manifests/v1", paths.Route("manifest", "a", "v1")),
    ("/v2/blobs/manifests/v1", paths.Route("manifest", "blobs", "v1")),
    ("/v2/a/tags/list", paths.Route("tags", "a")),
    (f"/v2/x/referrers/sha256:{H}", paths.Route("referrers", "x", f"sha256:{H}")),
    ("/v2/a", None), ("/v1/search", None), ("/v2/a/manifests/", None),
])
def test_parse_paths(path, route):
    assert paths.parse_path(path) == route


def test_route_scopes():
    s = auth.Scope.repository
    assert paths.Route("blob", "a", "d").required_scopes("GET") == [s("a", "pull")]
    assert paths.Route("uploads", "a").required_scopes("POST") == [s("a", "pull", "push")]
    assert paths.Route("manifest", "a", "t").required_scopes("DELETE") == [s("a", "delete")]
    assert paths.Route("base").required_scopes("GET") == []


# -- the upload state table -----------------------------------------------------------------

U = upload.UploadState


def test_upload_happy_paths():
    s = upload.UploadSession().handle(upload.Start())
    s = s.handle(upload.Chunk(10, 0)).handle(upload.Chunk(5, 10)).handle(upload.Chunk(5))
    assert (s.state, s.offset) == (U.OPEN, 20)
    assert s.handle(upload.Commit()).state is U.COMMITTED
    assert upload.UploadSession().handle(upload.Commit()).state is U.COMMITTED  # monolithic
    assert s.handle(upload.Resume(7)).offset == 7
    assert s.handle(upload.Cancel()).state is U.CANCELLED
    assert s.handle(upload.Reject()).state is U.FAILED


def test_upload_table_is_complete_and_terminal_states_are_final():
    events = [upload.Start(), upload.Chunk(1), upload.Resume(0), upload.Commit(), upload.Reject(),
              upload.Cancel()]
    for state in U:
        for ev in events:
            allowed = (state, type(ev)) in upload.TRANSITIONS
            if state.terminal:
                assert not allowed
            try:
                upload.UploadSession(state, 0).handle(ev)
                assert allowed, (state, ev)
            except upload.IllegalUploadMove as e:
                assert not allowed, (state, ev)
                expected = ErrorCode.BLOB_UPLOAD_UNKNOWN if state.terminal else ErrorCode.BLOB_UPLOAD_INVALID
                assert e.code is expected


def test_out_of_order_chunk_is_416_with_range():
    s = upload.UploadSession(U.OPEN, 100)
    with pytest.raises(upload.IllegalUploadMove) as e:
        s.handle(upload.Chunk(10, 50))
    assert e.value.status == 416 and e.value.headers["Range"] == "0-99"
    assert e.value.code is ErrorCode.BLOB_UPLOAD_INVALID
