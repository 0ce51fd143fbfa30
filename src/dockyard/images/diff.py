"""Changes of a snapshot and layer tars made from them (``docker diff``/``commit``).

* ``changes(upper, lowers)``: from an overlay upper directory; 0:0 character
  devices are deletions, ``trusted.overlay.opaque=y`` directories hide what the
  lowers hold below them.
* ``naive_changes(new, old)``: by comparing two full trees (copy snapshotter).
* ``write_layer(upper, out)``: a layer tar from an upper directory, whiteouts
  written as ``.wh.NAME`` and opaque directories as ``.wh..wh..opq``; returns the
  diffID (sha256 of the tar).
* ``write_changes(root, changes, out)``: the same from a full tree and a change list.

The upper directory (and a copy snapshot's tree) belong to a container that may be
running and renaming things while we read: only the directories given here are opened
by path; everything below them goes through :mod:`dockyard.fsroot` (each entry pinned by
an ``O_PATH|O_NOFOLLOW`` fd relative to its parent's fd, contents read from that inode,
nothing followed), and an entry that vanishes meanwhile is skipped.

Kinds are Docker's: 0 modified, 1 added, 2 deleted. Paths start with ``/`` and are
``str`` with undecodable bytes as surrogate escapes (``os.fsencode`` gives the exact
name); :func:`display` turns them into what the API shows.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import stat
from typing import BinaryIO, Callable, Iterator

from dockyard.fsroot.nodes import Node, listdir, lookup, open_node, open_root, walk
from dockyard.fsroot.tar import TarWriter

MODIFY, ADD, DELETE = 0, 1, 2
OPAQUE_XATTR = "trusted.overlay.opaque"


def _go_replace(e: UnicodeDecodeError) -> tuple[str, int]:
    """Go's encoding/json: one U+FFFD per byte that is not part of valid UTF-8."""
    return "\ufffd" * (e.end - e.start), e.end


codecs.register_error("dockyard.goreplace", _go_replace)


def display(changes: list[dict]) -> list[dict]:
    """The change list as ``docker diff`` shows it: names that are not UTF-8 with U+FFFD
    for the invalid bytes (what dockerd's JSON does)."""
    return [{**c, "Path": os.fsencode(c["Path"]).decode("utf-8", "dockyard.goreplace")}
            for c in changes]


def _is_opaque(node: Node) -> bool:
    return node.is_dir() and node.getxattr(OPAQUE_XATTR) == b"y"


class _Lowers:
    """A snapshot's lower directories, nearest first, each held by a directory fd."""

    def __init__(self, lowers: list) -> None:
        self.fds: list[int] = []
        try:
            for p in lowers:
                self.fds.append(open_root(p))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def __enter__(self) -> "_Lowers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def exists(self, parts: list[str]) -> bool:
        """Whether ``parts`` is visible in the merged lowers."""
        for fd in self.fds:
            seen = _visible_in(fd, parts)
            if seen is not None:
                return seen
        return False

    def children(self, parts: list[str]) -> Iterator[str]:
        """Names the lowers hold in directory ``parts`` (symlinks are not entered)."""
        for fd in self.fds:
            node = lookup(fd, parts)
            if node is None:
                continue
            with node:
                if not node.is_dir():
                    continue
                dfd = node.open_dir()
            try:
                for name in listdir(dfd):
                    child = open_node(dfd, name)
                    if child is not None:
                        with child:
                            if not child.is_whiteout():
                                yield name
            finally:
                os.close(dfd)


def _visible_in(lower_fd: int, parts: list[str]) -> bool | None:
    """True: ``parts`` exists in this lower; False: a whiteout here hides it (and what
    farther lowers have); None: not here, ask the next lower."""
    cur = lower_fd
    try:
        for i, comp in enumerate(parts):
            node = open_node(cur, comp)
            if node is None:
                return None
            with node:
                if node.is_whiteout():
                    return False
                if i == len(parts) - 1:
                    return True
                if not node.is_dir():
                    return None
                nxt = node.open_dir()
                if _is_opaque(node):   # below it, only what this lower holds
                    try:
                        rest = lookup(nxt, parts[i + 1:])
                    finally:
                        os.close(nxt)
                    if rest is None:
                        return False
                    with rest:
                        return not rest.is_whiteout()
            if cur != lower_fd:
                os.close(cur)
            cur = nxt
        return True
    finally:
        if cur != lower_fd:
            os.close(cur)


def changes(upper: str | os.PathLike, lowers: list) -> list[dict]:
    out: list[dict] = []
    ufd = open_root(upper)
    try:
        with _Lowers(lowers) as lw:
            for path, node in walk(ufd):
                r = "/" + path
                parts = path.split("/")
                if node.is_whiteout():
                    if lw.exists(parts):
                        out.append({"Path": r, "Kind": DELETE})
                    continue
                existed = lw.exists(parts)
                out.append({"Path": r, "Kind": MODIFY if existed else ADD})
                if existed and _is_opaque(node):
                    dfd = node.open_dir()
                    try:
                        mine = set(listdir(dfd))
                    finally:
                        os.close(dfd)
                    for child in lw.children(parts):
                        if child not in mine:
                            out.append({"Path": f"{r}/{child}", "Kind": DELETE})
                            mine.add(child)
    finally:
        os.close(ufd)
    out.sort(key=lambda c: c["Path"])
    return out


