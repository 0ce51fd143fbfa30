"""dockyard.fsroot and its users in images/diff.py on real trees, with the swaps a racing
container makes done at exact points (through the walk's hooks), so each case is
deterministic: a name turned into a symlink to the host between the listing and the
open, an entry replaced after it was pinned, a directory swapped before the walk enters
it, a change list gone stale before the layer is written."""

from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest

from dockyard.fsroot.nodes import lookup, open_node, open_root, walk
from dockyard.fsroot.tar import TarWriter
from dockyard.images import diff

SECRET = b"HOST-SECRET-fsroot-test"


@pytest.fixture
def host(tmp_path):
    """A host directory the trees below must never be read through."""
    d = tmp_path / "host"
    d.mkdir()
    (d / "f").write_bytes(SECRET)
    (d / "inner").write_bytes(SECRET)
    (d / "hostonly").write_bytes(SECRET)
    return d


def _swap_for_link(path, target) -> None:
    """What the container does: ``path`` becomes a symlink to a host path."""
    os.rename(path, str(path) + ".moved")
    os.symlink(target, path)


def _entries(data: bytes) -> dict[bytes, tuple[tarfile.TarInfo, bytes | None]]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), encoding="utf-8",
                      errors="surrogateescape") as tf:
        for m in tf:
            body = tf.extractfile(m).read() if m.isreg() else None
            out[m.name.encode("utf-8", "surrogateescape")] = (m, body)
    return out


def _tar_tree(root, hook=None) -> bytes:
    buf = io.BytesIO()
    fd = open_root(root)
    try:
        with TarWriter(buf) as tw:
            tw.add_tree(fd, "", skip=(lambda p, n: bool(hook(p, n))) if hook else None)
    finally:
        os.close(fd)
    return buf.getvalue()


def test_name_swapped_for_a_symlink_before_it_is_opened(tmp_path, host):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a").write_text("first")
    (root / "f").write_text("innocent")

    def hook(path, node):   # while "a" is archived, "f" (listed already) is swapped
        if path == "a":
            _swap_for_link(root / "f", str(host / "f"))

    data = _tar_tree(root, hook)
    assert SECRET not in data
    m, _ = _entries(data)[b"f"]
    assert m.issym() and m.linkname == str(host / "f")


def test_pinned_file_swapped_for_a_symlink_is_read_from_its_inode(tmp_path, host):
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_text("innocent")

    def hook(path, node):   # pinned as a regular file; then the name is swapped
        if path == "f":
            _swap_for_link(root / "f", str(host / "f"))

    data = _tar_tree(root, hook)
    assert SECRET not in data
    m, body = _entries(data)[b"f"]
    assert m.isreg() and body == b"innocent"


def test_directory_swapped_for_a_symlink_is_not_entered(tmp_path, host):
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "inner").write_text("innocent")

    def hook(path, node):   # "d" pinned as a directory, then swapped before the descent
        if path == "d":
            _swap_for_link(root / "d", str(host))

    data = _tar_tree(root, hook)
    names = _entries(data)
    assert SECRET not in data and b"d/hostonly" not in names
    assert names[b"d/inner"][1] == b"innocent"   # the pinned directory's own content
    # and an fd walk never turns a symlink into a directory to enter
    fd = open_root(root)
    try:
        assert [p for p, _ in walk(fd)] == ["d", "d.moved", "d.moved/inner"]
    finally:
        os.close(fd)


def test_lookup_follows_no_symlink(tmp_path, host):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "x").write_text("x")
    os.symlink(str(host), root / "abs")
    os.symlink("real", root / "rel")
    fd = open_root(root)
    try:
        assert lookup(fd, ["abs", "f"]) is None
        assert lookup(fd, ["rel", "x"]) is None
        with lookup(fd, ["real", "x"]) as n:
            assert n.is_reg()
        with lookup(fd, ["abs"]) as n:
            assert n.is_link() and n.readlink() == str(host)
        assert open_node(fd, "missing") is None
    finally:
        os.close(fd)


def test_special_files_are_archived_not_opened(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "fifo")    # opening it for reading would block: no writer
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    (root / "hl1").write_text("same")
    os.link(root / "hl1", root / "hl2")
    names = _entries(_tar_tree(root))
    assert names[b"fifo"][0].isfifo()
    assert names[b"null"][0].ischr() and names[b"null"][0].devmajor == 1
    assert names[b"hl2"][0].islnk() and names[b"hl2"][0].linkname == "hl1"


