"""docker-py (7.x) against `dockyard daemon`: the images API and system calls."""

from __future__ import annotations

import io
import time

import docker
import pytest


@pytest.fixture
def dpy(dockyard_daemon):
    c = docker.DockerClient(base_url=dockyard_daemon.host, timeout=60)
    yield c
    c.close()


def test_version_info_and_ping(dpy):
    assert dpy.ping() is True
    v = dpy.version()
    assert v["ApiVersion"] == "1.47" and v["Components"][0]["Name"] == "Engine"
    assert dpy.api.api_version == "1.47"
    info = dpy.info()
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    assert dpy.df()["Images"] == []


def test_images_api(dpy, saved_busybox, busybox_tar, tmp_path):
    path, image_id = saved_busybox
    loaded = dpy.images.load(path.read_bytes())
    assert {i.id for i in loaded} == {image_id}
    img = dpy.images.get("am/busybox:v1")
    assert img.id == image_id and "am/busybox:v1" in img.tags
    assert img.labels == {"org.dockyard.test": "yes"}
    assert img.history()[0]["Id"] == image_id
    assert img.tag("127.0.0.1:5000/am/busybox", "v9") is True
    assert "127.0.0.1:5000/am/busybox:v9" in dpy.images.get(image_id).tags
    ids = {i.id for i in dpy.images.list()}
    assert ids == {image_id}
    assert [i.id for i in dpy.images.list(name="am/busybox")] == [image_id]
    assert dpy.images.list(filters={"dangling": True}) == []
    # save -> a tar stream that loads back
    data = b"".join(img.save(named=True))
    assert data[:512].strip(b"\0")
    # import with changes, from a file object
    out = dpy.api.import_image(src=io.BytesIO(busybox_tar.read_bytes()), repository="py/imp",
                               tag="v1", changes=["ENV X=1"])
    assert "sha256:" in (out if isinstance(out, str) else out.decode())
    assert dpy.images.get("py/imp:v1").attrs["Config"]["Env"] == ["X=1"]
    with pytest.raises(docker.errors.ImageNotFound):
        dpy.images.get("nope")
    with pytest.raises(docker.errors.APIError) as e:
        dpy.images.remove(image_id)  # referenced in several repositories
    assert e.value.status_code == 409
    dpy.images.remove("127.0.0.1:5000/am/busybox:v9")
    dpy.images.remove(image_id, force=True)
    dpy.images.remove("py/imp:v1")
    assert dpy.images.list(all=True) == []
    loaded = dpy.images.load(data)
    assert {i.id for i in loaded} == {image_id}
    report = dpy.images.prune(filters={"dangling": False})
    assert report["SpaceReclaimed"] > 0 and dpy.images.list() == []


def test_events_with_until(dpy, saved_busybox):
    path, _ = saved_busybox
    since = time.time() - 1
    dpy.images.load(path.read_bytes())
    until = time.time() + 0.5
    evs = list(dpy.events(since=since, until=until, decode=True))
    actions = [(e["Type"], e["Action"]) for e in evs]
    assert ("image", "load") in actions and ("image", "tag") in actions
    evs = list(dpy.events(since=since, until=until, decode=True, filters={"event": "load"}))
    assert [e["Action"] for e in evs] == ["load"]
