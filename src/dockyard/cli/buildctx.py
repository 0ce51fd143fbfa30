"""The client's side of a build context, as the docker CLI makes it.

* a directory: walked in lexical order, ``.dockerignore`` (or ``<Dockerfile>.dockerignore``)
  applied here so ignored files never travel (the Dockerfile and the ignore file always
  do, as the CLI's TrimBuildFilesFromExcludes keeps them), streamed as a tar (owners 0:0,
  modes and times kept, hard links as links, sockets skipped) without holding it in memory;
* a Dockerfile outside the directory (or ``-f -``) goes in as ``.dockerfile.<random>``;
* ``-``, or a downloaded URL: a tar (plain or compressed) passes as is, anything else is a
  Dockerfile wrapped into a one-file tar;
* a git URL is cloned (``git clone --depth 1``; ``#ref:subdir``) into a temporary
  directory, which is then sent as a directory.

No HTTP here: :func:`dir_tar` yields the tar's bytes for the client to send.
"""

from __future__ import annotations

import os
import posixpath
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, Iterator

BLOCK = 1 << 20
# tar's entry types (tarfile is imported only for what a plain ustar header cannot hold)
REGTYPE, LNKTYPE, SYMTYPE, DIRTYPE, FIFOTYPE = b"0", b"1", b"2", b"5", b"6"
_MAGICS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


class ContextError(Exception):
    pass


def _matcher(ctx_dir: str, dockerfile_rel: str | None):
    text = None
    names = ([dockerfile_rel + ".dockerignore"] if dockerfile_rel else []) + [".dockerignore"]
    for name in names:
        try:
            with open(os.path.join(ctx_dir, name), "rb") as f:
                text = f.read()
            break
        except (FileNotFoundError, NotADirectoryError):
            continue
    if text is None:
        return None
    from dockyard.builder import ignore

    patterns = ignore.read_patterns(text)
    if not patterns:
        return None
    # the Dockerfile and .dockerignore always go (the daemon needs them)
    keep = [".dockerignore"] + ([dockerfile_rel] if dockerfile_rel else [])
    m = ignore.Matcher(patterns)
    patterns += ["!" + k for k in keep if m.excluded(k)]
    return ignore.Matcher(patterns)


def dir_tar(ctx_dir: str, dockerfile_rel: str | None = "Dockerfile",
            extra: tuple[str, bytes] | None = None) -> Iterator[bytes]:
    """The context directory as tar bytes, in blocks. ``extra``: (name, content) of one
    more file at the root (a Dockerfile from elsewhere)."""
    matcher = _matcher(ctx_dir, dockerfile_rel)
    buf = bytearray()
    inodes: dict[tuple[int, int], str] = {}

    def header(name: str, st: os.stat_result, kind: bytes, size: int = 0,
               link: str = "") -> bytes:
        return tar_header(name, stat.S_IMODE(st.st_mode), size, int(st.st_mtime), kind, link)

    def walk(rel: str) -> Iterator[bytes]:
        path = os.path.join(ctx_dir, rel) if rel else ctx_dir
        try:
            with os.scandir(path) as it:
                ents = sorted(it, key=lambda e: e.name)
        except OSError as e:
            raise ContextError(f"error checking context: {e.strerror or e}: "
                               f"{path}") from None
        for e in ents:
            name = f"{rel}/{e.name}" if rel else e.name
            try:
                st = e.stat(follow_symlinks=False)
            except OSError as err:
                raise ContextError(f"error checking context: {err.strerror}: "
                                   f"{e.path}") from None
            mode = st.st_mode
            excluded = matcher is not None and matcher.excluded(name)
            if stat.S_ISDIR(mode):
                if excluded:
                    if matcher.has_exclusions:
                        yield from walk(name)   # a "!" pattern may bring something back
                    continue
                buf.extend(header(name + "/", st, DIRTYPE))
                yield from walk(name)
                continue
            if excluded:
                continue
            if stat.S_ISLNK(mode):
                buf.extend(header(name, st, SYMTYPE, link=os.readlink(e.path)))
            elif stat.S_ISREG(mode):
                ino = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and ino in inodes:
                    buf.extend(header(name, st, LNKTYPE, link=inodes[ino]))
                    continue
                if st.st_nlink > 1:
                    inodes[ino] = name
                try:
                    fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                except OSError as err:
                    raise ContextError(f"error checking context: can't open {e.path}: "
                                       f"{err.strerror}") from None
                try:
                    size = st.st_size
                    buf.extend(header(name, st, REGTYPE, size))
                    left = size
                    while left > 0:
                        chunk = os.read(fd, min(BLOCK, left))
                        if not chunk:   # shrank while we read: pad (as Go's tar would fail)
                            raise ContextError(f"{e.path}: file changed as we read it")
                        buf.extend(chunk)
                        left -= len(chunk)
                        if len(buf) >= BLOCK:
                            yield bytes(buf)
                            buf.clear()
                    pad = (-size) % 512
                    buf.extend(b"\0" * pad)
                finally:
                    os.close(fd)
            elif stat.S_ISFIFO(mode):
                buf.extend(header(name, st, FIFOTYPE))
            # sockets and device nodes are left out
            if len(buf) >= BLOCK:
                yield bytes(buf)
                buf.clear()

    yield from walk("")
    if extra is not None:
        buf.extend(tar_header(extra[0], 0o600, len(extra[1]), 0, REGTYPE))
        buf.extend(extra[1] + b"\0" * ((-len(extra[1])) % 512))
    buf.extend(b"\0" * 1024)
    yield bytes(buf)


