"""Bad input gets a clear 4xx answer, and a refused upload stores nothing."""

from __future__ import annotations

import io
import json
import os
import tarfile
import uuid
from urllib.parse import quote

import pytest

from imgtar import saved_image, tar_files


def _msg(body: bytes) -> str:
    return json.loads(body)["message"]


def test_bad_queries_and_unknown_names(dockyard_daemon, saved_busybox):
    d = dockyard_daemon
    path, image_id = saved_busybox
    status, _, body = d.request("POST", "/v1.47/images/load?quiet=1", body=path.read_bytes(),
                                headers={"Content-Type": "application/x-tar"})
    assert status == 200, body
    for q in ("filters=%7Bbad", "filters=" + quote('["a"]'), "filters=" + quote('{"a": 1}')):
        status, headers, body = d.request("GET", "/v1.47/images/json?" + q)
        assert status == 400, q
        assert headers["Content-Type"].startswith("application/json") and _msg(body)
    status, _, body = d.request("GET", "/v1.47/images/json?filters=" +
                                quote('{"colour":{"red":true}}'))
    assert status == 400 and _msg(body) == "invalid filter 'colour'"
    status, _, body = d.request("GET", "/v1.47/images/nope/json")
    assert status == 404 and _msg(body) == "No such image: nope:latest"
    status, _, body = d.request("GET", "/v1.47/images/sha256:" + "0" * 64 + "/history")
    assert status == 404
    status, _, body = d.request("DELETE", "/v1.47/images/nope")
    assert status == 404
    status, _, body = d.request("POST", "/v1.47/images/am/busybox:v1/tag?repo=Bad//x&tag=v1")
    assert status == 400 and _msg(body)
    status, _, body = d.request("POST", "/v1.47/images/am/busybox:v1/tag?repo=ok&tag=bad:tag")
    assert status == 400
    status, _, body = d.request("POST", "/v1.47/images/am/busybox:v1/tag")
    assert status == 400 and "repository name" in _msg(body)
    status, _, body = d.request("GET", "/v1.47/images/get")
    assert status == 400
    status, _, body = d.request("POST", "/v1.47/images/create")
    assert status == 400 and "fromSrc or fromImage" in _msg(body)
    status, _, body = d.request("POST", "/v1.47/images/create?fromSrc=ftp://x/y", body=b"")
    assert status == 400
    status, _, body = d.request("POST", "/v1.47/images/prune?filters=" +
                                quote('{"colour":["x"]}'))
    assert status == 400
    # nothing above changed the store
    status, _, body = d.request("GET", "/v1.47/images/json")
    assert [i["Id"] for i in json.loads(body)] == [image_id]


def _hostile_layers(outside: str) -> dict[str, bytes]:
    """Layer tars that try to write outside the snapshot."""
    def tar(entries) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for kind, name, arg in entries:
                ti = tarfile.TarInfo(name)
                if kind == "file":
                    ti.size = len(arg)
                    tf.addfile(ti, io.BytesIO(arg))
                elif kind == "symlink":
                    ti.type, ti.linkname = tarfile.SYMTYPE, arg
                    tf.addfile(ti)
                elif kind == "hardlink":
                    ti.type, ti.linkname = tarfile.LNKTYPE, arg
                    tf.addfile(ti)
        return buf.getvalue()

    return {
        "traversal": tar([("file", "../../../" + outside.lstrip("/") + "/t", b"x")]),
        "absolute": tar([("file", outside + "/abs", b"x")]),
        "symlink-escape": tar([("symlink", "esc", outside), ("file", "esc/through", b"x")]),
        "hardlink-escape": tar([("hardlink", "hl", "/etc/passwd")]),
        "garbage": b"definitely not a tar archive" * 40,
        "truncated": tar([("file", "big", b"y" * 100000)])[:20000],
    }


def _store_is_empty(d) -> None:
    status, _, body = d.request("GET", "/v1.47/images/json?all=1")
    assert status == 200 and json.loads(body) == []
    blobs = d.data_root / "content" / "blobs" / "sha256"
    assert not blobs.exists() or os.listdir(blobs) == []
    ingest = d.data_root / "content" / "ingest"
    assert not ingest.exists() or os.listdir(ingest) == []


