import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from dockyard.errors import Conflict, InvalidParameter, NotFound
from dockyard.snapshots import mount as mnt
from imghelpers import compress, entry, make_tar

CHANGES = ['CMD ["/bin/sh", "-c", "echo hi"]', "ENV A=1 B=two", "EXPOSE 80 53/udp",
           'LABEL com.example.x="y z"', "WORKDIR /srv", "USER 1000:1000", "VOLUME /data",
           "STOPSIGNAL SIGTERM", "ONBUILD RUN true"]


def small_tar(name="f", data=b"x"):
    return make_tar([entry(name, data=data)])


@pytest.fixture
def events():
    return []


@pytest.fixture
def svc(make_service, events):
    return make_service(emit=lambda *a: events.append(a))


def test_import_inspect_shape(svc, busybox_tar_bytes, events):
    iid = svc.import_image(io.BytesIO(busybox_tar_bytes), "busybox", None, CHANGES, "my msg")
    raw = svc.get_config_bytes(iid)
    assert iid == "sha256:" + hashlib.sha256(raw).hexdigest()
    ins = svc.inspect("busybox")
    assert ins["Id"] == iid and ins["RepoTags"] == ["busybox:latest"] and ins["RepoDigests"] == []
    assert ins["Comment"] == "my msg" and ins["Architecture"] == "amd64" and ins["Os"] == "linux"
    c = ins["Config"]
    assert c["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert c["Env"] == ["A=1", "B=two"]
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert c["Labels"] == {"com.example.x": "y z"}
    assert c["WorkingDir"] == "/srv" and c["User"] == "1000:1000"
    assert c["Volumes"] == {"/data": {}} and c["StopSignal"] == "SIGTERM"
    assert c["OnBuild"] == ["RUN true"]
    assert ins["RootFS"]["Type"] == "layers" and len(ins["RootFS"]["Layers"]) == 1
    assert ins["RootFS"]["Layers"][0] == "sha256:" + hashlib.sha256(busybox_tar_bytes).hexdigest()
    assert ins["Size"] > 1_000_000 and ins["GraphDriver"]["Name"] == "overlay2"
    assert ins["Created"].endswith("Z") and ins["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"
    cfg = json.loads(raw)
    assert cfg["history"] == [{"created": cfg["created"], "comment": "my msg"}]
    for key in ("Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "DockerVersion",
                "Author", "Config", "Architecture", "Os", "Size", "GraphDriver", "RootFS",
                "Metadata"):
        assert key in ins
    assert ("image", "import", iid, {"name": iid}) in events
    assert ("image", "tag", iid, {"name": "busybox:latest"}) in events
    # by short id, long id, sha256: prefix
    assert svc.inspect(iid[7:19])["Id"] == iid
    assert svc.inspect(iid)["Id"] == iid and svc.inspect(iid[7:])["Id"] == iid
    with pytest.raises(NotFound, match=r"^No such image: nope:latest$"):
        svc.inspect("nope")
    with pytest.raises(InvalidParameter, match="must be lowercase"):
        svc.inspect("UPPER")


def test_import_bad_change_and_hostile_tar_store_nothing(svc):
    with pytest.raises(InvalidParameter, match="from is not a valid change command"):
        svc.import_image(io.BytesIO(small_tar()), changes=["FROM scratch"])
    with pytest.raises(InvalidParameter, match="escapes"):
        svc.import_image(io.BytesIO(make_tar([entry("../evil", data=b"x")])), "bad")
    with pytest.raises(InvalidParameter, match="unexpected EOF"):
        svc.import_image(io.BytesIO(make_tar([entry("big", data=os.urandom(50000))])[:20000]))
    assert svc.list_images(all=True) == []
    assert svc.snapshotter.list() == []
    assert list(svc.content.list()) == [] and svc.content.ingests() == []


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_import_compressed(svc, compression):
    plain = small_tar("hello", b"world")
    iid = svc.import_image(io.BytesIO(compress(plain, compression)), "c", "1")
    assert svc.inspect(iid)["RootFS"]["Layers"] == ["sha256:" + hashlib.sha256(plain).hexdigest()]


def test_tag_list_filters(svc):
    a = svc.import_image(io.BytesIO(small_tar("a")), "app", "v1", ["LABEL tier=web"])
    b = svc.import_image(io.BytesIO(small_tar("b")), "localhost:5000/team/tool", "2.0")
    svc.tag("app:v1", "app", "latest")
    svc.tag(a, "127.0.0.1:5000/am/app")
    ids = lambda lst: [i["Id"] for i in lst]
    assert set(ids(svc.list_images())) == {a, b}
    item = next(i for i in svc.list_images() if i["Id"] == a)
    assert sorted(item["RepoTags"]) == ["127.0.0.1:5000/am/app:latest", "app:latest", "app:v1"]
    assert set(item) >= {"Containers", "Created", "Id", "Labels", "ParentId", "RepoDigests",
                         "RepoTags", "SharedSize", "Size"}
    assert item["Labels"] == {"tier": "web"}
    r = svc.list_images(filters={"reference": {"app": True}})
    assert ids(r) == [a] and sorted(r[0]["RepoTags"]) == ["app:latest", "app:v1"]
    assert ids(svc.list_images(filters={"reference": ["app:v*"]})) == [a]
    assert ids(svc.list_images(filters={"reference": ["localhost:5000/*/*"]})) == [b]
    assert ids(svc.list_images(filters={"label": ["tier=web"]})) == [a]
    assert ids(svc.list_images(filters={"label": ["tier=db"]})) == []
    assert ids(svc.list_images(filters={"dangling": ["true"]})) == []
    assert set(ids(svc.list_images(filters={"dangling": ["false"]}))) == {a, b}
    with pytest.raises(InvalidParameter, match="invalid filter 'bogus'"):
        svc.list_images(filters={"bogus": ["1"]})
    with pytest.raises(InvalidParameter, match="refusing to create a tag with a digest"):
        svc.tag(a, "app@sha256:" + "0" * 64)
    with pytest.raises(InvalidParameter):
        svc.tag(a, "app", "bad tag")
    with pytest.raises(NotFound):
        svc.tag("missing", "x")
    # re-tagging moves the tag; the old image becomes dangling
    c = svc.import_image(io.BytesIO(small_tar("c")), "localhost:5000/team/tool", "2.0")
    dangling = svc.list_images(filters={"dangling": ["true"]})
    assert ids(dangling) == [b] and dangling[0]["RepoTags"] == []


def test_rmi_untag_vs_delete(svc, events):
    iid = svc.import_image(io.BytesIO(small_tar()), "one", "a")
    svc.tag(iid, "two", "b")
    assert svc.remove("one:a") == [{"Untagged": "one:a"}]
    svc.tag(iid, "three")
    with pytest.raises(Conflict) as e:
        svc.remove(iid[7:19])
    assert str(e.value) == (f"conflict: unable to delete {iid[7:19]} (must be forced) - "
                            "image is referenced in multiple repositories")
    chain = svc.inspect(iid)["RootFS"]["Layers"][0]
    res = svc.remove(iid[7:19], force=True)
    assert sorted(r.get("Untagged", "") for r in res if "Untagged" in r) == ["three:latest", "two:b"]
    assert {"Deleted": iid} in res and {"Deleted": chain} in res
    assert svc.list_images(all=True) == [] and svc.snapshotter.list() == []
    assert list(svc.content.list()) == []
    assert ("image", "delete", iid, {"name": iid}) in events
    with pytest.raises(NotFound):
        svc.remove("two:b")


def test_rmi_single_tag_by_id_deletes(svc):
    iid = svc.import_image(io.BytesIO(small_tar()), "solo")
    res = svc.remove(iid)
    assert res[0] == {"Untagged": "solo:latest"} and res[1] == {"Deleted": iid}


def test_rmi_refused_while_used(svc):
    iid = svc.import_image(io.BytesIO(small_tar()), "used")
    users = {iid: [("c" * 64, False)]}
    svc.set_usage_checker(lambda i: users.get(i, []))
    with pytest.raises(Conflict, match=r'unable to remove repository reference "used" \(must force\) '
                                       r"- container cccccccccccc is using its referenced image"):
        svc.remove("used")
    with pytest.raises(Conflict, match=r"\(must be forced\) - image is being used by stopped container"):
        svc.remove(iid)
    users[iid] = [("d" * 64, True)]
    with pytest.raises(Conflict, match=r"\(cannot be forced\) - image is being used by running container"):
        svc.remove(iid, force=True)
    users[iid] = [("c" * 64, False)]
    res = svc.remove(iid, force=True)
    assert {"Deleted": iid} in res


def test_prune(svc, events):
    old = svc.import_image(io.BytesIO(small_tar("1")), "p", "1", ["LABEL keep=no"])
    svc.import_image(io.BytesIO(small_tar("2")), "p", "1")          # old becomes dangling
    kept = svc.import_image(io.BytesIO(small_tar("3")), "q", "1", ["LABEL keep=yes"])
    used = svc.import_image(io.BytesIO(small_tar("4")), "r", "1")
    svc.set_usage_checker(lambda i: ["x" * 64] if i == used else [])
    res = svc.prune({"dangling": {"true": True}})
    assert [r for r in res["ImagesDeleted"] if "Deleted" in r][0] == {"Deleted": old}
    assert res["SpaceReclaimed"] == 1
    assert ("image", "prune", "", {"reclaimed": "1"}) in events
    assert svc.prune({})["ImagesDeleted"] is None
    res = svc.prune({"dangling": ["false"], "label!": ["keep=yes"]})
    assert {"Untagged": "p:1"} in res["ImagesDeleted"]
    assert any("Deleted" in r for r in res["ImagesDeleted"])
    remaining = {i["Id"] for i in svc.list_images(all=True)}
    assert remaining == {kept, used}          # labelled keep=yes, and the one in use


def test_history_and_disk_usage(svc, busybox_tar_bytes):
    iid = svc.import_image(io.BytesIO(busybox_tar_bytes), "bb", None, [], None)
    h = svc.history("bb")
    assert len(h) == 1
    assert h[0]["Id"] == iid and h[0]["Tags"] == ["bb:latest"]
    assert h[0]["Comment"] == "Imported from -" and h[0]["Size"] == svc.inspect(iid)["Size"]
    svc.import_image(io.BytesIO(busybox_tar_bytes), "bb2", None, ["CMD [\"sh\"]"])
    du = svc.disk_usage()
    assert du["LayersSize"] == svc.inspect(iid)["Size"]         # one shared layer, unpacked once
    assert len(du["Images"]) == 2 and all(i["SharedSize"] == du["LayersSize"] for i in du["Images"])
    assert all(i["Containers"] == 0 for i in du["Images"])
    assert len(svc.snapshotter.list()) == 1


def test_save_load_same_id_fresh_root(svc, make_service, tmp_path, busybox_tar_bytes):
    iid = svc.import_image(io.BytesIO(busybox_tar_bytes), "bb", "1", ["ENV X=1"])
    svc.tag(iid, "localhost:5000/bb", "2")
    other = svc.import_image(io.BytesIO(small_tar()), "small")
    out = tmp_path / "save.tar"
    with open(out, "wb") as f:
        svc.export_images(["bb:1", "localhost:5000/bb:2", other], f)
    with tarfile.open(out) as tf:
        names = tf.getnames()
        manifest = json.load(tf.extractfile("manifest.json"))
        index = json.load(tf.extractfile("index.json"))
    assert {"manifest.json", "index.json", "oci-layout", "repositories"} <= set(names)
    legacy = [n for n in names if n.endswith("/layer.tar")]
    assert len(legacy) == 2 and all(n.replace("layer.tar", "VERSION") in names for n in legacy)
    assert manifest[0]["RepoTags"] == ["bb:1", "localhost:5000/bb:2"]
    assert manifest[0]["Config"] == "blobs/sha256/" + iid[7:] and manifest[1]["RepoTags"] is None
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "docker.io/library/bb:1"
    fresh = make_service("fresh")
    with open(out, "rb") as f:
        msgs = list(fresh.load_images(f))
    streams = [m["stream"] for m in msgs if "stream" in m]
    assert streams == ["Loaded image: bb:1\n", "Loaded image: localhost:5000/bb:2\n",
                       f"Loaded image ID: {other}\n"]
    assert any(m.get("status") == "Loading layer" for m in msgs)
    assert fresh.inspect("bb:1")["Id"] == iid and fresh.resolve("small") if False else True
    assert {i["Id"] for i in fresh.list_images(all=True)} == {iid, other}
    assert fresh.get_config_bytes(iid) == svc.get_config_bytes(iid)
    # loading again: same image, reuses the layer; quiet gives only the stream lines
    with open(out, "rb") as f:
        assert all("stream" in m for m in fresh.load_images(f, quiet=True))
    assert len(fresh.snapshotter.list()) == 2


def _oci_layout(tmp_path, layer_bytes, ref_name="example.com/oci/img:1.0", corrupt=False):
    d = {}
    def blob(b):
        h = hashlib.sha256(b).hexdigest()
        d[f"blobs/sha256/{h}"] = b
        return "sha256:" + h
    plain = layer_bytes
    gz = compress(plain, "gzip")
    ldig = blob(gz)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                      "rootfs": {"type": "layers", "diff_ids": [
                          "sha256:" + hashlib.sha256(plain).hexdigest()]},
                      "history": [{"created_by": "test"}]}).encode()
    cdig = blob(cfg)
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": cdig, "size": len(cfg)},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                  "digest": ldig, "size": len(gz)}]}).encode()
    mdig = blob(man)
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig,
        "size": len(man), "annotations": {"org.opencontainers.image.ref.name": ref_name}}]}
    d["index.json"] = json.dumps(index).encode()
    d["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    if corrupt:
        k = f"blobs/sha256/{ldig[7:]}"
        d[k] = d[k][:-8] + b"\0" * 8
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in d.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue(), "sha256:" + hashlib.sha256(cfg).hexdigest()


def test_load_oci_layout(svc, tmp_path):
    data, cid = _oci_layout(tmp_path, small_tar("oci-file", b"from oci"))
    msgs = list(svc.load_images(io.BytesIO(data), quiet=True))
    assert msgs == [{"stream": "Loaded image: example.com/oci/img:1.0\n"}]
    ins = svc.inspect("example.com/oci/img:1.0")
    assert ins["Id"] == cid and ins["Config"]["Cmd"] == ["sh"]
    # shown as Docker shows it: the whole container config, zero values filled in
    assert ins["Config"]["Hostname"] == "" and ins["Config"]["Env"] is None
    assert "ExposedPorts" not in ins["Config"] and list(ins["Config"])[0] == "Hostname"
    # the gzip blob is kept: a save writes it back verbatim
    out = io.BytesIO()
    svc.export_images([cid], out)
    out.seek(0)
    fresh_msgs = list(svc.load_images(out, quiet=True))
    assert fresh_msgs == [{"stream": f"Loaded image ID: {cid}\n"}]


@pytest.mark.parametrize("damage", ["bad-blob-digest", "missing-layer", "bad-diffid",
                                    "not-a-tar", "no-manifest", "truncated"])
def test_load_bad_archives_store_nothing(svc, tmp_path, damage):
    good, _ = _oci_layout(tmp_path, small_tar())
    if damage == "bad-blob-digest":
        data, _ = _oci_layout(tmp_path, small_tar(), corrupt=True)
    elif damage == "missing-layer":
        data = _retar(good, drop=lambda n: n.startswith("blobs/") and _is_gzip_member(good, n))
    elif damage == "bad-diffid":
        data = _docker_archive_bad_diffid()
    elif damage == "not-a-tar":
        data = b"this is not a tar" * 100
    elif damage == "no-manifest":
        data = _retar(good, drop=lambda n: n == "index.json")
    else:
        data = good[:1024 + 512 + 100]     # inside the second member
    with pytest.raises(InvalidParameter):
        list(svc.load_images(io.BytesIO(data)))
    assert svc.list_images(all=True) == []
    assert svc.snapshotter.list() == []
    assert list(svc.content.list()) == [] and svc.content.ingests() == []


def _retar(data, drop):
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for m in src.getmembers():
            if not drop(m.name):
                dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    return out.getvalue()


def _is_gzip_member(data, name):
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return tf.extractfile(name).read(2) == b"\x1f\x8b"


def _docker_archive_bad_diffid():
    layer = small_tar()
    cfg = json.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]},
                      "os": "linux"}).encode()
    cid = hashlib.sha256(cfg).hexdigest()
    files = {f"{cid}.json": cfg, "abc/layer.tar": layer,
             "manifest.json": json.dumps([{"Config": f"{cid}.json", "RepoTags": ["bad:1"],
                                           "Layers": ["abc/layer.tar"]}]).encode()}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for n, b in files.items():
            ti = tarfile.TarInfo(n)
            ti.size = len(b)
            tf.addfile(ti, io.BytesIO(b))
    return buf.getvalue()