def ustar_header(name: str, mode: int, size: int, mtime: int, kind: bytes,
                 link: str = "") -> bytes | None:
    """A plain ustar header (owner 0:0, no names) when everything fits one, else None
    (tarfile then writes PAX records). ~10x faster than TarInfo.tobuf."""
    try:
        n = name.encode("ascii")
        ln = link.encode("ascii")
    except UnicodeEncodeError:
        return None
    if len(n) > 100 or len(ln) > 100 or size >= 0o77777777777 or not 0 <= mtime < 0o77777777777:
        return None
    h = bytearray(512)
    h[0:len(n)] = n
    h[100:108] = b"%07o\0" % mode
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"%011o\0" % mtime
    h[148:156] = b"        "
    h[156:157] = kind
    h[157:157 + len(ln)] = ln
    h[257:265] = b"ustar\x0000"
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def tar_header(name: str, mode: int, size: int, mtime: int, kind: bytes,
               link: str = "") -> bytes:
    """An entry's header (owner 0:0): plain ustar, or with PAX records when needed."""
    fast = ustar_header(name, mode, size, mtime, kind, link)
    if fast is not None:
        return fast
    import tarfile
    ti = tarfile.TarInfo(name)
    ti.mode, ti.mtime, ti.type, ti.size, ti.linkname = mode, mtime, kind, size, link
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def manifest(ctx_dir: str, dockerfile_rel: str | None = "Dockerfile") -> list[list]:
    """The context's entries for a context session (builder/sessions.py): ``[path, kind,
    mode, size, mtime_ns, link]``, after .dockerignore, stat data only (nothing is read)."""
    matcher = _matcher(ctx_dir, dockerfile_rel)
    out: list[list] = []

    def walk(rel: str) -> None:
        path = os.path.join(ctx_dir, rel) if rel else ctx_dir
        try:
            with os.scandir(path) as it:
                ents = sorted(it, key=lambda e: e.name)
        except OSError as e:
            raise ContextError(f"error checking context: {e.strerror or e}: {path}") from None
        for e in ents:
            name = f"{rel}/{e.name}" if rel else e.name
            try:
                st = e.stat(follow_symlinks=False)
            except OSError as err:
                raise ContextError(f"error checking context: {err.strerror}: "
                                   f"{e.path}") from None
            mode = st.st_mode
            excluded = matcher is not None and matcher.excluded(name)
            if stat.S_ISDIR(mode):
                if not excluded:
                    out.append([name, "dir", stat.S_IMODE(mode), 0, st.st_mtime_ns, ""])
                if not excluded or matcher.has_exclusions:
                    walk(name)
            elif excluded:
                continue
            elif stat.S_ISREG(mode):
                out.append([name, "file", stat.S_IMODE(mode), st.st_size, st.st_mtime_ns, ""])
            elif stat.S_ISLNK(mode):
                out.append([name, "symlink", 0o777, 0, st.st_mtime_ns, os.readlink(e.path)])
            elif stat.S_ISFIFO(mode):
                out.append([name, "fifo", stat.S_IMODE(mode), 0, st.st_mtime_ns, ""])

    walk("")
    return out


