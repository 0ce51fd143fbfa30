"""The build context: unpacked once, hashed once, hostile entries refused (no daemon)."""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import tarfile

import pytest

from dockyard.builder.context import ContextError, receive


def tar_of(entries, compress=None) -> io.BytesIO:
    """entries: (name, kind, data/linkname, mode)"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, data, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = mode
            ti.mtime = 1_600_000_000
            if kind == "f":
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            elif kind == "d":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif kind == "l":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                tf.addfile(ti)
            elif kind == "h":
                ti.type = tarfile.LNKTYPE
                ti.linkname = data
                tf.addfile(ti)
            elif kind == "c":
                ti.type = tarfile.CHRTYPE
                tf.addfile(ti)
    raw = buf.getvalue()
    if compress == "gz":
        raw = gzip.compress(raw)
    elif compress == "xz":
        raw = lzma.compress(raw)
    return io.BytesIO(raw)


BASIC = [("Dockerfile", "f", b"FROM a\n", 0o644), ("app", "d", None, 0o750),
         ("app/x.sh", "f", b"echo\n", 0o755), ("app/link", "l", "x.sh", 0o777),
         ("abs", "l", "/app/../app/x.sh", 0o777), ("hard", "h", "app/x.sh", 0o644)]


@pytest.mark.parametrize("compress", [None, "gz", "xz"])
def test_unpack_index_and_hashes(tmp_path, compress):
    ctx = receive(tar_of(BASIC, compress), str(tmp_path / "c"))
    with ctx:
        e = ctx.entries["app/x.sh"]
        assert (e.kind, e.mode, e.size) == ("file", 0o755, 5)
        assert e.digest == "sha256:" + hashlib.sha256(b"echo\n").hexdigest()
        assert ctx.entries["app"].mode == 0o750
        assert ctx.entries["app/link"].kind == "symlink"
        assert ctx.entries["hard"].digest == e.digest
        # symlinks are followed inside the context, absolute ones from its root
        assert ctx.resolve("app/link") == e and ctx.resolve("abs") == e
        assert ctx.resolve("abs", follow_last=False).kind == "symlink"
        assert ctx.read("Dockerfile") == b"FROM a\n"
        assert e.mtime == 1_600_000_000
        with ctx.open(ctx.entries["hard"]) as f:
            assert f.read(2) == b"ec" and f.read() == b"ho\n" and f.read() == b""
        # one spool file, no file of the context created on disk
        assert os.listdir(tmp_path / "c") == ["context.tar"]
        assert [x.path for x in ctx.below("app")] == ["app/link", "app/x.sh"]
    assert not (tmp_path / "c").exists()


def test_links_never_leave_the_context(tmp_path):
    ctx = receive(tar_of([("up", "l", "../../../etc/passwd", 0o777),
                          ("etc", "d", None, 0o755), ("etc/passwd", "f", b"mine", 0o644),
                          ("dir", "l", "/", 0o777)]), str(tmp_path / "c"))
    with ctx:
        assert ctx.resolve("up").digest == ctx.entries["etc/passwd"].digest
        assert ctx.resolve("dir/etc/passwd") == ctx.entries["etc/passwd"]
        assert ctx.resolve("missing") is None and ctx.resolve("etc/passwd/x") is None


def test_link_loop(tmp_path):
    ctx = receive(tar_of([("a", "l", "b", 0o777), ("b", "l", "a", 0o777)]), str(tmp_path / "c"))
    with ctx, pytest.raises(ContextError, match="too many levels"):
        ctx.resolve("a")


@pytest.mark.parametrize("entries,msg", [
    ([("../evil", "f", b"x", 0o644)], "outside of the context"),
    ([("a/../../evil", "f", b"x", 0o644)], "outside of the context"),
    ([("l", "l", "/tmp", 0o777), ("l/evil", "f", b"x", 0o644)], "through a symlink"),
    ([("f", "f", b"", 0o644), ("f/evil", "f", b"x", 0o644)], "through a file"),
    ([("dev", "c", None, 0o644)], "device nodes"),
    ([("h", "h", "missing", 0o644)], "names no file"),
    ([("x", "f", b"1", 0o644), ("x", "f", b"2", 0o644)], "appears twice"),
])
def test_hostile_entries_refused_and_nothing_left(tmp_path, entries, msg):
    outside = tmp_path / "outside"
    with pytest.raises(ContextError, match=msg):
        receive(tar_of(entries), str(tmp_path / "c"))
    assert not (tmp_path / "c").exists() and not outside.exists()
    assert sorted(os.listdir(tmp_path)) == []


def test_bzip2_and_cut_short(tmp_path):
    import bz2
    raw = tar_of(BASIC).getvalue()
    with receive(io.BytesIO(bz2.compress(raw)), str(tmp_path / "b")) as ctx:
        assert ctx.read("app/x.sh") == b"echo\n"
    with pytest.raises(ContextError, match="invalid build context tar"):
        receive(io.BytesIO(raw[:700]), str(tmp_path / "c"))
    assert not (tmp_path / "c").exists()


def test_not_a_tar_and_empty(tmp_path):
    with pytest.raises(ContextError, match="not a tar archive"):
        receive(io.BytesIO(b"hello, this is not a tar" * 40), str(tmp_path / "c"))
    ctx = receive(io.BytesIO(b""), str(tmp_path / "e"))
    with ctx:
        assert list(ctx.entries) == [""]


def test_dockerignore_applied(tmp_path):
    entries = BASIC + [(".dockerignore", "f", b"app/*.sh\n!app/link\n*.log\n", 0o644),
                       ("a.log", "f", b"", 0o644), ("other.Dockerfile", "f", b"", 0o644),
                       ("other.Dockerfile.dockerignore", "f", b"hard\n", 0o644)]
    with receive(tar_of(entries), str(tmp_path / "c")) as ctx:
        assert "app/x.sh" not in ctx.entries and "a.log" not in ctx.entries
        assert "app/link" in ctx.entries and "hard" in ctx.entries
        assert ctx.resolve("app/link") is None   # its target is excluded
    # <Dockerfile>.dockerignore beside a named Dockerfile wins over .dockerignore
    with receive(tar_of(entries), str(tmp_path / "d"), "other.Dockerfile") as ctx:
        assert "hard" not in ctx.entries and "app/x.sh" in ctx.entries


def test_large_file_streams(tmp_path):
    """A file bigger than any buffer goes through in chunks with the right digest."""
    data = os.urandom(3 << 20) * 2
    with receive(tar_of([("big", "f", data, 0o644)]), str(tmp_path / "c")) as ctx:
        # larger than LAZY: hashed only when something asks (a step reading it)
        assert ctx.entries["big"].digest == ""
        assert ctx.digest(ctx.entries["big"]) == "sha256:" + hashlib.sha256(data).hexdigest()
        assert ctx.meta(ctx.entries["big"]).endswith(hashlib.sha256(data).hexdigest())
        with pytest.raises(ContextError, match="larger than"):
            ctx.read("big", limit=1024)


def test_a_tar_without_its_end_blocks_as_the_cli_sends_one(tmp_path):
    """docker build -f /outside: the CLI appends the Dockerfile and stops right after its
    data (no padding, no end blocks); Go's reader takes that, so do we. A file cut short
    is still refused."""
    import io as _io
    import tarfile as _t
    from dockyard.builder import context as bctx
    buf = _io.BytesIO()
    with _t.open(fileobj=buf, mode="w") as tf:
        for name, data in (("f.txt", b"hi\n"), (".dockerfile.abc", b"FROM busybox\n")):
            ti = _t.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, _io.BytesIO(data))
    raw = buf.getvalue()
    cut = raw[:512 + 512 + 512 + len(b"FROM busybox\n")]
    ctx = bctx.receive(_io.BytesIO(cut), str(tmp_path / "c"), ".dockerfile.abc")
    try:
        assert ctx.read(".dockerfile.abc") == b"FROM busybox\n"
        assert ctx.read("f.txt") == b"hi\n"
    finally:
        ctx.close()
    with pytest.raises(bctx.ContextError, match="cut short|unexpected end"):
        bctx.receive(_io.BytesIO(cut[:-3]), str(tmp_path / "d"), "Dockerfile")
    assert not (tmp_path / "d").exists()


def test_large_files_hashed_when_read_and_keys_follow_content(tmp_path):
    """A big file no step reads is never hashed; one a COPY reads keys the step by its
    content (a changed byte changes the key; the same content, the same key)."""
    from dockyard.builder import dockerfile, planner
    big = os.urandom(3 << 20)
    df = dockerfile.parse(b"FROM scratch\nCOPY big /big\n")
    keys = []
    for n, data in enumerate((big, big, big[:-1] + bytes([big[-1] ^ 1]))):
        ctx = receive(tar_of([("big", "f", data, 0o644), ("unused", "f", big, 0o644)]),
                      str(tmp_path / f"c{n}"))
        with ctx:
            p = planner.plan(df, build_args={}, bases={}, context=ctx, downloads={})
            keys.append(p.stages[-1].steps[-1].key)
            assert set(ctx._digests) == {ctx.entries["big"].offset}   # "unused": never
    assert keys[0] == keys[1] != keys[2]
