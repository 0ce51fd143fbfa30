"""The build context's tar reader (builder/tarscan.py) against Python's tarfile on ustar,
GNU and PAX archives fed in every chunking, and its refusals (no daemon)."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from dockyard.builder.tarscan import Scanner, TarError

LONG = "d" * 90 + "/" + "e" * 60 + "/" + "f" * 120          # > 255: needs PAX or GNU L
MID = "p" * 120 + "/" + "n" * 90                              # fits ustar's prefix + name


def archive(fmt: int, *, big_ids: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        def add(name, type_=tarfile.REGTYPE, data=b"", link="", mode=0o644, uid=0):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime, ti.linkname = type_, mode, 1_700_000_123, link
            ti.uid, ti.gid = uid, 7
            ti.size = len(data) if type_ == tarfile.REGTYPE else 0
            tf.addfile(ti, io.BytesIO(data) if type_ == tarfile.REGTYPE else None)
        add("Dockerfile", data=b"FROM busybox\n")
        add("dir", tarfile.DIRTYPE, mode=0o750)
        add("dir/empty")
        add("dir/block", data=b"x" * 512)
        add("dir/odd", data=bytes(range(256)) * 9, mode=0o4755)
        add("dir/s", tarfile.SYMTYPE, link="../Dockerfile")
        add("dir/h", tarfile.LNKTYPE, link="dir/odd")
        add("dir/ünïcode ✓", data=b"u\n")
        if fmt != tarfile.USTAR_FORMAT:
            add(LONG, data=b"long\n")
            add("dir/longlink", tarfile.SYMTYPE, link="/" + LONG)
        add(MID, data=b"mid\n", uid=3_000_000 if big_ids else 1000)
    return buf.getvalue()


def scan(raw: bytes, step: int) -> tuple[list, dict]:
    s = Scanner()
    members, digests, h = [], {}, None
    for i in range(0, len(raw), step):
        for kind, x in s.feed(raw[i:i + step]):
            if kind == "file":
                h = hashlib.sha256()
            elif kind == "data":
                h.update(x)
            elif kind == "done":
                digests[x.name] = h.hexdigest()
                members.append(x)
            elif kind == "entry":
                members.append(x)
    s.finish()
    return members, digests


@pytest.mark.parametrize("fmt,big", [(tarfile.USTAR_FORMAT, False), (tarfile.GNU_FORMAT, True),
                                     (tarfile.PAX_FORMAT, True)])
@pytest.mark.parametrize("step", [1, 7, 511, 512, 513, 4096, 1 << 20])
def test_same_as_tarfile(fmt, big, step):
    raw = archive(fmt, big_ids=big)
    members, digests = scan(raw, step)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        want = tf.getmembers()
        want_digests = {m.name: hashlib.sha256(tf.extractfile(m).read()).hexdigest()
                        for m in want if m.isreg()}
        want_data = {m.name: raw[m.offset_data:m.offset_data + m.size] for m in want
                     if m.isreg()}
    got = [(m.name.rstrip("/"), m.isreg(), m.isdir(), m.issym(), m.islnk(), m.mode, m.uid, m.gid,
            m.size if m.isreg() else 0, int(m.mtime), m.linkname, m.offset_data if m.isreg()
            else 0) for m in members]
    exp = [(m.name, m.isreg(), m.isdir(), m.issym(), m.islnk(), m.mode, m.uid, m.gid,
            m.size if m.isreg() else 0, int(m.mtime), m.linkname, m.offset_data if m.isreg()
            else 0) for m in want]
    assert got == exp
    assert digests == want_digests
    for m in members:       # offsets point at the data in the stream (the spool)
        if m.isreg():
            assert raw[m.offset_data:m.offset_data + m.size] == want_data[m.name]
    assert any(m.name == MID for m in members)
    if fmt != tarfile.USTAR_FORMAT:
        assert any(m.name == LONG for m in members)


def _block(name: bytes, type_: bytes = b"0", size: int = 0) -> bytes:
    ti = tarfile.TarInfo(name.decode())
    ti.type, ti.size = type_, size
    return ti.tobuf(tarfile.USTAR_FORMAT)


def test_refusals():
    good = _block(b"a", size=3) + b"abc".ljust(512, b"\0")
    # a bad checksum: the first header means no tar at all, a later one a broken tar
    bad = bytearray(_block(b"b"))
    bad[0] ^= 1
    with pytest.raises(TarError) as ei:
        Scanner().feed(bytes(bad))
    assert ei.value.first
    with pytest.raises(TarError) as ei:
        Scanner().feed(good + bytes(bad))
    assert not ei.value.first
    # a NUL in a PAX path, an oversized extended header, an extended header with no entry
    pax = b"path=a\0b"
    rec = f"{len(pax) + 4} ".encode() + pax + b"\n"
    rec = f"{len(rec)} ".encode() + pax + b"\n" if len(rec) != int(rec.split()[0]) else rec
    with pytest.raises(TarError, match="NUL"):
        Scanner().feed(_block(b"x", b"x", len(rec)) + rec.ljust(512, b"\0") + _block(b"c"))
    with pytest.raises(TarError, match="too large"):
        Scanner().feed(_block(b"x", b"x", 2 << 20))
    s = Scanner()
    s.feed(_block(b"././@LongLink", b"L", 4) + b"abc\0".ljust(512, b"\0"))
    with pytest.raises(TarError, match="extended header"):
        s.finish()
    # cut short: in the data, in a header, in the padding; not right after the data
    for raw, ok in ((good[:510], False), (good + _block(b"z")[:100], False),
                    (good[:520], False), (good[:515], True)):
        s = Scanner()
        s.feed(raw)
        if ok:
            s.finish()
        else:
            with pytest.raises(TarError):
                s.finish()
    # what follows the end blocks is ignored; a global header is skipped
    s = Scanner()
    ev = s.feed(_block(b"g", b"g", 10) + b"9 path=x\n".ljust(512, b"\0") + good
                + bytes(1024) + b"junk")
    s.finish()
    assert [k for k, _ in ev] == ["file", "data", "done", "end"] and ev[0][1].name == "a"


def test_docker_cli_style_pax_for_long_names():
    """Go's writer (the docker CLI): ustar when the name fits, PAX records otherwise."""
    raw = archive(tarfile.PAX_FORMAT)
    members, _ = scan(raw, 4096)
    assert [m.name for m in members if m.isreg()][-2:] == [LONG, MID]
