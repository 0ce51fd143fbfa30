"""A registry killed with SIGKILL mid-upload, and garbage collection."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

from registry_helpers import running_registry, sha256, start_registry, stop_registry_proc


def blob_files(root) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(root / "blobs"):
        for f in files:
            if not f.startswith("."):
                with open(os.path.join(dirpath, f), "rb") as fh:
                    out["sha256:" + f] = fh.read()
    return out


def test_kill_9_during_chunked_upload_then_retry(tmp_path):
    root = tmp_path / "root"
    data = os.urandom(6 * 1024 * 1024)
    d = sha256(data)
    reg = start_registry(root)
    try:
        c = reg.client()
        loc = c.request("POST", "/v2/crash/blobs/uploads/").headers["Location"]
        first = 1024 * 1024
        assert c.request("PATCH", loc, data[:first], {"Content-Range": f"0-{first - 1}"}).status == 202
        # a second chunk is on the wire when the registry dies
        s = socket.create_connection((reg.host, reg.port))
        s.sendall(f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data) - first}\r\n"
                  f"Content-Range: {first}-{len(data) - 1}\r\n\r\n".encode())
        s.sendall(data[first:first + 2 * 1024 * 1024])
        time.sleep(0.3)  # let it write some of it (not an assertion)
        reg.proc.send_signal(signal.SIGKILL)
        reg.proc.wait()
        s.close()
    finally:
        stop_registry_proc(reg.proc)
    # nothing half-uploaded is a blob
    assert d not in blob_files(root)
    assert all(sha256(v) == k for k, v in blob_files(root).items())

    with running_registry(root) as reg:
        c = reg.client()
        assert c.request("HEAD", f"/v2/crash/blobs/{d}").status == 404
        assert c.request("GET", f"/v2/crash/blobs/{d}").codes == ["BLOB_UNKNOWN"]
        # a PUT now, with the wrong content in place, is refused rather than stored
        # -- first the client asks where the session stands and resumes from there
        r = c.request("GET", loc)
        assert r.status == 204
        offset = int(r.headers["Range"].split("-")[1]) + 1
        assert first <= offset < len(data)
        r = c.request("PATCH", loc, data[offset:], {"Content-Range": f"{offset}-{len(data) - 1}"})
        assert r.status == 202
        r = c.request("PUT", f"{loc}?digest={d}")
        assert r.status == 201, r.body
        assert c.request("GET", f"/v2/crash/blobs/{d}").body == data
        # a client that starts over instead also succeeds
        assert c.push_blob("crash2", data) == d


def test_truncated_session_after_crash_never_commits_wrong_content(tmp_path):
    root = tmp_path / "root"
    data = os.urandom(2 * 1024 * 1024)
    with running_registry(root) as reg:
        c = reg.client()
        loc = c.request("POST", "/v2/t/blobs/uploads/").headers["Location"]
        assert c.request("PATCH", loc, data[:1000]).status == 202
        reg.proc.send_signal(signal.SIGKILL)
        reg.proc.wait()
    with running_registry(root) as reg:
        c = reg.client()
        # the client wrongly believes the whole blob went through
        r = c.request("PUT", f"{loc}?digest={sha256(data)}")
        assert r.status == 400 and r.codes == ["DIGEST_INVALID"]
        assert c.request("HEAD", f"/v2/t/blobs/{sha256(data)}").status == 404
    assert blob_files(root) == {}


def gc(root, *args) -> str:
    r = subprocess.run([sys.executable, "-m", "dockyard", "registry", "gc", "--root", str(root), *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_gc(tmp_path):
    root = tmp_path / "root"
    with running_registry(root) as reg:
        c = reg.client()
        keep_md, keep_m = c.push_image("app", "v1", layers=[b"kept layer 1", b"kept layer 2"])
        # an index and a referrer keep what they point at
        idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
               "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": keep_md,
                              "size": len(json.dumps(keep_m))}]}
        assert c.push_manifest("app", "multi", idx, "application/vnd.oci.image.index.v1+json").status == 201
        # an untagged manifest (pushed by digest) still counts as referenced
        other_md, other_m = c.push_image("app", "tmp", layers=[b"untagged layer"])
        assert c.request("DELETE", "/v2/app/manifests/tmp").status == 202
        # garbage: a blob nobody references, and the layer of a deleted manifest
        loose = c.push_blob("app", b"loose blob")
        gone_md, gone_m = c.push_image("app", "gone", layers=[b"layer of a deleted manifest"])
        assert c.request("DELETE", f"/v2/app/manifests/{gone_md}").status == 202
        gone_layer = gone_m["layers"][0]["digest"]
        # an upload in progress
        loc = c.request("POST", "/v2/app/blobs/uploads/").headers["Location"]
        assert c.request("PATCH", loc, b"in progress ").status == 202

        before = blob_files(root)
        referenced = {keep_md, keep_m["config"]["digest"], *[l["digest"] for l in keep_m["layers"]],
                      sha256(json.dumps(idx).encode()), other_md, other_m["config"]["digest"],
                      other_m["layers"][0]["digest"]}
        assert referenced <= set(before)

        # young unreferenced blobs are kept by default (an upload may just have finished)
        out = gc(root)
        assert "0 blobs deleted" in out and blob_files(root) == before

        out = gc(root, "--grace", "0", "--dry-run")
        assert f"would delete blob {loose}" in out and f"would delete blob {gone_layer}" in out
        assert blob_files(root) == before

        out = gc(root, "--grace", "0")
        after = blob_files(root)
        assert loose not in after and gone_layer not in after and gone_md not in after
        assert referenced <= set(after)
        assert f"deleted blob {loose}" in out
        assert c.request("HEAD", f"/v2/app/blobs/{loose}").status == 404
        for desc in keep_m["layers"]:
            assert c.request("GET", f"/v2/app/blobs/{desc['digest']}").status == 200
        # the upload in progress was untouched and completes
        rest = b"and done"
        r = c.request("PUT", f"{loc}?digest={sha256(b'in progress ' + rest)}", rest)
        assert r.status == 201
        # the image still pulls whole
        r = c.request("GET", "/v2/app/manifests/v1")
        assert r.status == 200 and r.headers["Docker-Content-Digest"] == keep_md


def test_gc_sweeps_abandoned_uploads_only_when_old(tmp_path):
    root = tmp_path / "root"
    with running_registry(root) as reg:
        c = reg.client()
        loc = c.request("POST", "/v2/a/blobs/uploads/").headers["Location"]
        c.request("PATCH", loc, b"abandoned")
    uuid = loc.rsplit("/", 1)[1]
    assert "0 abandoned uploads deleted" in gc(root, "--grace", "0")
    assert (root / "uploads" / uuid).is_dir()
    old = time.time() - 8 * 86400
    os.utime(root / "uploads" / uuid / "data", (old, old))
    assert f"deleted abandoned upload {uuid}" in gc(root)
    assert not (root / "uploads" / uuid).exists()


def test_gc_bad_root(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dockyard", "registry", "gc", "--root", str(tmp_path / "nope")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "not a directory" in r.stderr


def test_gc_delete_untagged_keeps_referrers_of_kept_manifests(tmp_path):
    root = tmp_path / "root"
    with running_registry(root) as reg:
        c = reg.client()
        kept_md, kept_m = c.push_image("u", "v1", layers=[b"tagged layer"])
        loose_md, loose_m = c.push_image("u", "tmp", layers=[b"untagged layer"])
        assert c.request("DELETE", "/v2/u/manifests/tmp").status == 202
        empty = c.push_blob("u", b"{}")

        def referrer(subject_md, subject_m, payload):
            ld = c.push_blob("u", payload)
            art = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "artifactType": "application/x-sig",
                   "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
                   "layers": [{"mediaType": "application/octet-stream", "digest": ld, "size": len(payload)}],
                   "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject_md,
                               "size": len(json.dumps(subject_m))}}
            body = json.dumps(art).encode()
            assert c.push_manifest("u", sha256(body), body).status == 201
            return sha256(body), ld

        sig_kept, sig_kept_layer = referrer(kept_md, kept_m, b"signature of v1")
        sig_loose, sig_loose_layer = referrer(loose_md, loose_m, b"signature of tmp")

        out = gc(root, "--grace", "0", "--delete-untagged", "--dry-run")
        assert f"would delete untagged manifest u@{loose_md}" in out
        assert c.request("GET", f"/v2/u/manifests/{loose_md}").status == 200

        out = gc(root, "--grace", "0", "--delete-untagged")
        assert f"deleted untagged manifest u@{loose_md}" in out
        assert f"deleted untagged manifest u@{sig_loose}" in out
        assert c.request("GET", f"/v2/u/manifests/{loose_md}").status == 404
        assert c.request("GET", f"/v2/u/manifests/{sig_loose}").status == 404
        after = blob_files(root)
        assert loose_m["layers"][0]["digest"] not in after and sig_loose_layer not in after
        assert c.request("GET", f"/v2/u/manifests/{sig_kept}").status == 200
        assert sig_kept_layer in after and kept_m["layers"][0]["digest"] in after
        refs = c.request("GET", f"/v2/u/referrers/{kept_md}").json()["manifests"]
        assert [r["digest"] for r in refs] == [sig_kept]