def test_hostile_archives_are_refused_and_nothing_is_stored(dockyard_daemon, tmp_path):
    d = dockyard_daemon
    outside = str(tmp_path / f"outside-{uuid.uuid4().hex[:8]}")
    os.mkdir(outside)
    for name, layer in _hostile_layers(outside).items():
        # import: the layer itself is the upload
        status, _, body = d.request("POST", "/v1.47/images/create?fromSrc=-&repo=evil:" + name[:8],
                                    body=layer, headers={"Content-Type": "text/plain"})
        # load: the same layer inside a docker-save archive
        archive, _ = saved_image(layer, [f"evil:{name[:8]}"])
        status2, _, body2 = d.request("POST", "/v1.47/images/load?quiet=1", body=archive,
                                      headers={"Content-Type": "application/x-tar"})
        assert os.listdir(outside) == [], name
        if name == "symlink-escape":
            # like Docker, a symlink in a parent component resolves inside the root
            # (as if chrooted): the entry lands in the snapshot, never outside
            for st, b in ((status, body), (status2, body2)):
                assert st == 200 or 400 <= st < 500, (name, st, b)
            d.request("POST", "/v1.47/images/prune?filters=" + quote('{"dangling":["false"]}'))
        else:
            assert 400 <= status < 500, (name, status, body)
            assert _msg(body), name
            # load answers as dockerd: a 200 whose stream ends with the error
            assert status2 == 200, (name, status2, body2)
            lines = [json.loads(ln) for ln in body2.splitlines() if ln.strip()]
            assert lines and lines[-1].get("error"), (name, body2)
        _store_is_empty(d)
    # the real CLI reports the refusal and exits 1
    bad = tmp_path / "bad.tar"
    bad.write_bytes(saved_image(_hostile_layers(outside)["traversal"], ["evil:x"])[0])
    r = d.docker("load", "-i", str(bad))
    assert r.returncode == 1 and "path escapes the root" in r.stderr, r
    r = d.dockyard("load", "-i", str(bad))
    assert r.returncode == 1 and r.stderr.strip(), r
    _store_is_empty(d)


def test_malformed_archives_for_load(dockyard_daemon, busybox_tar):
    d = dockyard_daemon
    layer = busybox_tar.read_bytes()
    good, image_id = saved_image(layer, ["ok:1"])
    with tarfile.open(fileobj=io.BytesIO(good)) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}
    cases = {
        "malformed manifest JSON": {**files, "manifest.json": b"[{not json"},
        "manifest not a list": {**files, "manifest.json": b'{"Config": 1}'},
        "missing layer": {k: v for k, v in files.items() if not k.endswith("layer.tar")},
        "missing config": {k: v for k, v in files.items() if not k.startswith(image_id[7:])},
        "wrong diff id": {**files, **{k: layer[:4096] + bytes([layer[4096] ^ 0xFF]) +
                                      layer[4097:] for k in files if k.endswith("layer.tar")}},
        "empty archive": {},
    }
    for name, content in cases.items():
        status, _, body = d.request("POST", "/v1.47/images/load", body=tar_files(content),
                                    headers={"Content-Type": "application/x-tar"})
        # refused up front (4xx), or in-band after the 200 when output had started
        if status == 200:
            lines = [json.loads(ln) for ln in body.splitlines() if ln.strip()]
            assert lines and "error" in lines[-1], (name, body)
        else:
            assert 400 <= status < 500, (name, status, body)
        _store_is_empty(d)
    # and the good archive still loads afterwards
    status, _, body = d.request("POST", "/v1.47/images/load?quiet=1", body=good,
                                headers={"Content-Type": "application/x-tar"})
    assert status == 200 and b"Loaded image: ok:1" in body


@pytest.mark.parametrize("path", ["/v1.47/images/json", "/v1.47/info"])
def test_wrong_method_is_a_json_error(dockyard_daemon, path):
    status, headers, body = dockyard_daemon.request("PUT", path)
    assert status in (404, 405) and _msg(body)
