"""`dockyard cp`: copy files between a container and the local filesystem, as `docker cp`.

The container side is the daemon's ``/containers/{id}/archive`` (HEAD to stat, GET for a
tar, PUT to extract one); this module does the client's half: which side is which, where
in the destination the copy lands (Docker's rules: into an existing directory, or under the
destination's name), building the tar of local files and extracting the daemon's tar
safely (nothing outside the destination, links included).
"""

from __future__ import annotations

import os
import sys
import tarfile

from dockyard.cli.cmd_run import require
from dockyard.cli.docker import CommandError
from dockyard.cli.parser import CommandParser

GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26


def split_cp_arg(arg: str) -> tuple[str, str]:
    """(container, path); container "" for a local path (absolute, or ``./x:y``)."""
    if arg.startswith("/"):
        return "", arg
    ctr, sep, path = arg.partition(":")
    if not sep or ctr.startswith("."):
        return "", arg
    return ctr, path


def _split_dir_entry(path: str) -> tuple[str, str]:
    """Docker's SplitPathDirEntry: ("dir", "base") of a cleaned path; "/." keeps "."."""
    clean = os.path.normpath(path)
    if path.endswith("/.") or path == ".":
        return clean, "."
    return os.path.dirname(clean) or ".", os.path.basename(clean)


def _asserts_directory(path: str) -> bool:
    return path.endswith("/") or path.endswith("/.") or path == "."


def cmd_cp(g, argv: list[str], command: str = "cp") -> int:
    p = CommandParser(command, "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tdockyard cp "
                      "[OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
                      "Copy files/folders between a container and the local filesystem",
                      nargs=(0, None))
    p.add_argument("-a", "--archive", action="store_true",
                   help="Archive mode (copy all uid/gid information)")
    p.add_argument("-L", "--follow-link", action="store_true",
                   help="Always follow symbol link in SRC_PATH")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="Suppress progress output during copy. Progress output is "
                        "automatically suppressed if no terminal is attached")
    o = p.parse(argv)
    require(p, o.args, 2, 2)
    src, dst = o.args
    if not src:
        raise CommandError("source can not be empty")
    if not dst:
        raise CommandError("destination can not be empty")
    sc, sp = split_cp_arg(src)
    dc, dp = split_cp_arg(dst)
    if sc and dc:
        raise CommandError("copying between containers is not supported")
    if not sc and not dc:
        raise CommandError("must specify at least one container source")
    client = g.client()
    if sc:
        n = _from_container(client, sc, sp, dp, o.follow_link)
        where = dp
    else:
        n = _to_container(client, sp, dc, dp, o.archive)
        where = f"{dc}:{dp}"
    if not o.quiet and n is not None and sys.stderr.isatty():
        from dockyard.cli.units import human_size

        print(f"Successfully copied {human_size(n)} to {where}", file=sys.stderr)
    return 0


# -- container -> local ----------------------------------------------------------------------

class _ChunkReader:
    def __init__(self, chunks) -> None:
        self._it = iter(chunks)
        self._buf = b""
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                piece = next(self._it)
            except StopIteration:
                break
            self._buf += piece
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        self.count += len(out)
        return out


def _from_container(client, ctr: str, src: str, dst: str, follow: bool) -> int | None:
    rebase = ""
    if follow:
        st = client.stat_path(ctr, src)
        if st.get("mode", 0) & GO_MODE_SYMLINK:
            target = st.get("linkTarget") or ""
            if not target.startswith("/"):
                target = os.path.join(_split_dir_entry(src)[0], target)
            rebase = _split_dir_entry(src)[1]
            src = target
    resp, st = client.get_archive(ctr, src)
    if dst == "-":
        out = sys.stdout.buffer
        n = 0
        try:
            for chunk in resp.iter_chunks():
                out.write(chunk)
                n += len(chunk)
            out.flush()
        finally:
            resp.close()
        return None
    src_is_dir = bool(st.get("mode", 0) & GO_MODE_DIR)
    src_base = _split_dir_entry(src)[1]
    if rebase:
        src_base_from, src_base = src_base, rebase
    else:
        src_base_from = src_base
    dst_dir, new_base = _local_destination(dst, src_is_dir, src_base)
    reader = _ChunkReader(resp.iter_chunks())
    try:
        _extract_local(reader, dst_dir, src_base_from, new_base)
    finally:
        resp.close()
    return reader.count


def _local_destination(dst: str, src_is_dir: bool, src_base: str) -> tuple[str, str]:
    """Docker's CopyInfoDestinationPath + PrepareArchiveCopy for a local destination:
    (directory to extract into, the name the copied entry takes there)."""
    path = dst
    for _ in range(10):   # follow a symlink destination, as docker does
        if os.path.islink(path):
            target = os.readlink(path)
            path = target if target.startswith("/") else \
                os.path.join(os.path.dirname(path), target)
            continue
        break
    exists = os.path.lexists(path)
    if exists and os.path.isdir(path):
        return path, src_base
    if exists and src_is_dir:
        raise CommandError("cannot copy a directory to a file")  # ErrCannotCopyDir
    dst_dir, dst_base = _split_dir_entry(path)
    if not exists:
        if not os.path.isdir(dst_dir):
            raise CommandError(f"lstat {dst_dir}: no such file or directory")
        if not src_is_dir and _asserts_directory(dst):
            raise CommandError("no such directory")
    return dst_dir, dst_base


class _Refused(Exception):
    """An entry of the daemon's archive that would land outside the destination."""