def files_tar(ctx_dir: str, names: list[str],
              extra: tuple[str, bytes] | None = None) -> Iterator[bytes]:
    """A tar of just these context files (a context session's missing ones)."""
    buf = bytearray()
    for name in names:
        path = os.path.join(ctx_dir, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as err:
            raise ContextError(f"error checking context: can't open {path}: "
                               f"{err.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ContextError(f"{path}: changed while the build started")
            buf.extend(tar_header(name, stat.S_IMODE(st.st_mode), st.st_size,
                                  int(st.st_mtime), REGTYPE))
            left = st.st_size
            while left > 0:
                chunk = os.read(fd, min(BLOCK, left))
                if not chunk:
                    raise ContextError(f"{path}: file changed as we read it")
                buf.extend(chunk)
                left -= len(chunk)
                if len(buf) >= BLOCK:
                    yield bytes(buf)
                    buf.clear()
            buf.extend(b"\0" * ((-st.st_size) % 512))
        finally:
            os.close(fd)
    if extra is not None:
        buf.extend(tar_header(extra[0], 0o600, len(extra[1]), 0, REGTYPE))
        buf.extend(extra[1] + b"\0" * ((-len(extra[1])) % 512))
    buf.extend(b"\0" * 1024)
    yield bytes(buf)


def is_archive(head: bytes) -> bool:
    """Is this the start of a tar (plain or compressed) rather than a Dockerfile?"""
    if any(head.startswith(m) for m in _MAGICS):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def single_file_tar(name: str, content: bytes) -> bytes:
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo(name)
        ti.mode = 0o600
        ti.size = len(content)
        tf.addfile(ti, io.BytesIO(content))
    return out.getvalue()


def stream_context(src: BinaryIO, dockerfile: str = "Dockerfile") -> Iterator[bytes]:
    """``-`` or a download: a tar passes through, a Dockerfile is wrapped."""
    head = b""
    while len(head) < 512:
        b = src.read(512 - len(head))
        if not b:
            break
        head += b
    if is_archive(head):
        yield head
        while True:
            b = src.read(BLOCK)
            if not b:
                return
            yield b
    rest = src.read(16 << 20)
    if src.read(1):
        raise ContextError("the Dockerfile read from stdin is larger than 16 MiB")
    yield single_file_tar(posixpath.basename(dockerfile) or "Dockerfile", head + rest)


def is_git_url(s: str) -> bool:
    if s.startswith(("git://", "git@", "github.com/")):
        return True
    if s.startswith(("http://", "https://")):
        return s.split("#", 1)[0].endswith(".git")
    return False


def is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def clone_git(url: str, dest: str) -> str:
    """Clone ``url`` (``repo#ref:subdir``) into ``dest``; the context directory in it."""
    import subprocess

    repo, _, frag = url.partition("#")
    ref, _, sub = frag.partition(":")
    if repo.startswith("github.com/"):
        repo = "https://" + repo
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    cmd = ["git", "clone", "--recurse-submodules", "-q"]
    if ref:
        cmd += ["--branch", ref]
    r = subprocess.run(cmd[:2] + ["--depth", "1"] + cmd[2:] + ["--", repo, dest],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0 and "shallow" in r.stderr:
        # a server without shallow support (git's dumb http): the whole history
        import shutil
        shutil.rmtree(dest, ignore_errors=True)
        r = subprocess.run(cmd + ["--", repo, dest], capture_output=True, text=True, env=env)
    if r.returncode != 0 and ref:
        # a commit, not a branch or tag: fetch it
        import shutil
        shutil.rmtree(dest, ignore_errors=True)
        r = subprocess.run(["git", "init", "-q", dest], capture_output=True, text=True)
        for args in (["remote", "add", "origin", repo], ["fetch", "origin", ref],
                     ["checkout", "-q", "FETCH_HEAD"]):
            if r.returncode == 0:
                r = subprocess.run(["git", "-C", dest, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise ContextError(f"unable to prepare context: unable to 'git clone' to temporary "
                           f"context directory: {r.stderr.strip()}")
    root = os.path.realpath(dest)
    ctx = os.path.realpath(os.path.join(root, sub)) if sub else root
    if not (ctx + "/").startswith(root + "/") or not os.path.isdir(ctx):
        raise ContextError(f"unable to prepare context: {sub!r} is not a directory of the "
                           "repository")
    return ctx
