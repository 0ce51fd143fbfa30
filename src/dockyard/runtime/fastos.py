"""``os`` for the runtime's start path: the ``posix`` C module plus path helpers.

``import os`` costs ~1.6 ms at every `dockyard-runc` call: it builds the
abstract base classes of ``collections.abc`` for ``os.environ`` and loads
``posixpath``. The interpreter has ``posix`` loaded already, and ``os``
re-exports its functions unchanged, so the runtime's modules import this
module under the name ``os`` and use it as they would ``os``.

What it adds over ``posix``: ``path`` (the ``os.path`` functions the runtime
calls, for ``str`` paths, with ``posixpath``'s results; ``bytes`` paths go to
``posixpath`` itself), ``fsencode``/``fsdecode``, ``makedirs``, ``walk``, the
``SEEK_*`` constants, a read-only ``environ`` (``get``, ``[]``, ``in``:
the runtime only reads it) and ``read_bytes`` (a whole file, unbuffered). Anything rarer is not here: use the
real ``os`` where start-up time does not matter.
"""

import sys
from posix import *  # noqa: F403 - the whole of os's system-call surface
from posix import _exit  # noqa: F401 - not exported by *
from posix import environ as _environb
from posix import lstat as _lstat
from posix import stat as _stat

SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2
sep = "/"
curdir = "."
pardir = ".."
devnull = "/dev/null"

_ENC = sys.getfilesystemencoding()
_ERR = sys.getfilesystemencodeerrors()


def fsencode(name) -> bytes:
    name = fspath(name)  # noqa: F405
    return name.encode(_ENC, _ERR) if isinstance(name, str) else name


def fsdecode(name) -> str:
    name = fspath(name)  # noqa: F405
    return name.decode(_ENC, _ERR) if isinstance(name, bytes) else name


class _Environ:
    """Read access to the environment: ``os.environ`` itself once something in
    the process has loaded ``os`` (it is the one that sees later changes),
    else the environment the process started with."""

    def __init__(self) -> None:
        self._start: dict | None = None

    def _data(self):
        real = sys.modules.get("os")
        if real is not None:
            return real.environ
        if self._start is None:
            self._start = {fsdecode(k): fsdecode(v) for k, v in _environb.items()}
        return self._start

    def get(self, key, default=None):
        return self._data().get(key, default)

    def __getitem__(self, key):
        return self._data()[key]

    def __contains__(self, key) -> bool:
        return key in self._data()


environ = _Environ()


def _real():
    import posixpath
    return posixpath


def _join(a, *rest):
    if not isinstance(a, str):
        return _real().join(a, *rest)
    out = a
    for b in rest:
        b = fspath(b)  # noqa: F405
        if not isinstance(b, str):
            return _real().join(a, *rest)
        if b.startswith("/"):
            out = b
        elif not out or out.endswith("/"):
            out += b
        else:
            out += "/" + b
    return out


def _normpath(p):
    p = fspath(p)  # noqa: F405
    if not isinstance(p, str):
        return _real().normpath(p)
    if not p:
        return "."
    # POSIX: exactly two leading slashes may mean something else; more are one
    lead = "//" if p.startswith("//") and not p.startswith("///") else "/" if p[0] == "/" else ""
    parts: list[str] = []
    for c in p.split("/"):
        if not c or c == ".":
            continue
        if c != ".." or (not lead and not parts) or (parts and parts[-1] == ".."):
            parts.append(c)
        elif parts:
            parts.pop()
    return (lead + "/".join(parts)) or "."


def _isabs(p):
    p = fspath(p)  # noqa: F405
    return p.startswith("/" if isinstance(p, str) else b"/")


def _abspath(p):
    p = fspath(p)  # noqa: F405
    if not isinstance(p, str):
        return _real().abspath(p)
    return _normpath(p if p.startswith("/") else _join(getcwd(), p))  # noqa: F405


