import hashlib
import os
import time

import pytest

from dockyard.content import ContentStore
from dockyard.errors import InvalidParameter, NotFound


def dg(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def test_write_commit_read(tmp_path):
    cs = ContentStore(tmp_path)
    data = os.urandom(3 << 20)
    w = cs.writer("ref-1")
    w.write(data[:1000])
    w.write(data[1000:])
    assert w.offset == len(data)
    d = w.commit(size=len(data), expected=dg(data))
    assert d == dg(data)
    assert cs.read(d) == data
    assert cs.info(d).size == len(data)
    assert (tmp_path / "content/blobs/sha256" / d[7:]).exists()
    assert [i.digest for i in cs.list()] == [d]
    assert cs.ingests() == []
    cs.delete(d)
    with pytest.raises(NotFound):
        cs.info(d)


def test_wrong_digest_refused_nothing_stored(tmp_path):
    cs = ContentStore(tmp_path)
    w = cs.writer("bad")
    w.write(b"hello")
    with pytest.raises(InvalidParameter, match="unexpected commit digest"):
        w.commit(expected=dg(b"other"))
    assert list(cs.list()) == []
    assert cs.ingests() == []
    w = cs.writer("bad-size")
    w.write(b"hello")
    with pytest.raises(InvalidParameter, match="unexpected size"):
        w.commit(size=4)
    assert list(cs.list()) == []
    assert not cs.exists(dg(b"hello"))


def test_resume_after_partial_write(tmp_path):
    cs = ContentStore(tmp_path)
    data = os.urandom(100_000)
    w = cs.writer("download-1")
    w.write(data[:40_000])
    w.close()                      # e.g. connection lost
    assert not cs.exists(dg(data))  # invisible until committed
    assert cs.status("download-1").offset == 40_000
    w = cs.writer("download-1")    # resume
    assert w.offset == 40_000
    w.write(data[40_000:])
    assert w.commit(len(data), dg(data)) == dg(data)
    assert cs.read(dg(data)) == data


def test_crash_leftover_ingest_swept_and_invalid_digest(tmp_path):
    cs = ContentStore(tmp_path)
    # a crashed writer: data dir without a live lock holder
    d = cs._ingest_dir("crashed")
    d.mkdir(parents=True)
    (d / "ref").write_text("crashed")
    (d / "data").write_bytes(b"partial")
    (d / "lock").write_text("999999999")
    assert [s.ref for s in cs.ingests()] == ["crashed"]
    assert cs.sweep(older_than=3600) == []   # too recent
    old = time.time() - 7200
    os.utime(d / "data", (old, old))
    assert cs.sweep(older_than=3600) == ["crashed"]
    assert cs.ingests() == []
    with pytest.raises(InvalidParameter):
        cs.open("sha256:../../etc/passwd")
    with pytest.raises(InvalidParameter):
        cs.info("md5:abc")


def test_write_blob_idempotent(tmp_path):
    cs = ContentStore(tmp_path)
    a = cs.write_blob(b"x" * 10)
    b = cs.write_blob(b"x" * 10, expected=a)
    assert a == b and len(list(cs.list())) == 1
    with pytest.raises(InvalidParameter):
        cs.write_blob(b"y", expected=a.replace("a", "b") if "a" in a[7:] else dg(b"z"))
    assert len(list(cs.list())) == 1


def test_one_writer_per_ref(tmp_path):
    from dockyard.errors import Conflict
    cs = ContentStore(tmp_path)
    w = cs.writer("r")
    with pytest.raises(Conflict, match="locked"):
        cs.writer("r")
    w.write(b"abc")
    w.close()
    w2 = cs.writer("r")             # free again once closed
    assert w2.offset == 3
    w2.abort()
    assert cs.ingests() == []
    cs.writer("r").commit()         # and after an abort


def _resident_pages(path) -> int:
    """Pages of ``path`` in the page cache (util-linux's fincore)."""
    import shutil
    import subprocess

    if shutil.which("fincore") is None:
        pytest.skip("fincore (util-linux) not installed")
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "PAGES", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def _direct_io_here(path) -> bool:
    """Whether O_DIRECT writes bypass the page cache in ``path``'s file system (not
    tmpfs, whose files live in it)."""
    return _fstype(path) not in ("tmpfs", "ramfs")


def _fstype(path) -> str:
    import subprocess
    r = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(path)],
                       capture_output=True, text=True)
    return r.stdout.strip()


def test_direct_writer_bytes_resume_and_page_cache(tmp_path):
    """A direct ingest gets every byte right across odd write sizes, flushes, a close
    and a resume; what it wrote (all but an unaligned tail) is not in the page cache."""
    if not _direct_io_here(tmp_path):
        pytest.skip("O_DIRECT does not bypass the page cache here (tmpfs)")
    cs = ContentStore(tmp_path)
    data = os.urandom((12 << 20) + 12345)
    w = cs.writer("d", direct=True)
    for i in range(0, 5 << 20, 777_777):
        w.write(data[i:min(i + 777_777, 5 << 20)])
        w.flush()
        # readers may read what ``flushed`` says is in the file
        assert w.flushed <= w.offset and w.offset - w.flushed < 4096
        assert os.path.getsize(cs.ingest_path("d")) == w.flushed
    w.close()                       # the unaligned tail is written too
    assert os.path.getsize(cs.ingest_path("d")) == 5 << 20
    w = cs.writer("d", direct=True)
    assert w.offset == 5 << 20      # aligned: the resumed ingest writes directly again
    w.write(data[5 << 20:])
    digest = w.commit(len(data), dg(data))
    assert cs.read(digest) == data
    # the read above brought the pages in; a new blob written directly has at most
    # its unaligned tail's page cached
    data2 = os.urandom((8 << 20) + 100)
    w = cs.writer("e", direct=True)
    w.write(data2)
    d2 = w.commit(len(data2), dg(data2))
    assert _resident_pages(cs.path(d2)) <= 1
    # a resumed ingest that ends unaligned is written buffered, bytes still right
    w = cs.writer("f", direct=True)
    w.write(data2[:1000])
    w.close()
    w = cs.writer("f", direct=True)
    w.write(data2[1000:])
    assert cs.read(w.commit(len(data2), dg(data2))) == data2
    # a failed verification stores nothing, as with buffered writes
    w = cs.writer("g", direct=True)
    w.write(data2)
    with pytest.raises(InvalidParameter):
        w.commit(len(data2), dg(b"other"))
    assert cs.ingests() == []