KILL_SCRIPT = r"""
import os, sys
from dockyard.metadata import open_store
from dockyard.images.service import ImageService
root, archive, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
svc = ImageService(root, open_store(os.path.join(root, "metadata.db")))
class Dying:
    def __init__(self, f): self.f, self.n = f, 0
    def read(self, n=-1):
        b = self.f.read(n)
        self.n += len(b)
        if self.n > limit:
            os.kill(os.getpid(), 9)
        return b
list(svc.load_images(Dying(open(archive, "rb"))))
"""


def test_kill9_during_load_then_retry(svc, make_service, tmp_path, busybox_tar_bytes):
    iid = svc.import_image(io.BytesIO(busybox_tar_bytes), "bb", "k")
    svc.import_image(io.BytesIO(small_tar()), "second")
    archive = tmp_path / "a.tar"
    with open(archive, "wb") as f:
        svc.export_images(["bb:k", "second"], f)
    size = archive.stat().st_size
    root = tmp_path / "victim"
    for frac in (0.3, 0.999):
        p = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(root), str(archive),
                            str(int(size * frac))])
        assert p.returncode == -9
        v = make_service("victim")
        assert v.list_images(all=True) == []      # a partial image never becomes visible
        assert v.snapshotter.list() == [] and list(v.content.list()) == []
        assert v.content.ingests() == []
        v.store.close()
    # killed after the layers were unpacked, before the image was recorded
    p = subprocess.run([sys.executable, "-c", KILL_SCRIPT.replace(
        "list(svc.load_images", "svc._store_image = lambda *a, **k: os.kill(os.getpid(), 9)\n"
        "list(svc.load_images"), str(root), str(archive), str(size * 2)])
    assert p.returncode == -9
    v = make_service("victim")
    assert v.list_images(all=True) == [] and v.snapshotter.list() == []
    assert list(v.content.list()) == []
    assert not any(os.scandir(v.snapshotter.root))
    v.store.close()
    v = make_service("victim")
    msgs = list(v.load_images(open(archive, "rb"), quiet=True))
    assert {"stream": "Loaded image: bb:k\n"} in msgs
    assert v.inspect("bb:k")["Id"] == iid