def test_non_utf8_names_are_kept_byte_for_byte(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    raw = b"caf\xe9-\xff"
    os.mkdir(os.fsencode(root) + b"/dir-" + raw)
    with open(os.fsencode(root) + b"/dir-" + raw + b"/" + raw, "wb") as f:
        f.write(b"latin1")
    os.symlink(b"target-" + raw, os.fsencode(root) + b"/link-" + raw)
    names = _entries(_tar_tree(root))
    assert names[b"dir-" + raw + b"/" + raw][1] == b"latin1"
    assert names[b"link-" + raw][0].linkname.encode("utf-8", "surrogateescape") == \
        b"target-" + raw
    # docker diff's view of such a name: one U+FFFD per invalid byte, as Go's JSON
    shown = diff.display([{"Path": "/" + os.fsdecode(raw), "Kind": 1}])
    assert shown == [{"Path": "/caf\ufffd-\ufffd", "Kind": 1}]


def test_write_changes_of_a_stale_list_reads_nothing_through_a_symlink(tmp_path, host):
    """Copy snapshotter: the change list is made, then the container swaps a listed
    directory for a symlink to the host before the layer is written."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    (new / "d").mkdir(parents=True)
    (new / "d" / "f").write_text("innocent")
    (new / "d" / "hostonly").write_text("innocent too")
    changes = diff.naive_changes(new, old)
    assert {c["Path"] for c in changes} == {"/d", "/d/f", "/d/hostonly"}
    _swap_for_link(new / "d", str(host))
    buf = io.BytesIO()
    diff.write_changes(new, changes, buf)
    names = _entries(buf.getvalue())
    assert SECRET not in buf.getvalue()
    assert names[b"d"][0].issym() and b"d/f" not in names


def test_naive_changes_do_not_enter_symlinks(tmp_path, host):
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "d").mkdir(parents=True)
    (old / "d" / "kept").write_text("k")
    (new / "d").mkdir(parents=True)
    (new / "d" / "kept").write_text("k")
    os.utime(old / "d" / "kept", (1, 1))
    os.utime(new / "d" / "kept", (1, 1))
    os.symlink(str(host), new / "l")
    got = {c["Path"]: c["Kind"] for c in diff.naive_changes(new, old)}
    assert got.get("/l") == diff.ADD and not any(p.startswith("/l/") for p in got)
    assert "/d/kept" not in got
    assert diff.naive_size(new, old) == len(str(host))   # the symlink's own size


def test_is_mount_root_tells_a_bind_mount_of_the_same_filesystem(tmp_path):
    """export and cp check that a container's rootfs is still mounted after opening it:
    a copy snapshotter's rootfs is a bind mount, on the same device as its parent."""
    from dockyard.fsroot.nodes import is_mount_root
    from dockyard.snapshots import mount as mnt

    src, target = tmp_path / "src", tmp_path / "c" / "rootfs"
    src.mkdir()
    target.mkdir(parents=True)

    def check() -> bool:
        fd = open_root(target)
        try:
            return is_mount_root(fd, target)
        finally:
            os.close(fd)

    assert not check()
    mnt.mount_all([{"type": "bind", "source": str(src), "options": ["rbind", "rw"]}], target)
    try:
        assert os.stat(target).st_dev == os.stat(target.parent).st_dev
        assert check()
    finally:
        mnt.unmount_all(target)
    assert not check()


def test_a_failed_tar_writes_nothing_more(tmp_path):
    """A tar cut short by an error is left so: no end marker, and its buffered bytes
    are not written later when the writer is collected (on whatever thread)."""
    import gc

    class Out:
        def __init__(self) -> None:
            self.n = 0

        def write(self, b: bytes) -> int:
            self.n += len(b)
            return len(b)

    out = Out()
    with pytest.raises(RuntimeError):
        with TarWriter(out) as tw:
            tw.add_marker("x")
            raise RuntimeError("failed mid-way")
    del tw
    gc.collect()
    assert out.n == 0   # the one header was still in the stream's buffer


def test_cp_owner_lookup_never_opens_a_device_swapped_in(tmp_path, monkeypatch):
    """docker cp reads the container's /etc/passwd for owner names: a device node put
    in its place right after the path was resolved is not opened (the old check by
    lstat, then open by name, read 1 MiB of /dev/zero's twin)."""
    from dockyard.containers import archive

    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    real = archive.resolve

    def resolve_then_swap(*a, **kw):
        res = real(*a, **kw)
        os.rename(root / "etc" / "passwd", root / "etc" / "passwd.moved")
        os.mknod(root / "etc" / "passwd", stat.S_IFCHR | 0o644, os.makedev(1, 5))  # zero
        return res

    fd = open_root(root)
    try:
        assert archive._table(fd, "/etc/passwd")[0][0] == "root"
        monkeypatch.setattr(archive, "resolve", resolve_then_swap)
        assert archive._table(fd, "/etc/passwd") == []
    finally:
        os.close(fd)