def _same_time(a: os.stat_result, b: os.stat_result) -> bool:
    """Docker's sameFsTime: equal seconds, and equal nanoseconds unless one is 0."""
    sa, na = divmod(a.st_mtime_ns, 1_000_000_000)
    sb, nb = divmod(b.st_mtime_ns, 1_000_000_000)
    return sa == sb and (na == nb or na == 0 or nb == 0)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_mode == b.st_mode and a.st_uid == b.st_uid and a.st_gid == b.st_gid
            and a.st_rdev == b.st_rdev and _same_time(a, b)
            and (stat.S_ISDIR(a.st_mode) or a.st_size == b.st_size))


def _readlink(node: Node) -> str | None:
    try:
        return node.readlink()
    except OSError:
        return None


def _naive(new: str | os.PathLike, old: str | os.PathLike | None,
           emit: Callable[[str, int, os.stat_result | None], None]) -> None:
    """Compare two full trees, depth first (one pair of fds per level); ``emit(path,
    kind, stat of the new entry or None)`` for every change."""
    nroot = open_root(new)
    oroot = open_root(old) if old else None
    stack: list[tuple[int, int | None, str, Iterator[str], set[str], set[str]]] = []

    def push(nd: int, od: int | None, rel: str) -> None:
        names = set(listdir(nd))
        onames = set(listdir(od)) if od is not None else set()
        stack.append((nd, od, rel, iter(sorted(names | onames)), names, onames))

    try:
        push(nroot, oroot, "")
        while stack:
            nd, od, rel, it, names, onames = stack[-1]
            name = next(it, None)
            if name is None:
                stack.pop()
                for fd in (nd, od):
                    if fd is not None and fd not in (nroot, oroot):
                        os.close(fd)
                continue
            r = f"{rel}/{name}"
            node = open_node(nd, name) if name in names else None
            if node is None:   # only in the old tree, or removed meanwhile
                if name in onames:
                    emit(r, DELETE, None)
                continue
            with node:
                onode = open_node(od, name) if name in onames else None
                try:
                    st = node.st
                    if onode is None:
                        emit(r, ADD, st)
                    else:
                        ost = onode.st
                        if stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(ost.st_mode):
                            if not _same(st, ost):
                                emit(r, MODIFY, st)
                        elif not _same(st, ost) or (node.is_link() and
                                                    _readlink(node) != _readlink(onode)):
                            emit(r, MODIFY, st)
                    if not node.is_dir():
                        continue
                    sub = node.open_dir()
                    try:
                        osub = onode.open_dir() if onode is not None and onode.is_dir() \
                            else None
                    except BaseException:
                        os.close(sub)
                        raise
                finally:
                    if onode is not None:
                        onode.close()
            try:
                push(sub, osub, r)
            except BaseException:
                os.close(sub)
                if osub is not None:
                    os.close(osub)
                raise
    finally:
        for nd, od, *_ in stack:
            for fd in (nd, od):
                if fd is not None and fd not in (nroot, oroot):
                    os.close(fd)
        os.close(nroot)
        if oroot is not None:
            os.close(oroot)


def naive_changes(new: str | os.PathLike, old: str | os.PathLike | None) -> list[dict]:
    out: list[dict] = []
    _naive(new, old, lambda path, kind, st: out.append({"Path": path, "Kind": kind}))
    out.sort(key=lambda c: c["Path"])
    return out


def naive_size(new: str | os.PathLike, old: str | os.PathLike | None) -> int:
    """Bytes of what changed in ``new`` against ``old`` (directories not counted)."""
    total = 0

    def emit(path: str, kind: int, st: os.stat_result | None) -> None:
        nonlocal total
        if st is not None and kind != DELETE and not stat.S_ISDIR(st.st_mode):
            total += st.st_size

    _naive(new, old, emit)
    return total


class _HashingWriter:
    def __init__(self, out: BinaryIO):
        self.out = out
        self.hash = hashlib.sha256()
        self.count = 0

    def write(self, b: bytes) -> int:
        self.hash.update(b)
        self.count += len(b)
        self.out.write(b)
        return len(b)


def _keep_xattr(name: str) -> bool:
    return not name.startswith("trusted.overlay.")


def _whiteout_name(path: str) -> str:
    d, _, base = path.rpartition("/")
    return f"{d + '/' if d else ''}.wh.{base}"