@pytest.mark.parametrize("kind", ["overlay", "copy"])
def test_rootfs_changes_and_commit(make_service, tmp_path, busybox_tar_bytes, kind):
    svc = make_service(snapshotter=kind)
    base = svc.import_image(io.BytesIO(busybox_tar_bytes), "base")
    mounts = svc.prepare_rootfs("base", "ctr-1")
    target = tmp_path / "rootfs"
    target.mkdir()
    mnt.mount_all(mounts, target)
    try:
        assert (target / "bin/busybox").exists()
        (target / "etc/hostname").unlink()
        (target / "srv").mkdir(exist_ok=True)
        (target / "srv/new.txt").write_text("hello")
        (target / "etc/passwd").write_text("root:x:0:0::/:/bin/sh\n")
    finally:
        mnt.unmount_all(target)
    assert svc.rootfs_usage("ctr-1") >= len("hello") + len("root:x:0:0::/:/bin/sh\n")
    ch = svc.changes("ctr-1")
    assert {"Path": "/etc/hostname", "Kind": 2} in ch
    assert {"Path": "/srv/new.txt", "Kind": 1} in ch
    assert {"Path": "/etc/passwd", "Kind": 0} in ch
    assert {"Path": "/etc", "Kind": 0} in ch
    new = svc.commit_rootfs("ctr-1", base_image=base, changes=["CMD [\"cat\", \"/srv/new.txt\"]"],
                            comment="committed", author="me", repo="derived", tag="1")
    ins = svc.inspect("derived:1")
    assert ins["Id"] == new and ins["Parent"] == base and len(ins["RootFS"]["Layers"]) == 2
    assert ins["Config"]["Cmd"] == ["cat", "/srv/new.txt"] and ins["Author"] == "me"
    assert len(svc.history("derived:1")) == 2 and svc.history("derived:1")[1]["Id"] == base
    with pytest.raises(Conflict, match="image has dependent child images"):
        svc.remove(base, force=True)
    svc.remove_rootfs("ctr-1")
    mounts = svc.prepare_rootfs(new, "ctr-2")
    mnt.mount_all(mounts, target)
    try:
        assert (target / "srv/new.txt").read_text() == "hello"
        assert not (target / "etc/hostname").exists()
        assert (target / "bin/busybox").exists()
    finally:
        mnt.unmount_all(target)
    svc.remove_rootfs("ctr-2")
    svc.remove("derived:1")
    svc.remove("base")
    assert svc.snapshotter.list() == [] and list(svc.content.list()) == []


