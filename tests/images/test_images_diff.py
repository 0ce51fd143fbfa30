import io
import os
import tarfile

from dockyard.images import diff
from dockyard.images.unpack import apply_layer
from dockyard.snapshots import mount as mnt
from dockyard.snapshots import new_snapshotter
from imghelpers import entry, make_tar

BASE = [entry("etc/", "dir"), entry("etc/a", data=b"a"), entry("etc/b", data=b"b"),
        entry("opt/", "dir"), entry("opt/old1", data=b"1"), entry("opt/sub/", "dir"),
        entry("opt/sub/old2", data=b"2"), entry("usr/", "dir"), entry("usr/keep", data=b"k")]


def test_changes_and_layer_tar_roundtrip(tmp_path, store):
    sn = new_snapshotter(tmp_path / "root", store, "overlay")
    sn.prepare("b")
    apply_layer(io.BytesIO(make_tar(BASE)), sn.writable_dir("b"))
    sn.commit("B", "b")
    target = tmp_path / "m"
    target.mkdir()
    mnt.mount_all(sn.prepare("ctr", "B"), target)
    try:
        (target / "etc/a").write_text("changed")
        (target / "etc/b").unlink()
        (target / "etc/new").write_text("n")
        os.link(target / "etc/new", target / "etc/new-hl")
        import shutil
        shutil.rmtree(target / "opt")
        (target / "opt").mkdir()              # a new dir where one was: overlay makes it opaque
        (target / "opt/fresh").write_text("f")
        os.symlink("../etc/a", target / "usr/ln")
    finally:
        mnt.unmount_all(target)
    ch = {c["Path"]: c["Kind"] for c in diff.changes(sn.layer_dir("ctr"), sn.lower_dirs("ctr"))}
    assert ch["/etc"] == 0 and ch["/etc/a"] == 0 and ch["/etc/b"] == 2
    assert ch["/etc/new"] == 1 and ch["/usr/ln"] == 1
    assert ch["/opt"] == 0 and ch["/opt/fresh"] == 1
    assert ch["/opt/old1"] == 2 and ch["/opt/sub"] == 2
    assert "/usr/keep" not in ch
    # layer tar from the upper dir, applied on the base in another snapshot: same view
    buf = io.BytesIO()
    diff_id, size = diff.write_layer(sn.layer_dir("ctr"), buf)
    assert size == len(buf.getvalue())
    names = tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
    assert "etc/.wh.b" in names and "opt/.wh..wh..opq" in names
    hl = [m for m in tarfile.open(fileobj=io.BytesIO(buf.getvalue())) if m.islnk()]
    assert len(hl) == 1
    for kind in ("overlay", "copy"):
        s2 = new_snapshotter(tmp_path / f"root-{kind}", store, kind)
        b, c = f"{kind}-b", f"{kind}-c"
        s2.prepare(b)
        apply_layer(io.BytesIO(make_tar(BASE)), s2.writable_dir(b), whiteout=s2.whiteout_mode)
        s2.commit(b.upper(), b)
        s2.prepare(c, b.upper())
        res = apply_layer(io.BytesIO(buf.getvalue()), s2.writable_dir(c), whiteout=s2.whiteout_mode)
        assert res.diff_id == diff_id
        s2.commit(c.upper(), c)
        t2 = tmp_path / f"m-{kind}"
        t2.mkdir()
        mnt.mount_all(s2.view(f"{kind}-v", c.upper()), t2)
        try:
            assert sorted(os.listdir(t2 / "etc")) == ["a", "new", "new-hl"]
            assert (t2 / "etc/a").read_text() == "changed"
            assert os.listdir(t2 / "opt") == ["fresh"]
            assert os.readlink(t2 / "usr/ln") == "../etc/a"
            assert os.stat(t2 / "etc/new").st_ino == os.stat(t2 / "etc/new-hl").st_ino
        finally:
            mnt.unmount_all(t2)


def test_naive_changes(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for d in (old, new):
        (d / "etc").mkdir(parents=True)
        (d / "etc/same").write_text("s")
        os.utime(d / "etc/same", (1, 1))
    (old / "etc/gone").write_text("g")
    (new / "etc/added").write_text("a")
    (old / "etc/mod").write_text("1")
    (new / "etc/mod").write_text("22")
    ch = {c["Path"]: c["Kind"] for c in diff.naive_changes(new, old)}
    assert ch == {"/etc": 0, "/etc/added": 1, "/etc/gone": 2, "/etc/mod": 0} or \
        {k: v for k, v in ch.items() if k != "/etc"} == {"/etc/added": 1, "/etc/gone": 2, "/etc/mod": 0}
    buf = io.BytesIO()
    diff.write_changes(new, diff.naive_changes(new, old), buf)
    names = tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
    assert "etc/.wh.gone" in names and "etc/added" in names and "etc/same" not in names


def test_layer_body_written_ahead_gives_the_same_tar(tmp_path):
    """A builder layer written ahead: its body (all below the destination chain) made
    early, the chain's directories given other metadata afterwards (as the parent's are
    inherited), then the tar from both: byte for byte what one walk writes."""
    up = tmp_path / "up"
    top = up / "a" / "b"
    (top / "sub" / "deeper").mkdir(parents=True)
    for i in range(30):
        (top / "sub" / f"f{i:02}").write_bytes(os.urandom(700 * i))
    (top / ("long-" + "n" * 120)).write_bytes(b"long name")
    (top / "caf\u00e9").write_text("non-ascii")
    os.symlink("../x", top / "sub" / "ln")
    os.link(top / "sub" / "f03", top / "hl")
    os.chmod(top / "sub", 0o750)
    os.utime(top / "sub", (1_600_000_000, 1_600_000_000))
    body = io.BytesIO()
    size = diff.write_layer_body(up, ["a", "b"], body)
    assert size is not None and size == len(body.getvalue()) and size % 512 == 0
    # the chain takes other metadata later (the parent image's)
    os.chown(up / "a", 1234, 5678)
    os.chmod(up / "a" / "b", 0o700)
    os.utime(up / "a", (1_500_000_000, 1_500_000_000))
    whole = io.BytesIO()
    want = diff.write_layer(up, whole)
    out = io.BytesIO()
    body.seek(0)
    got = diff.write_layer_with_body(up, ["a", "b"], body, size, out)
    assert got == want and out.getvalue() == whole.getvalue()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        names = tf.getnames()
    assert names[:2] == ["a", "a/b"] and "a/b/sub/f29" in names
    # not one chain with everything below it: no body, and no tar from an old one
    assert diff.write_layer_body(up, ["a"], io.BytesIO()) is not None
    (up / "other").mkdir()
    assert diff.write_layer_body(up, ["a", "b"], io.BytesIO()) is None
    assert diff.write_layer_with_body(up, ["a", "b"], io.BytesIO(body.getvalue()), size,
                                      io.BytesIO()) is None