def _dirname(p):
    p = fspath(p)  # noqa: F405
    if not isinstance(p, str):
        return _real().dirname(p)
    head = p[:p.rfind("/") + 1]
    if head and head != "/" * len(head):
        head = head.rstrip("/")
    return head


def _basename(p):
    p = fspath(p)  # noqa: F405
    if not isinstance(p, str):
        return _real().basename(p)
    return p[p.rfind("/") + 1:]


def _relpath(p, start=None):
    p = fspath(p)  # noqa: F405
    if not isinstance(p, str) or (start is not None and not isinstance(fspath(start), str)):  # noqa: F405
        return _real().relpath(p, start)
    if not p:
        raise ValueError("no path specified")
    to = [c for c in _abspath(p).split("/") if c]
    frm = [c for c in _abspath(start if start is not None else ".").split("/") if c]
    n = 0
    for a, b in zip(to, frm):
        if a != b:
            break
        n += 1
    return "/".join([".."] * (len(frm) - n) + to[n:]) or "."


def _kind(fn, p):
    """The file type bits of stat/lstat(p), or None if there is no such file."""
    try:
        return fn(p).st_mode & 0o170000
    except (OSError, ValueError):
        return None


def _is(fn, kind):
    """A test ``p -> bool``: p's stat (``fn``) exists (``kind`` None) or has this type."""
    if kind is None:
        return lambda p: _kind(fn, p) is not None
    return lambda p: _kind(fn, p) == kind


def _realpath(p):
    return _real().realpath(p)


class path:
    """The ``os.path`` functions the runtime uses (see the module docstring)."""

    join = staticmethod(_join)
    normpath = staticmethod(_normpath)
    isabs = staticmethod(_isabs)
    abspath = staticmethod(_abspath)
    dirname = staticmethod(_dirname)
    basename = staticmethod(_basename)
    relpath = staticmethod(_relpath)
    exists = staticmethod(_is(_stat, None))
    lexists = staticmethod(_is(_lstat, None))
    isdir = staticmethod(_is(_stat, 0o040000))
    isfile = staticmethod(_is(_stat, 0o100000))
    islink = staticmethod(_is(_lstat, 0o120000))
    realpath = staticmethod(_realpath)   # rare: loads posixpath (and os)


def read_bytes(path) -> bytes:
    """A whole file, through ``open``/``read`` on the descriptor: a buffered file
    object costs three more syscalls (fstat, ioctl, lseek) and its objects, on
    paths that read many small /proc and cgroup files."""
    fd = open(path, O_RDONLY | O_CLOEXEC)  # noqa: F405 - posix.open
    try:
        chunks = []
        while chunk := read(fd, 1 << 20):  # noqa: F405
            chunks.append(chunk)
    finally:
        close(fd)  # noqa: F405
    return b"".join(chunks)


def makedirs(name, mode=0o777, exist_ok=False) -> None:
    """``os.makedirs``: the missing parents first."""
    name = fspath(name)  # noqa: F405
    parent = _dirname(name.rstrip("/")) if isinstance(name, str) else None
    if parent and parent != name and not path.exists(parent):
        try:
            makedirs(parent, exist_ok=True)     # parents get the default mode, as in os
        except FileExistsError:
            pass
    try:
        mkdir(name, mode)  # noqa: F405
    except OSError:
        if not exist_ok or not path.isdir(name):
            raise


def walk(top):
    """``os.walk(top)``: top-down, errors ignored, symlinks to directories listed
    among the directories but not descended into."""
    try:
        it = scandir(top)  # noqa: F405
    except OSError:
        return
    dirs, files, links = [], [], set()
    with it:
        while True:
            try:
                entry = next(it)
            except StopIteration:
                break
            except OSError:       # the directory went away while listed
                return
            try:
                is_dir = entry.is_dir()
                if is_dir and entry.is_symlink():
                    links.add(entry.name)
            except OSError:
                is_dir = False
            (dirs if is_dir else files).append(entry.name)
    yield top, dirs, files
    for d in dirs:
        if d not in links:
            yield from walk(_join(top, d))