def _docker_archive(layers: list[bytes], tags, style="20.10", cfg_extra=None):
    """A docker-save style archive: 20.10 (<id>/layer.tar) or 25+ (blobs + symlinks)."""
    diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids},
                      **(cfg_extra or {})}).encode()
    cid = hashlib.sha256(cfg).hexdigest()
    files, links, layer_paths = {}, {}, []
    if style == "20.10":
        files[f"{cid}.json"] = cfg
        for i, l in enumerate(layers):
            files[f"layer{i}/layer.tar"] = l
            files[f"layer{i}/VERSION"] = b"1.0"
            layer_paths.append(f"layer{i}/layer.tar")
        config_path = f"{cid}.json"
    else:
        files[f"blobs/sha256/{cid}"] = cfg
        for i, (l, d) in enumerate(zip(layers, diff_ids)):
            files[f"blobs/sha256/{d[7:]}"] = l
            links[f"legacy{i}/layer.tar"] = f"../blobs/sha256/{d[7:]}"
            layer_paths.append(f"legacy{i}/layer.tar")
        config_path = f"blobs/sha256/{cid}"
    files["manifest.json"] = json.dumps([{"Config": config_path, "RepoTags": tags,
                                          "Layers": layer_paths}]).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for n, b in files.items():
            ti = tarfile.TarInfo(n)
            ti.size = len(b)
            tf.addfile(ti, io.BytesIO(b))
        for n, t in links.items():
            ti = tarfile.TarInfo(n)
            ti.type = tarfile.SYMTYPE
            ti.linkname = t
            tf.addfile(ti)
    return buf.getvalue(), "sha256:" + cid


