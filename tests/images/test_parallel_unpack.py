"""Layers unpacked side by side (overlay snapshotter) give exactly what unpacking them one
after the other gives; a layer that fails leaves no snapshot behind."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time

import pytest

from distribution_helpers import CuttingProxy, docker_archive, running_registry
from dockyard.errors import DockyardError, InvalidParameter
from dockyard.images.pull import pull_sync
from dockyard.images.push import push_sync
from dockyard.images.service import chain_ids
from dockyard.images.unpack import OPAQUE_XATTR, lower_dir_stat
from dockyard.snapshots import mount as mnt
from imghelpers import entry, make_tar

T0, T1, T2 = 1_400_000_000, 1_500_000_000, 1_600_000_000


def _layers() -> list[tuple[bytes, str]]:
    """(blob, compression) of four layers that lean on each other: implicit directories
    whose metadata comes from lower layers (through whiteouts, opaque directories and
    setgid parents), whiteouts, hardlinks, a symlink shadowed by a directory."""
    l0 = [
        entry("etc/", "dir", mtime=T0),
        entry("etc/passwd", data=b"root:x:0:0\n", mtime=T0),
        entry("srv/", "dir", mode=0o750, uid=12, gid=34, mtime=T1),
        entry("srv/data/", "dir", mode=0o2775, uid=0, gid=50, mtime=T1),
        entry("srv/data/old", data=b"old", mtime=T0),
        entry("opt/", "dir", mode=0o711, mtime=T0),
        entry("opt/app/", "dir", mode=0o700, uid=7, gid=7, mtime=T1),
        entry("opt/app/bin", data=b"\x7fELF" * 1000, mode=0o755, mtime=T0),
        entry("opt/app/bin2", "hardlink", linkname="opt/app/bin"),
        entry("usr/lib/libc.so", data=os.urandom(200_000), mtime=T0),
        entry("lib", "symlink", linkname="usr/lib", mtime=T0),
        entry("gone/file", data=b"x", mtime=T0),
    ]
    l1 = [
        # srv, srv/data, srv/data/new, srv/data/new/deep: implicit
        entry("srv/data/new/deep/file", data=b"deep", uid=3, mtime=T2),
        entry("etc/.wh.passwd"),
        entry("opt/app/.wh..wh..opq"),
        entry("opt/app/bin3", data=b"three", mtime=T2),
        entry("usr/bin/a", data=os.urandom(50_000), mode=0o755, mtime=T2),
        entry("usr/bin/b", "hardlink", linkname="usr/bin/a"),
        entry(".wh.gone"),
        entry("big/blob", data=os.urandom(3 << 20), mtime=T2),
    ]
    l2 = [
        entry("srv/data/new/deep/more", data=b"more", mtime=T2),   # deep: implicit in L1 too
        entry("opt/app/x", data=b"x", mtime=T2),                   # opt/app: opaque in L1
        entry("gone/again", data=b"again", mtime=T2),              # gone: whited out in L1
        entry("lib/x", data=b"x", mtime=T2),                       # lib: a symlink below
        entry("usr/bin/c0", data=b"c", mtime=T2),
        entry("usr/bin/c", "hardlink", linkname="usr/bin/c0"),
    ]
    l3 = [
        entry("var/log/x", data=b"log", mtime=T2),                 # var: implicit ...
        entry("var/", "dir", mode=0o711, uid=5, gid=6, mtime=T0),  # ... then named: wins
        entry("srv/data/", "dir", mode=0o755, mtime=T1),           # a new srv/data
        entry("srv/data/.wh..wh..opq"),
        entry("srv/data/fresh", data=b"fresh", mtime=T1),
    ]
    return [(make_tar(l0, "gzip"), "gzip"), (make_tar(l1), "none"),
            (make_tar(l2, "gzip"), "gzip"), (make_tar(l3, "gzip"), "gzip")]


def _plain(blob: bytes) -> bytes:
    import gzip
    return gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob


def _register(svc, layers, diff_ids=None):
    media = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
             "none": "application/vnd.oci.image.layer.v1.tar"}
    descs = [(svc.content.write_blob(b), media[c]) for b, c in layers]
    if diff_ids is None:
        diff_ids = ["sha256:" + hashlib.sha256(_plain(b)).hexdigest() for b, _ in layers]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    return svc.register_image(cfg, descs), diff_ids


def _tree(d, since_ns: int) -> dict:
    """Everything a layer directory holds, hardlinks as groups; the mtimes of directories
    and whiteouts only where they are not just 'when the unpack made it'."""
    out, inodes = {}, {}
    for dp, dns, fns in os.walk(d):
        for n in dns + fns:
            p = os.path.join(dp, n)
            rel = os.path.relpath(p, d)
            st = os.lstat(p)
            rec = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid}
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    rec["sha"] = hashlib.sha256(f.read()).hexdigest()
                rec["link"] = inodes.setdefault(st.st_ino, rel)
            elif stat.S_ISLNK(st.st_mode):
                rec["target"] = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode):
                rec["rdev"] = st.st_rdev
            if not stat.S_ISLNK(st.st_mode):
                rec["xattrs"] = sorted((k, os.getxattr(p, k, follow_symlinks=False))
                                       for k in os.listxattr(p, follow_symlinks=False))
            made_now = stat.S_ISDIR(st.st_mode) or stat.S_ISCHR(st.st_mode) and not st.st_rdev
            if not made_now or st.st_mtime_ns < since_ns:
                rec["mtime"] = st.st_mtime_ns
            out[rel] = rec
    return out


def _layer_trees(svc, diff_ids, since_ns):
    return [_tree(svc.snapshotter.layer_dir(c), since_ns) for c in chain_ids(diff_ids)]


def _assert_clean(svc):
    """No unpack left behind: every snapshot is a committed layer with its row, and no
    directory the index does not know."""
    layers = {r[0] for r in svc.store.query("SELECT chain_id FROM layers")}
    snaps = svc.snapshotter.list()
    assert all(s.kind == "committed" and s.key in layers for s in snaps), snaps
    assert {s.key for s in snaps} == layers
    assert svc.snapshotter.cleanup() == []


def test_parallel_unpack_matches_sequential(make_service, tmp_path):
    since = time.time_ns() - 5_000_000_000
    layers = _layers()
    seq = make_service("seq")
    seq.parallel_unpacks = 1
    par = make_service("par")
    par.parallel_unpacks = 4
    iid_seq, diff_ids = _register(seq, layers)
    iid_par, _ = _register(par, layers)
    assert iid_seq == iid_par
    ts, tp = _layer_trees(seq, diff_ids, since), _layer_trees(par, diff_ids, since)
    for i, (a, b) in enumerate(zip(ts, tp)):
        assert a == b, f"layer {i} differs"
    _assert_clean(par)
    chains = chain_ids(diff_ids)
    assert [par.snapshotter.stat(c).parent for c in chains] == [None] + chains[:-1]

    # and both are what they should be, not merely alike
    l1, l2, l3 = tp[1], tp[2], tp[3]
    srv = l1["srv"]
    assert (stat.S_IMODE(srv["mode"]), srv["uid"], srv["gid"], srv["mtime"]) == \
        (0o750, 12, 34, T1 * 10**9)
    assert (stat.S_IMODE(l1["srv/data"]["mode"]), l1["srv/data"]["gid"]) == (0o2775, 50)
    # not in any parent: 0755, but group and setgid from the setgid parent, as mkdir does
    for d in ("srv/data/new", "srv/data/new/deep"):
        assert (stat.S_IMODE(l1[d]["mode"]), l1[d]["gid"], l1[d]["uid"]) == (0o2755, 50, 0), d
    assert l2["srv/data/new/deep"]["mode"] == l1["srv/data/new/deep"]["mode"]
    assert l2["srv/data/new/deep"]["gid"] == 50
    assert l1["etc/passwd"]["rdev"] == 0 and stat.S_ISCHR(l1["etc/passwd"]["mode"])
    assert (OPAQUE_XATTR, b"y") in l1["opt/app"]["xattrs"]
    assert l1["usr/bin/b"]["link"] == "usr/bin/a" or l1["usr/bin/a"]["link"] == "usr/bin/b"
    assert (stat.S_IMODE(l2["opt/app"]["mode"]), l2["opt/app"]["uid"]) == (0o700, 7)
    assert stat.S_IMODE(l2["gone"]["mode"]) == 0o755 and "mtime" not in l2["gone"]
    assert stat.S_ISDIR(l2["lib"]["mode"]) and stat.S_IMODE(l2["lib"]["mode"]) == 0o755
    assert (stat.S_IMODE(l3["var"]["mode"]), l3["var"]["uid"], l3["var"]["mtime"]) == \
        (0o711, 5, T0 * 10**9)
    assert (stat.S_IMODE(l3["srv"]["mode"]), l3["srv"]["uid"]) == (0o750, 12)

    # the merged view a container gets
    target = tmp_path / "merged"
    target.mkdir()
    mnt.mount_all(par.prepare_rootfs(iid_par, "ctr"), target)
    try:
        assert not (target / "etc/passwd").exists()
        assert sorted(os.listdir(target / "opt/app")) == ["bin3", "x"]
        assert (target / "gone/again").read_bytes() == b"again"
        assert not (target / "gone/file").exists()
        assert sorted(os.listdir(target / "srv/data")) == ["fresh"]
        assert (target / "usr/lib/libc.so").stat().st_size == 200_000
        assert os.stat(target / "usr/bin/a").st_ino == os.stat(target / "usr/bin/b").st_ino
    finally:
        mnt.unmount_all(target)
        par.remove_rootfs("ctr")


def test_failing_layer_leaves_no_snapshot(make_service):
    layers = _layers()
    good = ["sha256:" + hashlib.sha256(_plain(b)).hexdigest() for b, _ in layers]
    bad = list(good)
    bad[2] = "sha256:" + "0" * 64
    svc = make_service("svc")
    svc.parallel_unpacks = 4
    with pytest.raises(InvalidParameter, match="diffID mismatch"):
        _register(svc, layers, bad)
    _assert_clean(svc)
    committed = {r[0] for r in svc.store.query("SELECT chain_id FROM layers")}
    assert committed <= set(chain_ids(bad)[:2])
    assert svc.list_images() == []
    # a layer whose stream breaks off
    broken = list(layers)
    broken[3] = (layers[3][0][:len(layers[3][0]) // 2], "gzip")
    with pytest.raises(InvalidParameter):
        _register(svc, broken, good)
    _assert_clean(svc)
    # the right image still goes in whole
    iid, _ = _register(svc, layers)
    assert svc.inspect(iid)["RootFS"]["Layers"] == good
    _assert_clean(svc)
    assert {r[0] for r in svc.store.query("SELECT chain_id FROM layers")} == set(chain_ids(good))


def test_lower_dir_stat_follows_overlay_rules(tmp_path):
    up, mid, low = (tmp_path / n for n in ("up", "mid", "low"))
    for d in (up, mid, low):
        d.mkdir()
    (low / "a/b").mkdir(parents=True)
    os.chmod(low / "a/b", 0o700)
    (mid / "a").mkdir()
    os.chmod(mid / "a", 0o750)
    assert stat.S_IMODE(lower_dir_stat([up, mid, low], ["a"]).st_mode) == 0o750
    assert stat.S_IMODE(lower_dir_stat([up, mid, low], ["a", "b"]).st_mode) == 0o700
    os.setxattr(mid / "a", OPAQUE_XATTR, b"y")           # hides low's a/b
    assert lower_dir_stat([up, mid, low], ["a", "b"]) is None
    assert lower_dir_stat([up, low], ["a", "b"]) is not None
    os.mknod(up / "a", stat.S_IFCHR, os.makedev(0, 0))    # a whiteout hides everything below
    assert lower_dir_stat([up, mid, low], ["a"]) is None
    os.symlink("/etc", mid / "etc")                        # a symlink is not followed
    assert lower_dir_stat([mid], ["etc"]) is None
    assert lower_dir_stat([mid, low], ["nothing"]) is None


def test_pull_with_a_corrupt_layer_leaves_no_snapshot(make_service, tmp_path):
    """Several layers unpacking at once while one download turns out corrupt: the pull
    fails, nothing of the failed layers stays, and a pull over a good line completes."""
    with running_registry(tmp_path / "reg") as reg:
        a = make_service("a")
        sizes = [1 << 20, 3 << 20, 2 << 20, 1 << 20]
        diff_ids = docker_archive(tmp_path / "img.tar", sizes, tag="par/img:v1")
        with open(tmp_path / "img.tar", "rb") as f:
            list(a.load_images(f))
        name = f"{reg.addr}/par/img"
        a.tag("par/img:v1", name, "v1")
        push_sync(a, name, "v1")
        proxy = CuttingProxy((reg.host, reg.port), corrupt_at=2 << 20)
        try:
            b = make_service("b")
            with pytest.raises(DockyardError):
                pull_sync(b, f"{proxy.addr}/par/img:v1")
            assert proxy.corrupt_done
            _assert_clean(b)
            assert b.list_images() == []
            assert not any(s.key.startswith("extract-") for s in b.snapshotter.list())
        finally:
            proxy.close()
        msgs = pull_sync(b, f"{name}:v1")
        assert b.inspect(f"{name}:v1")["RootFS"]["Layers"] == diff_ids
        # Docker's progress shape: every layer ends in "Pull complete", in layer order
        done = [m["id"] for m in msgs if m.get("status") in ("Pull complete", "Already exists")]
        assert len(done) == 4
        _assert_clean(b)
        root = b.snapshotter.layer_dir(chain_ids(diff_ids)[1])
        assert (root / "l1/data").stat().st_size == 3 << 20
