"""Tar entries made from :class:`~dockyard.fsroot.nodes.Node`s (export, commit, cp).

Every header comes from the node's ``fstat`` and every byte from the inode the node
pins, so what a tar says and holds is one inode's, whatever the container renames
meanwhile. A regular file is written with the size its open fd reports (zero-padded if
it shrinks while read, cut if it grows). Names are written byte for byte: ``str`` names
carry undecodable bytes as surrogate escapes and the tar is written with
``surrogateescape`` (PAX ``hdrcharset=BINARY`` where needed), xattr values too.
Sockets are left out, as Docker does; hard links within one tar become ``LNKTYPE``.
"""

from __future__ import annotations

import os
import stat
import tarfile
from typing import BinaryIO, Callable

from dockyard.fsroot.nodes import Node, walk

CAPABILITY = "security.capability"


def capability_only(name: str) -> bool:
    """dockerd's tars carry only this xattr (export, cp)."""
    return name == CAPABILITY


def decode_name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def trailer(size: int) -> bytes:
    """The end of a tar whose entries take ``size`` bytes, as :meth:`TarWriter.close`
    writes it: two zero blocks, then zeros up to a whole record."""
    n = size + 2 * tarfile.BLOCKSIZE
    return bytes(2 * tarfile.BLOCKSIZE + (-n) % tarfile.RECORDSIZE)


class TarWriter:
    """A streaming PAX tar of nodes written to ``out`` (closed by :meth:`close`)."""

    def __init__(self, out: BinaryIO, *, users: dict[int, str] | None = None,
                 groups: dict[int, str] | None = None,
                 keep_xattr: Callable[[str], bool] = capability_only,
                 clamp_mtime: int | None = None) -> None:
        self.tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                               encoding="utf-8", errors="surrogateescape")
        self.users = users or {}
        self.groups = groups or {}
        self.keep_xattr = keep_xattr
        self.inodes: dict[tuple[int, int], str] = {}
        # SOURCE_DATE_EPOCH: no time after it (reproducible layers, as BuildKit's)
        self.clamp = clamp_mtime

    def __enter__(self) -> "TarWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:   # a tar cut short gets no end-of-archive marker: readers see it broken;
            # nor does the stream flush its buffer later, when it is collected
            self.tf.closed = True
            stream = self.tf.fileobj
            if isinstance(stream, tarfile._Stream):
                stream.closed = True

    def close(self) -> None:
        self.tf.close()

    def end_entries(self) -> int:
        """Flush the entries written so far and stop, without the end-of-archive
        marker (a part of a tar that others complete: :func:`trailer`); their size."""
        stream = self.tf.fileobj
        self.tf.closed = True
        stream.close()
        return self.tf.offset

    def _info(self, name: str, st: os.stat_result) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.mtime = int(st.st_mtime)
        if self.clamp is not None and ti.mtime > self.clamp:
            ti.mtime = self.clamp
        ti.uname = self.users.get(st.st_uid, "")
        ti.gname = self.groups.get(st.st_gid, "")
        return ti

    def add(self, name: str, node: Node) -> bool:
        """One entry (a directory's header only); False if its type is not archived."""
        st = node.st
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            return False
        ti = self._info(name, st)
        xattrs = node.xattrs(self.keep_xattr)
        if xattrs:
            ti.pax_headers = {"SCHILY.xattr." + k: decode_name(v) for k, v in xattrs.items()}
        if stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
            self.tf.addfile(ti)
            return True
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1:
            first = self.inodes.get(key)
            if first is not None:
                ti.type = tarfile.LNKTYPE
                ti.linkname = first
                self.tf.addfile(ti)
                return True
        if stat.S_ISREG(mode):
            with node.open_file() as f:
                ti.size = os.fstat(f.fileno()).st_size
                self.tf.addfile(ti, _Exact(f, ti.size))
        elif stat.S_ISLNK(mode):
            ti.type = tarfile.SYMTYPE
            ti.linkname = node.readlink()
            self.tf.addfile(ti)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.tf.addfile(ti)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
            self.tf.addfile(ti)
        else:
            return False
        if st.st_nlink > 1:
            self.inodes[key] = name
        return True

    def add_marker(self, name: str, mtime: float = 0) -> None:
        """An empty regular file (an OCI whiteout ``.wh.NAME`` or ``.wh..wh..opq``)."""
        ti = tarfile.TarInfo(name)
        ti.mode = 0o644
        ti.mtime = int(mtime) if self.clamp is None else min(int(mtime), self.clamp)
        self.tf.addfile(ti)

    def add_tree(self, dir_fd: int, prefix: str = "",
                 skip: Callable[[str, Node], bool] | None = None) -> None:
        """Everything below the directory ``dir_fd`` (not itself), names ``prefix + path``;
        ``skip(path, node)`` leaves an entry (and what is below it) out."""
        skipped: set[str] = set()

        def descend(path: str, node: Node) -> bool:
            return path not in skipped

        for path, node in walk(dir_fd, prefix, descend):
            if skip is not None and skip(path, node):
                skipped.add(path)
                continue
            self.add(path, node)


class _Exact:
    """Exactly ``size`` bytes of ``f`` (zero-padded if the file shrank meanwhile)."""

    def __init__(self, f, size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        if n is None or n < 0 or n > self.left:
            n = self.left
        b = self.f.read(n)
        if not b:
            b = b"\0" * n
        self.left -= len(b)
        return b