@pytest.mark.parametrize("style", ["20.10", "25"])
def test_load_docker_styles_multi_layer(svc, tmp_path, style):
    l1 = make_tar([entry("a/", "dir"), entry("a/x", data=b"x"), entry("b", data=b"b")])
    l2 = make_tar([entry("a/", "dir"), entry("a/.wh.x"), entry("c", data=b"c")])
    data, iid = _docker_archive([l1, l2], ["multi:1"], style)
    assert list(svc.load_images(io.BytesIO(compress(data, "gzip")), quiet=True)) == \
        [{"stream": "Loaded image: multi:1\n"}]
    assert svc.inspect("multi:1")["Id"] == iid
    target = tmp_path / "mnt"
    target.mkdir()
    mnt.mount_all(svc.prepare_rootfs(iid, "c1"), target)
    try:
        assert sorted(os.listdir(target)) == ["a", "b", "c"] and os.listdir(target / "a") == []
    finally:
        mnt.unmount_all(target)


def test_load_hostile_layer_stores_nothing(svc):
    good = make_tar([entry("ok", data=b"1")])
    evil = make_tar([entry("lnk", "symlink", linkname="/etc"), entry("lnk/../../x", data=b"e")])
    data, _ = _docker_archive([good, evil], ["evil:1"])
    with pytest.raises(InvalidParameter, match="escapes"):
        list(svc.load_images(io.BytesIO(data)))
    assert svc.list_images(all=True) == [] and svc.snapshotter.list() == []
    assert list(svc.content.list()) == []


