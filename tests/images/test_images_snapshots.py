"""Conformance suite: every snapshotter must pass it (real mounts)."""

import os

import pytest

from dockyard.errors import Conflict, InvalidParameter, NotFound
from dockyard.snapshots import mount as mnt
from dockyard.snapshots import new_snapshotter


@pytest.fixture
def sn(tmp_path, store, snapshotter_kind):
    return new_snapshotter(tmp_path / "root", store, snapshotter_kind)


@pytest.fixture
def target(tmp_path):
    t = tmp_path / "mnt"
    t.mkdir()
    yield t
    mnt.unmount_all(t)


def layer(sn, name, parent, files: dict, remove=()):
    key = f"tmp-{name}"
    sn.prepare(key, parent)
    d = sn.writable_dir(key)
    for rel, data in files.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(data)
    sn.commit(name, key)
    return name


def test_prepare_commit_chain_and_mounts(sn, target):
    layer(sn, "L1", None, {"a": "1", "shared": "from1"})
    layer(sn, "L2", "L1", {"b": "2", "shared": "from2"})
    layer(sn, "L3", "L2", {"c/d": "3"})
    assert [i.key for i in sn.chain("L3")] == ["L3", "L2", "L1"]
    assert sn.stat("L3").kind == "committed" and sn.stat("L3").parent == "L2"
    mounts = sn.prepare("ctr", "L3")
    assert all(set(m) == {"type", "source", "target", "options"} for m in mounts)
    mnt.mount_all(mounts, target)
    try:
        assert sorted(os.listdir(target)) == ["a", "b", "c", "shared"]
        assert (target / "shared").read_text() == "from2"
        assert (target / "c/d").read_text() == "3"
        (target / "new").write_text("rw")       # writable
        (target / "a").unlink()
    finally:
        mnt.unmount_all(target)
    # the write went to the active snapshot only
    mnt.mount_all(sn.view("v3", "L3"), target)
    try:
        assert sorted(os.listdir(target)) == ["a", "b", "c", "shared"]
        with pytest.raises(OSError):
            (target / "x").write_text("ro")
    finally:
        mnt.unmount_all(target)
    mnt.mount_all(sn.mounts("ctr"), target)
    try:
        assert (target / "new").read_text() == "rw" and not (target / "a").exists()
    finally:
        mnt.unmount_all(target)


def test_single_layer_view_and_empty(sn, target):
    layer(sn, "only", None, {"f": "x"})
    mounts = sn.view("v", "only")
    assert mounts[0]["type"] == "bind" and "ro" in mounts[0]["options"]
    mnt.mount_all(mounts, target)
    try:
        assert os.listdir(target) == ["f"]
    finally:
        mnt.unmount_all(target)
    mnt.mount_all(sn.prepare("empty"), target)
    try:
        assert os.listdir(target) == []
    finally:
        mnt.unmount_all(target)


def test_rules(sn):
    layer(sn, "base", None, {"f": "x"})
    sn.prepare("act", "base")
    with pytest.raises(InvalidParameter):
        sn.prepare("child", "act")            # only committed snapshots are parents
    with pytest.raises(Conflict):
        sn.prepare("act", "base")             # keys are unique
    with pytest.raises(NotFound):
        sn.prepare("x", "missing")
    with pytest.raises(Conflict):
        sn.remove("base")                     # has a child
    with pytest.raises(InvalidParameter):
        sn.commit("again", "base")            # not active
    sn.remove("act")
    sn.remove("base")
    assert sn.list() == []
    with pytest.raises(NotFound):
        sn.stat("base")


def test_usage_and_remove_frees_dirs(sn):
    layer(sn, "u", None, {"f": "x" * 1000, "g": "y" * 24})
    assert sn.usage("u")["size"] == 1024
    before = set(os.listdir(sn.root))
    sn.remove("u")
    assert len(set(os.listdir(sn.root))) == len(before) - 1


def test_cleanup_removes_unknown_dirs(sn):
    layer(sn, "k", None, {"f": "x"})
    (sn.root / "999" / "fs").mkdir(parents=True)
    (sn.root / "tmp-crashed" / "fs").mkdir(parents=True)
    removed = sn.cleanup()
    assert sorted(removed) == ["999", "tmp-crashed"]
    assert sorted(os.listdir(sn.root)) == [str(sn.stat("k").sid)]
    assert sn.usage("k")["size"] == 1


def test_long_lowerdir_chain(sn, target):
    parent = None
    for i in range(60):
        parent = layer(sn, f"layer-{i:03d}-" + "x" * 40, parent, {f"f{i}": str(i)})
    mnt.mount_all(sn.prepare("top", parent), target)
    try:
        assert len(os.listdir(target)) == 60
        assert (target / "f0").read_text() == "0"
    finally:
        mnt.unmount_all(target)


def test_commit_onto_a_parent(sn, target):
    """Overlay layers are independent: one prepared without a parent can be committed
    onto one (a layer unpacked before its parent was there). The copy snapshotter's
    layers hold everything, so it refuses."""
    layer(sn, "P", None, {"a": "from P", "shared": "P"})
    sn.prepare("orphan", None)
    (sn.writable_dir("orphan") / "shared").write_text("orphan")
    sn.prepare("active-parent", None)
    with pytest.raises(InvalidParameter):
        sn.commit("X", "orphan", parent="active-parent")     # parent not committed
    with pytest.raises(NotFound):
        sn.commit("X", "orphan", parent="missing")
    if not sn.independent_layers:
        with pytest.raises(InvalidParameter):
            sn.commit("C", "orphan", parent="P")
        assert sn.stat("orphan").kind == "active" and not sn.children("P")
        return
    info = sn.commit("C", "orphan", parent="P")
    assert info.parent == "P" and info.kind == "committed"
    assert sn.children("P") == ["C"]
    with pytest.raises(Conflict):
        sn.remove("P")
    mnt.mount_all(sn.view("v", "C"), target)
    try:
        assert (target / "a").read_text() == "from P"
        assert (target / "shared").read_text() == "orphan"
    finally:
        mnt.unmount_all(target)
    # a snapshot that has a parent keeps it
    sn.prepare("child", "P")
    with pytest.raises(InvalidParameter):
        sn.commit("D", "child", parent="C")
    assert sn.commit("D", "child", parent="P").parent == "P"


def test_snapshot_root_is_a_top_directory(tmp_path, store):
    """On ext2/3/4 the directory snapshots are made in carries the Orlov 'top of
    hierarchy' hint (chattr +T), so each snapshot's files go into a block group of its own
    rather than the one the snapshots removed a moment ago left full of recently deleted
    inodes (ext4 scans past each of those for every file it creates)."""
    import fcntl
    import struct
    import subprocess
    probe = tmp_path / "probe"
    probe.mkdir()
    if subprocess.run(["chattr", "+T", str(probe)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem has no top-directory flag")
    sn = new_snapshotter(tmp_path / "root", store, "overlay")
    fd = os.open(sn.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = struct.unpack("I", fcntl.ioctl(fd, 0x80086601, bytes(8))[:4])[0]
    finally:
        os.close(fd)
    assert flags & 0x00020000