def write_layer(upper: str | os.PathLike, out: BinaryIO, whiteouts: bool = True,
                clamp_mtime: int | None = None) -> tuple[str, int]:
    """Write a layer tar of ``upper`` to ``out``; return (diffID, tar size).
    ``clamp_mtime``: no entry's time later than it (SOURCE_DATE_EPOCH)."""
    hw = _HashingWriter(out)
    ufd = open_root(upper)
    try:
        with TarWriter(hw, keep_xattr=_keep_xattr, clamp_mtime=clamp_mtime) as tw:
            for path, node in walk(ufd):
                if whiteouts and node.is_whiteout():
                    tw.add_marker(_whiteout_name(path), node.st.st_mtime)
                    continue
                tw.add(path, node)
                if whiteouts and _is_opaque(node):
                    tw.add_marker(f"{path}/.wh..wh..opq", node.st.st_mtime)
    finally:
        os.close(ufd)
    return "sha256:" + hw.hash.hexdigest(), hw.count


def _chain_ok(ufd: int, chain: list[str]) -> bool:
    """Whether the tree is the directory chain ``chain`` (each one the only entry of the
    one before it, no whiteouts) with everything else below its last directory."""
    fd = os.dup(ufd)
    try:
        for name in chain:
            names = listdir(fd)
            if names != [name]:
                return False
            node = open_node(fd, name)
            if node is None:
                return False
            with node:
                if not node.is_dir() or _is_opaque(node):
                    return False
                sub = node.open_dir()
            os.close(fd)
            fd = sub
        return True
    finally:
        os.close(fd)


def write_layer_body(upper: str | os.PathLike, chain: list[str], out: BinaryIO,
                     stop: Callable[[], bool] | None = None) -> int | None:
    """The tar entries of everything below the last directory of ``chain`` (names like
    ``a``, ``b`` for ``a/b``) in ``upper``, as :func:`write_layer` writes them, without
    the directories themselves and without the end of the tar; their size. None (and
    nothing written) if ``upper`` is not that chain with everything below it. For a
    builder's layer written ahead of its parent: the directories of the chain take the
    parent's metadata later, :func:`write_layer_with_body` writes them then. ``stop()``
    true: given up (None) at the next entry."""
    ufd = open_root(upper)
    try:
        if not chain or not _chain_ok(ufd, chain):
            return None
        node = lookup(ufd, list(chain))
        if node is None:
            return None
        with node:
            sub = node.open_dir()
        try:
            tw = TarWriter(out, keep_xattr=_keep_xattr)
            for path, n in walk(sub, "/".join(chain) + "/"):
                if stop is not None and stop():
                    return None
                if n.is_whiteout():
                    tw.add_marker(_whiteout_name(path), n.st.st_mtime)
                    continue
                tw.add(path, n)
                if _is_opaque(n):
                    tw.add_marker(f"{path}/.wh..wh..opq", n.st.st_mtime)
            return tw.end_entries()
        finally:
            os.close(sub)
    finally:
        os.close(ufd)


def write_layer_with_body(upper: str | os.PathLike, chain: list[str], body: BinaryIO,
                          body_size: int, out: BinaryIO) -> tuple[str, int] | None:
    """:func:`write_layer` of ``upper`` from the directories of ``chain`` as they are now
    and the ``body`` :func:`write_layer_body` wrote earlier (the tree below them not
    changed since): the same bytes. None (nothing written) if ``upper`` is no longer
    that chain."""
    from dockyard.fsroot.tar import trailer
    ufd = open_root(upper)
    try:
        if not _chain_ok(ufd, chain):
            return None
        hw = _HashingWriter(out)
        tw = TarWriter(hw, keep_xattr=_keep_xattr)
        for k in range(1, len(chain) + 1):
            node = lookup(ufd, list(chain[:k]))
            if node is None:
                raise OSError(f"{'/'.join(chain[:k])}: gone from the layer")
            with node:
                tw.add("/".join(chain[:k]), node)
        size = tw.end_entries()
        left = body_size
        while left > 0:
            b = body.read(min(left, 1 << 20))
            if not b:
                raise OSError("the layer's body is cut short")
            hw.write(b)
            left -= len(b)
        hw.write(trailer(size + body_size))
        return "sha256:" + hw.hash.hexdigest(), hw.count
    finally:
        os.close(ufd)


def write_changes(root: str | os.PathLike, change_list: list[dict], out: BinaryIO,
                  clamp_mtime: int | None = None) -> tuple[str, int]:
    """A layer tar holding the paths of ``change_list`` taken from the full tree ``root``
    (deletions as ``.wh.`` entries); for snapshotters without an upper directory. A path
    that is gone, or reached through anything but real directories now, is left out."""
    hw = _HashingWriter(out)
    rfd = open_root(root)
    try:
        with TarWriter(hw, keep_xattr=_keep_xattr, clamp_mtime=clamp_mtime) as tw:
            for c in sorted(change_list, key=lambda c: c["Path"]):
                rel = c["Path"].lstrip("/")
                if c["Kind"] == DELETE:
                    tw.add_marker(_whiteout_name(rel))
                    continue
                node = lookup(rfd, rel.split("/"))
                if node is None:
                    continue
                with node:
                    tw.add(rel, node)
    finally:
        os.close(rfd)
    return "sha256:" + hw.hash.hexdigest(), hw.count