def test_concurrent_imports_share_one_layer(svc, busybox_tar_bytes):
    import threading
    ids, errors = [], []

    def run(i):
        try:
            ids.append(svc.import_image(io.BytesIO(busybox_tar_bytes), f"c{i}"))
        except Exception as e:   # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(ids)) >= 1
    assert len(svc.list_images()) == len(ids) == 4
    assert len([s for s in svc.snapshotter.list() if s.kind == "committed"]) == 1
    assert not [s for s in svc.snapshotter.list() if s.kind != "committed"]


def test_before_since_until_filters(svc):
    import time as _t
    a = svc.import_image(io.BytesIO(small_tar("a")), "t", "a")
    _t.sleep(1.1)    # Created has second resolution in listings
    b = svc.import_image(io.BytesIO(small_tar("b")), "t", "b")
    ids = lambda lst: [i["Id"] for i in lst]
    assert ids(svc.list_images(filters={"before": ["t:b"]})) == [a]
    assert ids(svc.list_images(filters={"since": ["t:a"]})) == [b]
    assert ids(svc.list_images()) == [b, a]                       # newest first
    with pytest.raises(NotFound):
        svc.list_images(filters={"before": ["nope"]})
    res = svc.prune({"dangling": ["false"], "until": [str(int(_t.time()) + 3600)]})
    assert {"Deleted": a} in res["ImagesDeleted"] and {"Deleted": b} in res["ImagesDeleted"]


