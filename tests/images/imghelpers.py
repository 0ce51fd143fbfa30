"""Helpers for the image store tests: tar building and compression."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path


class _TI(tarfile.TarInfo):
    __slots__ = ("_data",)


def entry(name, type="file", data=b"", mode=None, uid=0, gid=0, linkname="", mtime=1_600_000_000,
          xattrs=None, dev=(0, 0)) -> tarfile.TarInfo:
    ti = _TI(name)
    ti.uid, ti.gid, ti.mtime = uid, gid, mtime
    ti.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
               "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
               "fifo": tarfile.FIFOTYPE}[type]
    ti.mode = mode if mode is not None else (0o755 if type == "dir" else 0o644)
    ti.linkname = linkname
    ti.devmajor, ti.devminor = dev
    if xattrs:
        ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    ti._data = data
    ti.size = len(data) if type == "file" else 0
    return ti


def make_tar(entries, compression="none") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti in entries:
            data = getattr(ti, "_data", b"")
            tf.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return compress(buf.getvalue(), compression)


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data)
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdCompressor().compress(data)
    return data


def dir_tar(root: Path, compression="none") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(str(root), arcname=".")
    return compress(buf.getvalue(), compression)
