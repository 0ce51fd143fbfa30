"""volumes/service.py and store.py on a data root of the test's own (no daemon)."""

import json
import os

import pytest

from dockyard import errors
from dockyard.volumes.service import ANON_LABEL, VolumeService


def test_create_list_filters_remove_and_reload(tmp_path):
    events = []
    svc = VolumeService(str(tmp_path), emit=lambda *a: events.append(a[:3]))
    users: dict[str, list[str]] = {}
    svc.set_users(lambda n: users.get(n, []))
    v, made = svc.create("data", labels={"a": "1"})
    assert made and v["Mountpoint"] == str(tmp_path / "volumes" / "data" / "_data")
    assert svc.create("data") == (v, False)
    anon, _ = svc.create(None)
    assert svc.is_anonymous(anon["Name"]) and anon["Labels"] == {ANON_LABEL: ""}
    assert [x["Name"] for x in svc.list({"label": ["a=1"]})["Volumes"]] == ["data"]
    assert [x["Name"] for x in svc.list({"name": ["dat"]})["Volumes"]] == ["data"]
    users["data"] = ["c1"]
    assert [x["Name"] for x in svc.list({"dangling": ["true"]})["Volumes"]] == [anon["Name"]]
    with pytest.raises(errors.InvalidParameter):
        svc.list({"dangling": ["maybe"]})
    with pytest.raises(errors.InvalidParameter):
        svc.list({"bogus": ["1"]})
    with pytest.raises(errors.Conflict, match=r"remove data: volume is in use - \[c1\]"):
        svc.remove("data")
    # a new service on the same root finds them (what a restarted daemon does)
    again = VolumeService(str(tmp_path))
    assert sorted(again.volumes) == sorted(["data", anon["Name"]])
    assert again.get("data")["Labels"] == {"a": "1"}
    users.clear()
    rep = svc.prune()
    assert rep["VolumesDeleted"] == [anon["Name"]]          # anonymous only
    assert svc.prune({"all": ["true"], "label": ["a=2"]})["VolumesDeleted"] is None
    assert svc.prune({"all": ["1"]})["VolumesDeleted"] == ["data"]
    assert not os.listdir(tmp_path / "volumes")
    assert [e[1] for e in events if e[0] == "volume"] == ["create", "create", "destroy", "prune",
                                                          "prune", "destroy", "prune"]
    with pytest.raises(errors.NotFound, match="get data: no such volume"):
        svc.get("data")
    svc.remove("data", force=True)   # missing, forced: no error


def test_store_modes_and_interrupted_create(tmp_path):
    svc = VolumeService(str(tmp_path))
    svc.create("v1")
    d = tmp_path / "volumes" / "v1"
    assert d.stat().st_mode & 0o777 == 0o700
    assert (d / "volume.json").stat().st_mode & 0o777 == 0o600
    assert json.loads((d / "volume.json").read_text())["Name"] == "v1"
    # a directory without a record: a create cut short; removed at the next load
    (tmp_path / "volumes" / "half").mkdir()
    (tmp_path / "volumes" / "half" / "_data").mkdir()
    svc = VolumeService(str(tmp_path))
    assert list(svc.volumes) == ["v1"] and not (tmp_path / "volumes" / "half").exists()


@pytest.mark.parametrize("name", ["../x", "x/../../y", "a", "-lead", ".", "..", "a\nb"])
def test_names_never_become_paths(tmp_path, name):
    svc = VolumeService(str(tmp_path))
    with pytest.raises(errors.InvalidParameter, match="includes invalid characters"):
        svc.create(name)
    assert os.listdir(tmp_path / "volumes") == []


def test_driver_and_options(tmp_path):
    svc = VolumeService(str(tmp_path))
    with pytest.raises(errors.NotFound, match='plugin "nfsd" not found'):
        svc.create("x1", driver="nfsd")
    with pytest.raises(errors.InvalidParameter, match='create x2: missing required option: "device"'):
        svc.create("x2", driver_opts={"type": "tmpfs"})
    v, _ = svc.create("x3", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    assert v["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    path = svc.mount("x3", "c1")
    try:
        assert os.path.ismount(path)
        assert svc.mount("x3", "c2") == path
        svc.unmount("x3", "c1")
        assert os.path.ismount(path)     # c2 still has it
        with pytest.raises(errors.Conflict):
            svc.remove("x3")
    finally:
        svc.unmount("x3", "c2")
    assert not os.path.ismount(path)
    svc.remove("x3")