def test_register_image_from_blobs_with_repo_digest(svc):
    layer = compress(small_tar("pulled", b"p"), "gzip")
    diff_id = "sha256:" + hashlib.sha256(small_tar("pulled", b"p")).hexdigest()
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    with svc.lease() as lease:
        w = svc.content.writer("pull-layer")
        w.write(layer[:10])
        w.close()                                 # interrupted download ...
        w = svc.content.writer("pull-layer")      # ... resumed
        w.write(layer[w.offset:])
        ldig = lease.commit(w, len(layer))
        svc.gc()                                  # leased: kept
        man = json.dumps({"schemaVersion": 2, "layers": [{"digest": ldig}]}).encode()
        mdig = lease.write_blob(man)
        iid = svc.register_image(cfg, [(ldig, None)], tags=["localhost:5000/x:1"],
                                 manifest_digest=mdig,
                                 repo_digests=[f"localhost:5000/x@{mdig}"])
    item = svc.list_images()[0]
    assert item["Id"] == iid and item["RepoTags"] == ["localhost:5000/x:1"]
    assert item["RepoDigests"] == [f"localhost:5000/x@{mdig}"]
    assert svc.inspect(f"localhost:5000/x@{mdig}")["Id"] == iid
    assert svc.gc() == ([], 0) and svc.content.exists(mdig) and svc.content.exists(ldig)
    # a wrong diffID is refused and leaves nothing
    bad = json.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]}}).encode()
    l2 = svc.content.write_blob(small_tar("other"))
    with pytest.raises(InvalidParameter, match="diffID mismatch"):
        svc.register_image(bad, [(l2, None)], tags=["bad:1"])
    svc.gc()
    assert not svc.content.exists(l2) and len(svc.list_images()) == 1
    assert svc.remove("localhost:5000/x:1") == [
        {"Untagged": "localhost:5000/x:1"}, {"Untagged": f"localhost:5000/x@{mdig}"},
        {"Deleted": iid}, {"Deleted": diff_id}]