def _inside(dst_dir: str, rel: str) -> bool:
    root = os.path.realpath(dst_dir)
    target = os.path.normpath(os.path.join(root, rel))
    return target == root or target.startswith(root.rstrip("/") + "/")


def _checked_member(member: tarfile.TarInfo, rebase, dst_dir: str) -> tarfile.TarInfo:
    """What ``tar_filter`` checks, for a Python without extraction filters: the entry (its
    name made relative) and a hard link's target stay inside ``dst_dir``; modes are kept.
    Symlinks are not checked here: they are made after every other entry."""
    import copy

    m = copy.copy(member)
    m.name = rebase(m.name).lstrip("/")
    if not m.name or not _inside(dst_dir, m.name):
        raise _Refused(f"{member.name!r} would be extracted outside the destination")
    if m.islnk():
        m.linkname = rebase(m.linkname).lstrip("/")
        if not _inside(dst_dir, m.linkname):
            raise _Refused(f"{member.name!r} links outside the destination")
    return m   # symlinks are kept as they are, and made last (see _extract_local)


def _extract_local(stream, dst_dir: str, old_base: str, new_base: str) -> None:
    def rebase(name: str) -> str:
        n = name.rstrip("/")
        if old_base in (".", ""):
            return os.path.normpath(os.path.join(new_base, n)) if new_base != "." else n
        if n == old_base:
            return new_base
        if n.startswith(old_base + "/"):
            return new_base + n[len(old_base):]
        return n

    links: list[tarfile.TarInfo] = []

    def keep_modes(member: tarfile.TarInfo, path: str):
        member = member.replace(name=rebase(member.name), deep=False)
        if member.issym():
            links.append(member)   # made last: no entry of the archive can go through one
            return None
        if member.islnk():
            member = member.replace(linkname=rebase(member.linkname), deep=False)
        mode = member.mode
        try:
            safe = tarfile.tar_filter(member, path)   # refuses names and links leaving dst
        except tarfile.FilterError as e:
            raise _Refused(str(e)) from None
        return safe.replace(mode=mode, deep=False) if safe is not None else None

    try:
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            if hasattr(tarfile, "tar_filter"):
                tf.extractall(dst_dir, filter=keep_modes, numeric_owner=True)
            else:   # Debian 12's Python 3.11.2 predates extraction filters
                for member in tf:
                    m = _checked_member(member, rebase, dst_dir)
                    if m.issym():
                        links.append(m)
                    else:
                        tf.extract(m, dst_dir, numeric_owner=True)
    except _Refused as e:
        raise CommandError(f"refusing the daemon's archive: {e}") from None
    except (tarfile.TarError, EOFError) as e:
        raise CommandError(f"invalid archive from the daemon: {e}") from None
    for m in links:
        rel = os.path.normpath(m.name.lstrip("/"))
        if rel == ".." or rel.startswith("../") or rel == ".":
            raise CommandError(f"refusing the daemon's archive: {m.name!r} is outside "
                               "the destination")
        target = os.path.join(dst_dir, rel)
        if os.path.lexists(target) and not os.path.isdir(target):
            os.unlink(target)
        os.symlink(m.linkname, target)
        if os.geteuid() == 0:
            os.lchown(target, m.uid, m.gid)
        os.utime(target, (m.mtime, m.mtime), follow_symlinks=False)


# -- local -> container ----------------------------------------------------------------------

def _to_container(client, src: str, ctr: str, dst: str, archive: bool) -> int | None:
    from dockyard import errors

    dst_path = dst
    try:
        st = client.stat_path(ctr, dst_path)
    except errors.NotFound:
        st = None
    if st is not None and st.get("mode", 0) & GO_MODE_SYMLINK:
        target = st.get("linkTarget") or ""
        if not target.startswith("/"):
            target = os.path.join(_split_dir_entry(dst)[0], target)
        dst_path = target
        try:
            st = client.stat_path(ctr, dst_path)
        except errors.NotFound:
            st = None
    if st is not None:
        if st.get("mode", 0) & GO_MODE_DEVICE:
            raise CommandError(f'destination "{ctr}:{dst}" must be a directory or a '
                               "regular file: got a device")
    dst_exists = st is not None
    dst_is_dir = dst_exists and bool(st.get("mode", 0) & GO_MODE_DIR)
    if src == "-":
        if not dst_is_dir:
            raise CommandError(f'destination "{ctr}:{dst}" must be a directory')
        client.put_archive(ctr, dst_path, sys.stdin.buffer, no_overwrite_dir_non_dir=True,
                           copy_uid_gid=archive)
        return None
    local = src
    if not os.path.lexists(local):
        raise CommandError(f"lstat {os.path.abspath(local)}: no such file or directory")
    src_is_dir = os.path.isdir(local) and not os.path.islink(local)
    contents = local.endswith("/.") or local == "."
    src_base = _split_dir_entry(local)[1]
    if dst_exists and dst_is_dir:
        put_dir, top = dst_path, ("." if contents else src_base)
    elif dst_exists and src_is_dir:
        raise CommandError("cannot copy a directory to a file")
    else:
        put_dir, top = _split_dir_entry(dst_path)
        if not dst_exists and not src_is_dir and _asserts_directory(dst_path):
            raise CommandError("no such directory")
    import tempfile

    with tempfile.TemporaryFile() as spool:
        with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tf:
            tf.add(os.path.normpath(local), arcname=top, recursive=True)
        size = spool.tell()
        spool.seek(0)
        client.put_archive(ctr, put_dir, spool, no_overwrite_dir_non_dir=True,
                           copy_uid_gid=archive)
    return size
