"""Pull and push (the daemon's service layer) against real registries on loopback:
our `dockyard registry` and Debian's docker-registry (CNCF distribution)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess

import pytest

from distribution_helpers import (CuttingProxy, docker_archive, random_tar, running_docker_registry,
                                  running_registry, write_htpasswd)
from dockyard.errors import DockyardError, NotFound, Unauthorized
from dockyard.images.pull import progress_string, pull_sync
from dockyard.images.push import push_sync


def _statuses(msgs):
    return [(m.get("id"), m.get("status")) for m in msgs if "status" in m]


def _import(svc, data: bytes, name: str, tag: str = "v1") -> str:
    return svc.import_image(io.BytesIO(data), repo=name, tag=tag)


def _blobs(svc) -> set[str]:
    return {i.digest for i in svc.content.list()}


def _layer_dir(svc, image_id: str):
    row = svc.store.query_one("SELECT top_chain FROM images WHERE id = ?", (image_id,))
    return svc.snapshotter.layer_dir(row["top_chain"])


@pytest.fixture
def reg(tmp_path):
    with running_registry(tmp_path / "reg") as r:
        yield r


def test_progress_string_matches_docker():
    assert progress_string(32768, 2226941) == "[>                                                  ]  32.77kB/2.227MB"
    assert progress_string(2226941, 2226941) == "[==================================================>]  2.227MB/2.227MB"
    assert progress_string(0, 0) == ""


def test_push_pull_round_trip_ours(make_service, reg, busybox_tar_bytes):
    a = make_service("a")
    name = f"{reg.addr}/am/busybox"
    iid = _import(a, busybox_tar_bytes, name)
    msgs = push_sync(a, name, "v1")
    st = _statuses(msgs)
    assert st[0] == (None, f"The push refers to repository [{name}]")
    assert ("Preparing" in [s for _, s in st]) and ("Pushed" in [s for _, s in st])
    aux = msgs[-1]["aux"]
    assert aux["Tag"] == "v1" and aux["Digest"].startswith("sha256:")
    assert msgs[-2]["status"] == f"v1: digest: {aux['Digest']} size: {aux['Size']}"
    # the push is recorded as a repo digest, as dockerd does
    assert f"{name}@{aux['Digest']}" in a.inspect(f"{name}:v1")["RepoDigests"]

    # a second push uploads nothing
    st2 = _statuses(push_sync(a, name, "v1"))
    assert [s for i, s in st2 if i] == ["Preparing", "Layer already exists"]

    events = []
    b = make_service("b", emit=lambda *ev: events.append(ev))
    msgs = pull_sync(b, f"{name}:v1")
    st = _statuses(msgs)
    assert st[0] == ("v1", "Pulling from am/busybox")
    assert ("image", "pull", f"{name}:v1", {"name": name}) in events
    layer_id = next(i for i, s in st if s == "Pulling fs layer")
    seq = [s for i, s in st if i == layer_id]
    assert seq[0] == "Pulling fs layer" and seq[-1] == "Pull complete"
    assert seq.index("Download complete") < seq.index("Pull complete")
    assert "Verifying Checksum" in seq and "Extracting" in seq
    assert st[-2] == (None, f"Digest: {aux['Digest']}")
    assert st[-1] == (None, f"Status: Downloaded newer image for {name}:v1")
    info = b.inspect(f"{name}:v1")
    assert info["Id"] == iid
    assert info["RepoDigests"] == [f"{name}@{aux['Digest']}"]
    root = _layer_dir(b, iid)
    with open("/bin/busybox", "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    with open(root / "bin" / "busybox", "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == want
    out = subprocess.run([str(root / "bin" / "busybox"), "echo", "pulled"], capture_output=True)
    assert out.stdout == b"pulled\n"
    # no download ingest is left behind
    assert b.content.ingests() == []


def test_pull_by_digest_and_up_to_date(make_service, reg, busybox_tar_bytes, tmp_path):
    a = make_service("a")
    name = f"{reg.addr}/x/bb"
    iid = _import(a, busybox_tar_bytes, name)
    digest = push_sync(a, name, "v1")[-1]["aux"]["Digest"]
    proxy = CuttingProxy((reg.host, reg.port))
    try:
        pname = f"{proxy.addr}/x/bb"
        b = make_service("b")
        st = _statuses(pull_sync(b, f"{pname}@{digest}"))
        assert st[0] == (digest, "Pulling from x/bb")
        assert st[-1] == (None, f"Status: Downloaded newer image for {pname}@{digest}")
        assert b.inspect(f"{pname}@{digest}")["Id"] == iid
        assert b.inspect(f"{pname}@{digest}")["RepoTags"] == []
        # by tag now: the image is here; only the manifest is fetched, no blob
        blobs_before = _blobs(b)
        proxy.request_lines.clear()
        st = _statuses(pull_sync(b, f"{pname}:v1"))
        assert st == [("v1", "Pulling from x/bb"), (None, f"Digest: {digest}"),
                      (None, f"Status: Downloaded newer image for {pname}:v1")]
        st = _statuses(pull_sync(b, f"{pname}:v1"))
        assert st[-1] == (None, f"Status: Image is up to date for {pname}:v1")
        assert not [line for line in proxy.request_lines if b"/blobs/" in line]
        assert _blobs(b) == blobs_before
        # a wrong digest in the reference
        bad = "sha256:" + "1" * 64
        with pytest.raises(NotFound, match="manifest for .* not found: manifest unknown"):
            pull_sync(b, f"{pname}@{bad}")
    finally:
        proxy.close()


def test_unknown_repository_and_tag(make_service, reg):
    b = make_service("b")
    with pytest.raises(NotFound) as e:
        pull_sync(b, f"{reg.addr}/no/such:latest")
    assert "not found" in str(e.value)
    with pytest.raises(NotFound):
        push_sync(b, f"{reg.addr}/no/such", "latest")
    from distribution_helpers import free_port
    port = free_port()
    with pytest.raises(DockyardError, match=f'Get "http://127.0.0.1:{port}/v2/": dial tcp '
                                            f'127.0.0.1:{port}: connect: connection refused'):
        pull_sync(b, f"127.0.0.1:{port}/x:v1")


def test_all_tags_and_cross_repo_mount(make_service, reg, busybox_tar_bytes):
    a = make_service("a")
    name = f"{reg.addr}/lib/bb"
    iid = _import(a, busybox_tar_bytes, name, "one")
    a.tag(iid, name, "two")
    msgs = push_sync(a, name)            # no tag: every tag of the repository
    assert sorted(m["aux"]["Tag"] for m in msgs if "aux" in m) == ["one", "two"]
    # the same image into another repository: the layer is mounted, not uploaded
    other = f"{reg.addr}/other/bb"
    a.tag(iid, other, "v1")
    st = _statuses(push_sync(a, other, "v1"))
    assert any(s == "Mounted from lib/bb" for _, s in st), st
    b = make_service("b")
    msgs = pull_sync(b, name, all_tags=True)
    st = _statuses(msgs)
    assert ("one", "Pulling from lib/bb") in st and ("two", "Pulling from lib/bb") in st
    assert st[-1] == (None, f"Status: Downloaded newer image for {name}")
    assert sorted(b.inspect(iid)["RepoTags"]) == [f"{name}:one", f"{name}:two"]


def test_broken_connection_resumes_with_range(make_service, reg, tmp_path):
    a = make_service("a")
    name = f"{reg.addr}/big/layer"
    data = random_tar(None, {"blob1": 6 << 20, "blob2": 2 << 20}, seed=7)
    iid = _import(a, data, name)
    push_sync(a, name, "v1")
    proxy = CuttingProxy((reg.host, reg.port), cut_after=3 << 20)
    try:
        b = make_service("b")
        pname = f"{proxy.addr}/big/layer"
        msgs = pull_sync(b, f"{pname}:v1")
        assert proxy.cut_done
        # resumed from where the ingest stopped, not from 0
        ranges = [h for h in proxy.range_headers if b"bytes=" in h]
        assert ranges and all(not h.strip().endswith(b"bytes=0-") for h in ranges), ranges
        assert b.inspect(f"{pname}:v1")["Id"] == iid
        assert _statuses(msgs)[-1][1].startswith("Status: Downloaded newer image")
        root = _layer_dir(b, iid)
        assert (root / "blob1").stat().st_size == 6 << 20
    finally:
        proxy.close()


def test_corrupted_blob_stores_nothing(make_service, reg):
    a = make_service("a")
    name = f"{reg.addr}/bad/blob"
    data = random_tar(None, {"f": 3 << 20}, seed=3)
    _import(a, data, name)
    push_sync(a, name, "v1")
    proxy = CuttingProxy((reg.host, reg.port), corrupt_at=2 << 20)
    try:
        b = make_service("b")
        with pytest.raises(DockyardError) as e:
            pull_sync(b, f"{proxy.addr}/bad/blob:v1")
        assert proxy.corrupt_done
        assert "verification failed" in str(e.value) or "digest" in str(e.value).lower()
        assert b.list_images() == []
        assert b.store.query("SELECT * FROM layers") == []
        blobs = _blobs(b)
        # the manifest may be kept (verified); no layer blob, no config
        assert all(b.content.info(d).size < 4096 for d in blobs)
        assert b.content.ingests() == []
    finally:
        proxy.close()


def test_multi_arch_index_resolves_to_platform(make_service, reg, busybox_tar_bytes):
    a = make_service("a")
    name = f"{reg.addr}/multi/bb"
    amd = _import(a, busybox_tar_bytes, f"{reg.addr}/multi/bb-amd64")
    arm_data = random_tar(None, {"arm": 1000}, seed=1)
    arm = a.import_image(io.BytesIO(arm_data), repo=f"{reg.addr}/multi/bb-arm64", tag="v1",
                         platform="linux/arm64")
    ds = {}
    for n, iid in (("amd64", amd), ("arm64", arm)):
        a.tag(iid, name, n)
        aux = push_sync(a, name, n)[-1]["aux"]
        ds[n] = aux
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [
                 {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                  "digest": ds["arm64"]["Digest"], "size": ds["arm64"]["Size"],
                  "platform": {"os": "linux", "architecture": "arm64"}},
                 {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                  "digest": ds["amd64"]["Digest"], "size": ds["amd64"]["Size"],
                  "platform": {"os": "linux", "architecture": "amd64"}}]}
    body = json.dumps(index).encode()
    r = reg.client().request("PUT", "/v2/multi/bb/manifests/multi", body,
                             {"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert r.status == 201, r.body
    index_digest = "sha256:" + hashlib.sha256(body).hexdigest()
    b = make_service("b")
    st = _statuses(pull_sync(b, f"{name}:multi"))
    assert st[-2] == (None, f"Digest: {index_digest}")
    assert b.inspect(f"{name}:multi")["Id"] == amd
    assert f"{name}@{index_digest}" in b.inspect(f"{name}:multi")["RepoDigests"]
    c = make_service("c")
    pull_sync(c, f"{name}:multi", platform="linux/arm64")
    assert c.inspect(f"{name}:multi")["Id"] == arm
    with pytest.raises(NotFound, match="no matching manifest for linux/s390x"):
        pull_sync(c, f"{name}:multi", platform="linux/s390x")


@pytest.mark.parametrize("auth", [False, True])
def test_docker_registry(make_service, tmp_path, busybox_tar_bytes, auth):
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "alicepw"}) if auth else None
    creds = ("alice", "alicepw") if auth else None
    with running_docker_registry(tmp_path, htpasswd) as addr:
        a = make_service("a")
        name = f"{addr}/team/busybox"
        iid = _import(a, busybox_tar_bytes, name)
        msgs = push_sync(a, name, "v1", auth=creds)
        digest = msgs[-1]["aux"]["Digest"]
        b = make_service("b")
        pull_sync(b, f"{name}:v1", auth=creds)
        assert b.inspect(f"{name}:v1")["Id"] == iid
        assert b.inspect(f"{name}:v1")["RepoDigests"] == [f"{name}@{digest}"]
        if auth:
            c = make_service("c")
            with pytest.raises(Unauthorized):
                pull_sync(c, f"{name}:v1", auth=("alice", "wrong"))
            with pytest.raises(Unauthorized):
                pull_sync(c, f"{name}:v1")
            with pytest.raises(Unauthorized):
                push_sync(a, name, "v1", auth=("alice", "nope"))
            assert c.list_images() == [] and _blobs(c) == set()


def test_token_auth_registry(make_service, tmp_path, busybox_tar_bytes):
    """Our registry with htpasswd + the Bearer token flow."""
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "alicepw"})
    with running_registry(tmp_path / "treg", "--htpasswd", str(htpasswd), "--auth", "token") as reg:
        a = make_service("a")
        name = f"{reg.addr}/tok/bb"
        iid = _import(a, busybox_tar_bytes, name)
        push_sync(a, name, "v1", auth=("alice", "alicepw"))
        b = make_service("b")
        pull_sync(b, f"{name}:v1", auth=("alice", "alicepw"))
        assert b.inspect(f"{name}:v1")["Id"] == iid
        with pytest.raises(DockyardError):
            pull_sync(make_service("c"), f"{name}:v1", auth=("alice", "bad"))


def test_many_layers_in_parallel(make_service, reg, tmp_path):
    """More layers than parallel downloads; later layers finish downloading before
    the unpacker reaches them."""
    a = make_service("a")
    sizes = [3 << 20, 10, 2 << 20, 1 << 20, 5000, 1 << 20]
    diff_ids = docker_archive(tmp_path / "img.tar", sizes)
    with open(tmp_path / "img.tar", "rb") as f:
        list(a.load_images(f))
    name = f"{reg.addr}/multi/layer"
    a.tag("multi/layer:v1", name, "v1")
    msgs = push_sync(a, name, "v1")
    st = _statuses(msgs)
    assert len([s for _, s in st if s == "Waiting"]) == 1      # 6 layers, 5 uploads at once
    b = make_service("b")
    msgs = pull_sync(b, f"{name}:v1")
    st = _statuses(msgs)
    assert len([s for _, s in st if s == "Waiting"]) == 3      # 3 downloads at once
    assert len([s for _, s in st if s == "Pull complete"]) == 6
    info = b.inspect(f"{name}:v1")
    assert info["Id"] == a.inspect(f"{name}:v1")["Id"]
    assert info["RootFS"]["Layers"] == diff_ids
    # a second image sharing the first layers: those are "Already exists"
    a2 = make_service("a2")
    docker_archive(tmp_path / "img2.tar", sizes[:2] + [777], tag="multi/two:v1")
    with open(tmp_path / "img2.tar", "rb") as f:
        list(a2.load_images(f))
    a2.tag("multi/two:v1", f"{reg.addr}/multi/two", "v1")
    push_sync(a2, f"{reg.addr}/multi/two", "v1")
    st = _statuses(pull_sync(b, f"{reg.addr}/multi/two:v1"))
    assert [s for _, s in st if s in ("Already exists", "Pull complete")] == \
        ["Already exists", "Already exists", "Pull complete"]


def test_concurrent_pulls_and_repush_keeps_digest(make_service, reg, tmp_path):
    import threading

    a = make_service("a")
    diff_ids = docker_archive(tmp_path / "img.tar", [2 << 20, 1 << 20], tag="c/img:v1", seed=40)
    with open(tmp_path / "img.tar", "rb") as f:
        list(a.load_images(f))
    name = f"{reg.addr}/c/img"
    a.tag("c/img:v1", name, "v1")
    digest = push_sync(a, name, "v1")[-1]["aux"]["Digest"]
    b = make_service("b")
    errors, results = [], []

    def go(tag_ref):
        try:
            results.append(pull_sync(b, tag_ref))
        except Exception as e:   # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=go, args=(f"{name}:v1",)) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert errors == []
    assert b.inspect(f"{name}:v1")["RootFS"]["Layers"] == diff_ids
    assert b.content.ingests() == []
    # a pulled image pushed elsewhere keeps its manifest (same digest), blobs mounted
    b.tag(f"{name}:v1", f"{reg.addr}/c/copy", "v1")
    msgs = push_sync(b, f"{reg.addr}/c/copy", "v1")
    assert msgs[-1]["aux"]["Digest"] == digest
    assert {s for i, s in _statuses(msgs) if i and s != "Preparing"} == {"Mounted from c/img"}


def test_chunked_push_to_docker_registry(make_service, tmp_path):
    with running_docker_registry(tmp_path) as addr:
        a = make_service("a")
        data = random_tar(None, {"f": (3 << 20) + 123}, seed=9)
        iid = _import(a, data, f"{addr}/ch/img")
        push_sync(a, f"{addr}/ch/img", "v1", chunk_size=1 << 20)
        b = make_service("b")
        pull_sync(b, f"{addr}/ch/img:v1")
        assert b.inspect(f"{addr}/ch/img:v1")["Id"] == iid


def _self_signed(tmp_path):
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return tmp_path / "c.pem", tmp_path / "k.pem"


def test_tls_registry_token_scopes(make_service, tmp_path, busybox_tar_bytes):
    """HTTPS on loopback (insecure: no verification, as Docker), token auth, and a
    pull-only user who may pull but whose push is denied."""
    cert, key = _self_signed(tmp_path)
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "alicepw", "bob": "bobpw"})
    access = tmp_path / "access.json"
    access.write_text(json.dumps({"alice": ["pull", "push"], "bob": ["pull"]}))
    with running_registry(tmp_path / "treg", "--tls-cert", str(cert), "--tls-key", str(key),
                          "--htpasswd", str(htpasswd), "--auth", "token",
                          "--access", str(access)) as reg:
        assert reg.scheme == "https"
        a = make_service("a")
        name = f"{reg.addr}/tls/bb"
        iid = _import(a, busybox_tar_bytes, name)
        push_sync(a, name, "v1", auth=("alice", "alicepw"))
        b = make_service("b")
        pull_sync(b, f"{name}:v1", auth=("bob", "bobpw"))
        assert b.inspect(f"{name}:v1")["Id"] == iid
        b.tag(f"{name}:v1", f"{reg.addr}/tls/other", "v1")
        with pytest.raises(DockyardError, match="denied"):
            push_sync(b, f"{reg.addr}/tls/other", "v1", auth=("bob", "bobpw"))


def test_insecure_and_loopback_rules():
    from dockyard.images.registry_client import api_host, is_insecure, is_loopback

    for h in ("127.0.0.1:5000", "127.9.9.9", "localhost:5000", "localhost", "[::1]:5000", "::1"):
        assert is_loopback(h), h
    for h in ("10.0.0.1:5000", "registry.example.com", "[2001:db8::1]:5000"):
        assert not is_loopback(h), h
    assert is_insecure("10.1.2.3:5000", ["10.0.0.0/8"])
    assert is_insecure("reg.example:5000", ["reg.example:5000"])
    assert is_insecure("reg.example:5000", ["http://reg.example:5000"])
    assert not is_insecure("reg.example:5000", ["other:5000", "192.168.0.0/16"])
    assert api_host("docker.io") == "registry-1.docker.io"


def test_layer_gzip_is_deterministic_and_stores_incompressible_data(make_service):
    import gzip as _gzip
    import os as _os

    from dockyard.images.push import gzip_layer, gzip_level

    assert gzip_level(_os.urandom(1 << 20)) == 0
    assert gzip_level(b"hello layer " * 100000) == 1
    svc = make_service("g")
    for payload in (random_tar(None, {"r": 1 << 20}, seed=5), b"text\n" * 300000):
        src = svc.content.write_blob(payload)
        with svc.lease() as lease:
            d1, s1 = gzip_layer(svc, src, lease)
            svc.content.delete(d1)
            d2, s2 = gzip_layer(svc, src, lease)
            assert (d1, s1) == (d2, s2)
            assert _gzip.decompress(svc.content.read(d2)) == payload


def test_push_retries_after_a_broken_upload(make_service, reg):
    a = make_service("a")
    data = random_tar(None, {"f": 4 << 20}, seed=11)
    iid = _import(a, data, "x/y")
    proxy = CuttingProxy((reg.host, reg.port), cut_request_after=2 << 20)
    try:
        name = f"{proxy.addr}/up/retry"
        a.tag(iid, name, "v1")
        msgs = push_sync(a, name, "v1")
        assert proxy.cut_done
        assert "Pushed" in [s for _, s in _statuses(msgs)]
        b = make_service("b")
        pull_sync(b, f"{name}:v1")
        assert b.inspect(f"{name}:v1")["Id"] == iid
    finally:
        proxy.close()


def test_interrupted_download_resumes_from_the_kept_ingest(make_service, reg):
    """A pull stopped mid-layer (daemon restart) keeps its ingest; the next pull asks
    only for the rest."""
    a = make_service("a")
    data = random_tar(None, {"f": 3 << 20}, seed=12)
    iid = _import(a, data, f"{reg.addr}/re/sume", "v1")
    push_sync(a, f"{reg.addr}/re/sume", "v1")
    row = a.store.query_one("SELECT top_chain FROM images WHERE id = ?", (iid,))
    from dockyard.images.push import BlobSources
    gz = BlobSources(a.root).gzip_of(a._layer(row["top_chain"])["diff_id"])["digest"]
    blob = a.content.read(gz)
    b = make_service("b")
    w = b.content.writer(f"pull-{gz}")
    w.write(blob[:1_000_000])
    w.close()
    proxy = CuttingProxy((reg.host, reg.port))
    try:
        pull_sync(b, f"{proxy.addr}/re/sume:v1")
        assert [h for h in proxy.range_headers if b"bytes=1000000-" in h]
        assert b.inspect(f"{proxy.addr}/re/sume:v1")["Id"] == iid
        assert b.content.ingests() == []
    finally:
        proxy.close()


@pytest.mark.parametrize("ref", ["127.0.0.1:1/x:bad$tag", "127.0.0.1:1/UPPER:v1",
                                 "127.0.0.1:1/x@sha256:123"])
def test_bad_references(make_service, ref):
    from dockyard.errors import InvalidParameter

    b = make_service("b")
    with pytest.raises(InvalidParameter, match="invalid reference format"):
        pull_sync(b, ref)
    assert _blobs(b) == set()


def test_pull_unpacks_from_memory_and_keeps_the_blob_out_of_the_page_cache(make_service, reg,
                                                                           tmp_path):
    """The unpacker takes the layer's bytes as they arrive (not read back from the
    ingest file), and the blob is written with O_DIRECT: after a pull, the layer blobs
    are (but for an unaligned tail page) not in the page cache."""
    from test_images_content import _direct_io_here, _resident_pages

    if not _direct_io_here(tmp_path):
        pytest.skip("O_DIRECT does not bypass the page cache here (tmpfs)")
    a = make_service("a")
    diff_ids = docker_archive(tmp_path / "img.tar", [6 << 20, (3 << 20) + 5])
    with open(tmp_path / "img.tar", "rb") as f:
        list(a.load_images(f))
    name = f"{reg.addr}/mem/feed"
    a.tag("multi/layer:v1", name, "v1")
    push_sync(a, name, "v1")
    b = make_service("b")
    pull_sync(b, f"{name}:v1")
    info = b.inspect(f"{name}:v1")
    assert info["RootFS"]["Layers"] == diff_ids
    layers = [r["blob_digest"] for r in b.store.query("SELECT blob_digest FROM layers")]
    assert len(layers) == 2
    for d in layers:
        assert b.content.info(d).size > 3 << 20
        assert _resident_pages(b.content.path(d)) <= 1, d
    root = _layer_dir(b, info["Id"])
    assert (root / "l1" / "data").stat().st_size == (3 << 20) + 5


def test_follow_reader_memory_window_and_restart(tmp_path, monkeypatch):
    """The reader of a download: from memory while the bytes are held, from the ingest
    file once the window let them go (a lagging reader), the same bytes after a
    restart at an earlier offset; EOF only once the download is done."""
    import threading

    from dockyard.content import ContentStore
    from dockyard.images import pull as P

    monkeypatch.setattr(P, "MEMORY_AHEAD", 1 << 20)
    cs = ContentStore(tmp_path)
    data = hashlib.sha256(b"seed").digest() * ((5 << 20) // 32) + b"tail"
    dl = P._Download("sha256:" + "0" * 64, len(data), "x", "0000")
    w = cs.writer("r", direct=True)
    dl.update(path=str(cs.ingest_path("r")), written=0)
    reads = []
    reader = P._FollowReader(dl, threading.Event(), lambda d, pos: reads.append(pos))

    def feed(start, end, step=300_000):
        for i in range(start, end, step):
            c = data[i:min(i + step, end)]
            dl.received(i, c)
            skip = max(0, w.offset - i)     # the ingest has these already
            if skip < len(c):
                w.write(c[skip:])
        w.flush()
        dl.update(written=w.flushed)

    feed(0, 3 << 20)                    # 3 MiB arrive; memory keeps ~1 MiB of them
    assert dl.mem_bytes <= (1 << 20) + 300_000 and dl.mem_start > 0
    got = [reader.read(1 << 20)]        # from the file: memory let these go
    assert got[0] == data[:1 << 20]
    feed(2 << 20, len(data))            # a restart at an earlier offset (same bytes)
    got += [reader.read(700_000) for _ in range(3)]
    out = b"".join(got)
    assert out == data[:len(out)]
    rest = []
    done = threading.Event()

    def read_rest():
        while True:
            b = reader.read(1 << 20)
            if not b:
                break
            rest.append(b)
        done.set()

    t = threading.Thread(target=read_rest)
    t.start()
    assert not done.wait(0.3)           # all bytes read, but no EOF before verification
    digest = w.commit(len(data), "sha256:" + hashlib.sha256(data).hexdigest())
    dl.update(done=True, path=str(cs.path(digest)), written=len(data))
    t.join(10)
    assert done.is_set()
    assert out + b"".join(rest) == data
    assert reads[-1] == len(data)
    reader.close()
