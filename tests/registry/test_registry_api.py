"""The OCI distribution API against a real `dockyard registry` process."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from registry_helpers import running_registry, sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def stored_blobs(root) -> set[str]:
    out = set()
    for dirpath, _, files in os.walk(root / "blobs"):
        out |= {f"sha256:{f}" for f in files if not f.startswith(".")}
    return out


def test_version_check(registry):
    r = registry.client().request("GET", "/v2/")
    assert r.status == 200 and r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert r.json() == {}


def test_monolithic_upload_and_blob_reads(registry):
    c = registry.client()
    data = os.urandom(300_000)
    d = sha256(data)
    r = c.request("POST", f"/v2/a/b/c/blobs/uploads/?digest={d}", data)
    assert r.status == 201
    assert r.headers["Location"] == f"/v2/a/b/c/blobs/{d}" and r.headers["Docker-Content-Digest"] == d
    h = c.request("HEAD", f"/v2/a/b/c/blobs/{d}")
    assert h.status == 200 and h.body == b""
    assert h.headers["Content-Length"] == str(len(data)) and h.headers["Docker-Content-Digest"] == d
    g = c.request("GET", f"/v2/a/b/c/blobs/{d}")
    assert g.status == 200 and g.body == data
    # Range GETs
    p = c.request("GET", f"/v2/a/b/c/blobs/{d}", headers={"Range": "bytes=1000-1999"})
    assert p.status == 206 and p.body == data[1000:2000]
    assert p.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    tail = c.request("GET", f"/v2/a/b/c/blobs/{d}", headers={"Range": "bytes=299000-"})
    assert tail.status == 206 and tail.body == data[299000:]
    bad = c.request("GET", f"/v2/a/b/c/blobs/{d}", headers={"Range": f"bytes={len(data)}-"})
    assert bad.status == 416 and bad.headers["Content-Range"] == f"bytes */{len(data)}"
    # a blob is only visible in the repository it was pushed to
    other = c.request("HEAD", f"/v2/other/blobs/{d}")
    assert other.status == 404
    assert c.request("GET", f"/v2/other/blobs/{d}").codes == ["BLOB_UNKNOWN"]


def test_bad_digest_is_refused_and_nothing_stored(registry):
    c = registry.client()
    data = b"the real content"
    wrong = sha256(b"something else")
    r = c.request("POST", f"/v2/x/blobs/uploads/?digest={wrong}", data)
    assert r.status == 400 and r.codes == ["DIGEST_INVALID"]
    assert c.request("HEAD", f"/v2/x/blobs/{wrong}").status == 404
    assert c.request("HEAD", f"/v2/x/blobs/{sha256(data)}").status == 404
    # also through a session
    loc = c.request("POST", "/v2/x/blobs/uploads/").headers["Location"]
    assert c.request("PATCH", loc, data).status == 202
    r = c.request("PUT", f"{loc}?digest={wrong}")
    assert r.status == 400 and r.codes == ["DIGEST_INVALID"]
    assert c.request("GET", loc).codes == ["BLOB_UPLOAD_UNKNOWN"]  # the session is gone
    malformed = c.request("POST", "/v2/x/blobs/uploads/?digest=sha256:nothex", data)
    assert malformed.status == 400 and malformed.codes == ["DIGEST_INVALID"]
    assert stored_blobs(registry.root) == set()
    assert os.listdir(registry.root / "uploads") == []


def test_chunked_upload_with_status_and_out_of_order_chunk(registry):
    c = registry.client()
    data = os.urandom(3 * 1024 * 1024 + 17)
    d = sha256(data)
    r = c.request("POST", "/v2/chunky/blobs/uploads/")
    assert r.status == 202 and r.headers["Range"] == "0-0"
    uuid = r.headers["Docker-Upload-UUID"]
    loc = r.headers["Location"]
    assert loc.endswith(uuid)
    a, b = 1024 * 1024, 2 * 1024 * 1024
    r = c.request("PATCH", loc, data[:a], {"Content-Range": f"0-{a - 1}",
                                             "Content-Type": "application/octet-stream"})
    assert r.status == 202 and r.headers["Range"] == f"0-{a - 1}"
    # a chunk that does not start where the upload is: 416 and the Range to resume from
    r = c.request("PATCH", loc, data[b:], {"Content-Range": f"{b}-{len(data) - 1}"})
    assert r.status == 416 and r.headers["Range"] == f"0-{a - 1}"
    assert r.codes == ["BLOB_UPLOAD_INVALID"]
    r = c.request("GET", loc)
    assert r.status == 204 and r.headers["Range"] == f"0-{a - 1}" and r.headers["Docker-Upload-UUID"] == uuid
    r = c.request("PATCH", loc, data[a:b], {"Content-Range": f"{a}-{b - 1}"})
    assert r.status == 202 and r.headers["Range"] == f"0-{b - 1}"
    # the last chunk rides on the PUT
    r = c.request("PUT", f"{loc}?digest={d}", data[b:], {"Content-Range": f"{b}-{len(data) - 1}"})
    assert r.status == 201 and r.headers["Docker-Content-Digest"] == d
    assert c.request("GET", f"/v2/chunky/blobs/{d}").body == data
    assert c.request("GET", loc).status == 404


def test_streamed_patch_without_content_range(registry):
    c = registry.client()
    data = os.urandom(500_000)
    loc = c.request("POST", "/v2/s/blobs/uploads/").headers["Location"]
    conn = c.conn()
    conn.putrequest("PATCH", loc)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for i in range(0, len(data), 65536):
        piece = data[i:i + 65536]
        conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
    conn.send(b"0\r\n\r\n")
    r = conn.getresponse()
    assert r.status == 202 and r.headers["Range"] == f"0-{len(data) - 1}"
    conn.close()
    assert c.request("PUT", f"{loc}?digest={sha256(data)}").status == 201


def test_resume_after_dropped_connection(registry):
    c = registry.client()
    data = os.urandom(2 * 1024 * 1024)
    d = sha256(data)
    loc = c.request("POST", "/v2/resume/blobs/uploads/").headers["Location"]
    half = 1024 * 1024 + 123
    s = socket.create_connection((registry.host, registry.port))
    s.sendall(f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n"
              f"Content-Range: 0-{len(data) - 1}\r\n\r\n".encode() + data[:half])
    time.sleep(0.2)  # let the bytes reach the server before the cut (not an assertion)
    s.close()
    r = c.request("GET", loc)
    assert r.status == 204
    offset = int(r.headers["Range"].split("-")[1]) + 1
    assert 0 < offset <= half
    # continue from where the server is, then finish
    r = c.request("PATCH", loc, data[offset:], {"Content-Range": f"{offset}-{len(data) - 1}"})
    assert r.status == 202, r.body
    r = c.request("PUT", f"{loc}?digest={d}")
    assert r.status == 201, r.body
    assert c.request("GET", f"/v2/resume/blobs/{d}").body == data


def test_cancel_upload(registry):
    c = registry.client()
    loc = c.request("POST", "/v2/x/blobs/uploads/").headers["Location"]
    c.request("PATCH", loc, b"abc")
    assert c.request("DELETE", loc).status == 204
    assert c.request("GET", loc).codes == ["BLOB_UPLOAD_UNKNOWN"]
    assert c.request("PATCH", loc, b"d").status == 404
    # an upload of another repository is unknown here
    loc2 = c.request("POST", "/v2/y/blobs/uploads/").headers["Location"]
    assert c.request("GET", loc2.replace("/v2/y/", "/v2/x/")).status == 404


def test_cross_repo_mount(registry):
    c = registry.client()
    d = c.push_blob("src/repo", b"shared layer")
    r = c.request("POST", f"/v2/dst/repo/blobs/uploads/?mount={d}&from=src/repo")
    assert r.status == 201 and r.headers["Location"] == f"/v2/dst/repo/blobs/{d}"
    assert c.request("GET", f"/v2/dst/repo/blobs/{d}").body == b"shared layer"
    # not in the source: fall back to a new upload session
    missing = sha256(b"nobody has this")
    r = c.request("POST", f"/v2/dst/repo/blobs/uploads/?mount={missing}&from=src/repo")
    assert r.status == 202 and "Docker-Upload-UUID" in r.headers
    r = c.request("POST", f"/v2/dst2/blobs/uploads/?mount={d}&from=unrelated")
    assert r.status == 202


def test_manifests_by_tag_and_digest(registry):
    c = registry.client()
    md, m = c.push_image("lib/app", "v1", media_type=DOCKER_MANIFEST)
    body = json.dumps(m).encode()
    for ref in ("v1", md):
        r = c.request("GET", f"/v2/lib/app/manifests/{ref}", headers={"Accept": DOCKER_MANIFEST})
        assert r.status == 200 and r.body == body
        assert r.headers["Content-Type"] == DOCKER_MANIFEST and r.headers["Docker-Content-Digest"] == md
        h = c.request("HEAD", f"/v2/lib/app/manifests/{ref}")
        assert h.status == 200 and h.body == b"" and h.headers["Content-Length"] == str(len(body))
        assert h.headers["Docker-Content-Digest"] == md
    # PUT by digest
    r = c.push_manifest("lib/app", md, body, DOCKER_MANIFEST)
    assert r.status == 201 and r.headers["Location"] == f"/v2/lib/app/manifests/{md}"
    # unknown tag / repository
    assert c.request("GET", "/v2/lib/app/manifests/nope").codes == ["MANIFEST_UNKNOWN"]
    assert c.request("GET", "/v2/lib/none/manifests/v1").codes == ["NAME_UNKNOWN"]
    # a manifest is readable as a blob too
    assert c.request("GET", f"/v2/lib/app/blobs/{md}").body == body


def test_manifest_naming_missing_blob_is_refused_and_not_stored(registry):
    c = registry.client()
    cd = c.push_blob("m", b"{}")
    missing = sha256(b"layer never uploaded")
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 2},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": missing, "size": 3}]}
    r = c.push_manifest("m", "v1", m)
    assert r.status == 404 and r.codes == ["MANIFEST_BLOB_UNKNOWN"]
    assert missing in json.dumps(r.json())
    assert c.request("GET", "/v2/m/manifests/v1").status == 404
    assert c.request("GET", "/v2/m/tags/list").json()["tags"] == []
    assert stored_blobs(registry.root) == {cd}
    # a blob present in another repository does not count
    other = c.push_blob("elsewhere", b"layer elsewhere")
    m["layers"][0].update(digest=other, size=15)
    assert c.push_manifest("m", "v1", m).codes == ["MANIFEST_BLOB_UNKNOWN"]


def test_bad_manifests(registry):
    c = registry.client()
    md, m = c.push_image("bad", "v1")
    body = json.dumps(m).encode()
    # digest reference that does not match the body
    wrong = sha256(b"other")
    r = c.push_manifest("bad", wrong, body)
    assert r.status == 400 and r.codes == ["DIGEST_INVALID"]
    assert c.request("GET", f"/v2/bad/manifests/{wrong}").status == 404
    for junk, ctype in ((b"{not json", OCI_MANIFEST), (b'{"schemaVersion": 1}', OCI_MANIFEST),
                        (body, "application/vnd.docker.distribution.manifest.list.v2+json")):
        r = c.push_manifest("bad", "v2", junk, ctype)
        assert r.status == 400 and r.codes == ["MANIFEST_INVALID"], (junk, r.body)
    assert c.request("GET", "/v2/bad/tags/list").json()["tags"] == ["v1"]


def test_deeply_nested_manifest_is_invalid_not_a_crash(registry):
    """100k nested arrays used to end the parse in a RecursionError (500)."""
    c = registry.client()
    _, m = c.push_image("deep", "v1")
    for junk in (b"[" * 100_000 + b"]" * 100_000,
                 b'{"schemaVersion": 2, "annotations": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                 b'{"schemaVersion": 2, "x": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001):
        r = c.push_manifest("deep", "v2", junk, OCI_MANIFEST)
        assert r.status == 400 and r.codes == ["MANIFEST_INVALID"], r.body[:200]
    assert c.request("GET", "/v2/deep/tags/list").json()["tags"] == ["v1"]
    assert c.push_manifest("deep", "v3", m).status == 201   # and it goes on serving


@pytest.mark.parametrize("tag", [".dot", "-dash", "a" * 129, "sp%20ace"])
def test_tag_syntax_errors(registry, tag):
    c = registry.client()
    _, m = c.push_image("t", "ok")
    r = c.push_manifest("t", tag, m)
    assert r.status == 400 and r.codes == ["MANIFEST_INVALID"]   # TAG_INVALID is not a spec code
    assert c.request("GET", "/v2/t/tags/list").json()["tags"] == ["ok"]


def test_name_invalid(registry):
    c = registry.client()
    r = c.request("GET", "/v2/UPPER/tags/list")
    assert r.status == 400 and r.codes == ["NAME_INVALID"]
    r = c.request("POST", "/v2/a__/blobs/uploads/")
    assert r.status == 400 and r.codes == ["NAME_INVALID"]


def test_index_and_negotiation(registry):
    c = registry.client()
    amd, am = c.push_image("multi", "amd64")
    arm, armm = c.push_image("multi", "arm64")
    index = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": arm, "size": len(json.dumps(armm)),
         "platform": {"os": "linux", "architecture": "arm64"}},
        {"mediaType": OCI_MANIFEST, "digest": amd, "size": len(json.dumps(am)),
         "platform": {"os": "linux", "architecture": "amd64"}}]}
    assert c.push_manifest("multi", "latest", index, DOCKER_LIST).status == 201
    r = c.request("GET", "/v2/multi/manifests/latest", headers={"Accept": f"{DOCKER_LIST}, {OCI_MANIFEST}"})
    assert r.headers["Content-Type"] == DOCKER_LIST
    # a client that only knows single manifests gets this platform's entry
    r = c.request("GET", "/v2/multi/manifests/latest", headers={"Accept": OCI_MANIFEST})
    assert r.status == 200 and r.headers["Docker-Content-Digest"] == amd
    # an index naming a manifest this repository does not have
    index["manifests"][0]["digest"] = sha256(b"nope")
    r = c.push_manifest("multi", "broken", index, DOCKER_LIST)
    assert r.codes == ["MANIFEST_BLOB_UNKNOWN"]


def test_tags_and_catalog_pagination(registry):
    c = registry.client()
    _, m = c.push_image("pag/a", "t0")
    for t in ("t3", "t1", "t4", "t2"):
        assert c.push_manifest("pag/a", t, m).status == 201
    for name in ("pag/b", "pag/c", "zz"):
        c.push_blob(name, b"x")
    r = c.request("GET", "/v2/pag/a/tags/list")
    assert r.json() == {"name": "pag/a", "tags": ["t0", "t1", "t2", "t3", "t4"]} and "Link" not in r.headers
    r = c.request("GET", "/v2/pag/a/tags/list?n=2")
    assert r.json()["tags"] == ["t0", "t1"]
    assert r.headers["Link"] == '</v2/pag/a/tags/list?n=2&last=t1>; rel="next"'
    r = c.request("GET", "/v2/pag/a/tags/list?n=2&last=t3")
    assert r.json()["tags"] == ["t4"] and "Link" not in r.headers
    bad_n = c.request("GET", "/v2/pag/a/tags/list?n=x")   # no spec code for it: plain text
    assert bad_n.status == 400 and b"invalid number of results" in bad_n.body
    assert c.request("GET", "/v2/nothere/tags/list").codes == ["NAME_UNKNOWN"]
    pages, path = [], "/v2/_catalog?n=2"
    while path:
        r = c.request("GET", path)
        pages.append(r.json()["repositories"])
        link = r.headers.get("Link")
        path = link[1:link.index(">")] if link else None
    assert pages == [["pag/a", "pag/b"], ["pag/c", "zz"]] or pages == [["pag/a", "pag/b"], ["pag/c", "zz"], []]


def test_referrers(registry):
    c = registry.client()
    md, m = c.push_image("ref", "v1")
    body_len = len(json.dumps(m).encode())
    empty = c.push_blob("ref", b"{}")

    def artifact(kind: str, payload: bytes):
        ld = c.push_blob("ref", payload)
        art = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
               "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
               "layers": [{"mediaType": "application/octet-stream", "digest": ld, "size": len(payload)}],
               "subject": {"mediaType": OCI_MANIFEST, "digest": md, "size": body_len},
               "annotations": {"kind": kind}}
        body = json.dumps(art).encode()
        r = c.push_manifest("ref", sha256(body), body)
        assert r.status == 201 and r.headers["OCI-Subject"] == md
        return sha256(body)

    sig = artifact("application/vnd.example.sig", b"signature")
    sbom = artifact("application/vnd.example.sbom", b"sbom")
    r = c.request("GET", f"/v2/ref/referrers/{md}")
    assert r.status == 200 and r.headers["Content-Type"] == OCI_INDEX
    got = {d["digest"]: d for d in r.json()["manifests"]}
    assert set(got) == {sig, sbom}
    assert got[sig]["artifactType"] == "application/vnd.example.sig"
    assert got[sig]["annotations"] == {"kind": "application/vnd.example.sig"}
    r = c.request("GET", f"/v2/ref/referrers/{md}?artifactType=application/vnd.example.sbom")
    assert [d["digest"] for d in r.json()["manifests"]] == [sbom]
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert c.request("GET", f"/v2/ref/referrers/{sha256(b'none')}").json()["manifests"] == []
    # deleting a referrer removes it from the list
    assert c.request("DELETE", f"/v2/ref/manifests/{sig}").status == 202
    r = c.request("GET", f"/v2/ref/referrers/{md}")
    assert [d["digest"] for d in r.json()["manifests"]] == [sbom]


def test_deletes(registry):
    c = registry.client()
    md, m = c.push_image("del", "v1")
    assert c.push_manifest("del", "v2", m).status == 201
    assert c.request("DELETE", "/v2/del/manifests/v2").status == 202  # a tag
    assert c.request("GET", "/v2/del/tags/list").json()["tags"] == ["v1"]
    assert c.request("GET", f"/v2/del/manifests/{md}").status == 200
    assert c.request("DELETE", f"/v2/del/manifests/{md}").status == 202  # the manifest and its tags
    assert c.request("GET", "/v2/del/manifests/v1").codes == ["MANIFEST_UNKNOWN"]
    assert c.request("DELETE", f"/v2/del/manifests/{md}").codes == ["MANIFEST_UNKNOWN"]
    layer = m["layers"][0]["digest"]
    assert c.request("DELETE", f"/v2/del/blobs/{layer}").status == 202
    assert c.request("HEAD", f"/v2/del/blobs/{layer}").status == 404
    assert c.request("DELETE", f"/v2/del/blobs/{layer}").codes == ["BLOB_UNKNOWN"]


def test_search(registry):
    c = registry.client()
    for name in ("x/busybox", "y/busybox-extra", "alpine"):
        c.push_blob(name, b"x")
    r = c.request("GET", "/v1/search?q=busybox&n=25")
    assert r.status == 200
    body = r.json()
    assert body["query"] == "busybox" and body["num_results"] == 2
    assert [x["name"] for x in body["results"]] == ["x/busybox", "y/busybox-extra"]
    assert set(body["results"][0]) >= {"name", "description", "star_count", "is_official", "is_automated"}
    assert c.request("GET", "/v1/search?q=busybox&n=1").json()["results"] == [body["results"][0]]


def test_read_only(tmp_path):
    with running_registry(tmp_path / "root") as reg:
        md, _ = reg.client().push_image("ro", "v1")
    with running_registry(tmp_path / "root", "--read-only") as reg:
        c = reg.client()
        assert c.request("GET", f"/v2/ro/manifests/{md}").status == 200
        for method, path in (("POST", "/v2/ro/blobs/uploads/"), ("DELETE", f"/v2/ro/manifests/{md}"),
                             ("PUT", "/v2/ro/manifests/v2")):
            r = c.request(method, path, b"{}")
            assert r.status == 405 and r.codes == ["UNSUPPORTED"]


def test_unknown_paths_and_methods(registry):
    c = registry.client()
    assert c.request("GET", "/v2/a/unknown/thing").status == 404
    r = c.request("PATCH", "/v2/a/tags/list")
    assert r.status == 405 and r.codes == ["UNSUPPORTED"]