def test_derive_image_without_layer(svc):
    base = svc.import_image(io.BytesIO(small_tar()), "base", None, ['CMD ["a"]'])
    child = svc.derive_image("base", changes=["ENV K=v"], created_by="/bin/sh -c #(nop)  ENV K=v",
                             repo="child")
    ins = svc.inspect("child")
    assert ins["Parent"] == base and ins["RootFS"] == svc.inspect(base)["RootFS"]
    assert ins["Config"]["Env"] == ["K=v"] and ins["Config"]["Cmd"] == ["a"]
    assert ins["Size"] == svc.inspect(base)["Size"]
    h = svc.history("child")
    assert [x["Size"] for x in h] == [0, 1] and h[0]["Id"] == child and h[1]["Id"] == base
    assert h[0]["CreatedBy"] == "/bin/sh -c #(nop)  ENV K=v"
    scratch = svc.derive_image(None, changes=['CMD ["x"]'])
    assert svc.inspect(scratch)["RootFS"] == {"Type": "layers"}
    assert svc.prepare_rootfs(scratch, "ctr")[0]["type"] == "bind"


def test_distribution_facing_methods(svc, events):
    """What pull and push use instead of the service's internals."""
    iid = svc.import_image(io.BytesIO(make_tar([entry("f", data=b"x")])), "reg.example/a/b", "v1")
    assert svc.has_image(iid) and not svc.has_image("sha256:" + "0" * 64)
    assert svc.image_for_reference("reg.example/a/b:v1") == iid
    assert svc.image_for_reference("reg.example/a/b:nope") is None
    assert svc.image_for_reference("Not A Ref!") is None
    chain = svc.inspect(iid)["RootFS"]["Layers"][0]
    rec = svc.layer_record(chain)
    assert rec["chain_id"] == chain and rec["parent"] is None and rec["size"] == 1
    assert svc.layer_record("sha256:" + "1" * 64) is None
    digest = "sha256:" + "2" * 64
    svc.add_digest_reference(f"reg.example/a/b@{digest}", iid)
    assert svc.inspect(iid)["RepoDigests"] == [f"reg.example/a/b@{digest}"]
    assert svc.image_for_reference(f"reg.example/a/b@{digest}") == iid
    with pytest.raises(InvalidParameter):
        svc.add_digest_reference("reg.example/a/b:v2", iid)
    svc.emit_event("pull", "reg.example/a/b:v1", {"name": "reg.example/a/b"})
    assert events[-1][:3] == ("image", "pull", "reg.example/a/b:v1")
