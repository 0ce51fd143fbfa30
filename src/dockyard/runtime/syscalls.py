"""The one place where the runtime makes raw Linux system calls.

Python 3.11's ``os`` module has no unshare, setns, mount, pivot_root,
capset or prctl, so this module wraps them with ctypes. Everything else in
the runtime calls these functions and never touches ctypes itself, which
keeps the unsafe surface small and lets every failure carry the same kind of
error: an :class:`OSError` with the errno and a message naming the call and
the path it was applied to.

The ``ctypes`` package itself is not imported: its ``__init__`` (all the C
types, ``struct``, ``types``, the endian classes) costs ~2 ms at every
`dockyard-runc create`/`run`, and the few things used here come straight
from its C module ``_ctypes`` (which ``ctypes`` wraps the same way). This
module is imported only by the commands that create or enter containers.
"""

from __future__ import annotations

import _ctypes
import fcntl
from dockyard.runtime import fastos as os
import struct
from _ctypes import Structure, _SimpleCData, byref, get_errno


class c_int(_SimpleCData):
    _type_ = "i"


class c_uint(_SimpleCData):
    _type_ = "I"


class c_long(_SimpleCData):
    _type_ = "l"


class c_ulong(_SimpleCData):
    _type_ = "L"


c_uint32 = c_uint
c_size_t = c_ulong


class _Libc:
    """The process's own C library: ``ctypes.CDLL(None, use_errno=True)``.

    Functions are looked up on first use and return a C int unless told
    otherwise, as with ctypes."""

    def __init__(self) -> None:
        class _Function(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = c_int

        self._Function = _Function
        self._handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        func = self._Function((name, self))
        setattr(self, name, func)
        return func


_libc = _Libc()

# Namespace clone flags (linux/sched.h).
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags (linux/mount.h).
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_DETACH = 2

# prctl(2) options.
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# tty ioctls (asm-generic/ioctls.h).
TIOCSCTTY = 0x540E
TIOCGWINSZ = 0x5413
TIOCSWINSZ = 0x5414
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431

# x86_64 / aarch64 syscall numbers for calls glibc 2.36 does not wrap.
_SYS = {
    "x86_64": {"pivot_root": 155, "close_range": 436, "keyctl": 250},
    "aarch64": {"pivot_root": 41, "close_range": 436, "keyctl": 219},
}[os.uname().machine]
# the mount API's calls have one number on every architecture (Linux 5.2)
_SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 430, 431, 432
CLOSE_RANGE_CLOEXEC = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _fs(value: str | bytes | None) -> bytes | None:
    if value is None:
        return None
    return os.fsencode(value)


def _check(ret: int, call: str, *what: object) -> int:
    if ret < 0:
        err = get_errno()
        detail = " ".join(repr(w) if isinstance(w, (str, bytes)) else str(w) for w in what)
        raise OSError(err, f"{call}({detail}): {os.strerror(err)}")
    return ret


def unshare(flags: int) -> None:
    _check(_libc.unshare(c_int(flags)), "unshare", hex(flags))


def setns(fd: int, nstype: int = 0, what: str = "") -> None:
    _check(_libc.setns(c_int(fd), c_int(nstype)), "setns", what or fd)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    ret = _libc.mount(_fs(source), _fs(target), _fs(fstype), c_ulong(flags), _fs(data))
    _check(ret, "mount", source or "", target, fstype or "", hex(flags), data or "")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_fs(target), c_int(flags)), "umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    ret = _libc.syscall(c_long(_SYS["pivot_root"]), _fs(new_root), _fs(put_old))
    _check(ret, "pivot_root", new_root, put_old)


KEYCTL_JOIN_SESSION_KEYRING = 1


def join_session_keyring(name: str) -> int:
    """Start a new session keyring, so the container does not share ours."""
    ret = _libc.syscall(c_long(_SYS["keyctl"]), c_long(KEYCTL_JOIN_SESSION_KEYRING),
                        _fs(name))
    return _check(ret, "keyctl(KEYCTL_JOIN_SESSION_KEYRING)", name)


def sethostname(name: str) -> None:
    b = name.encode()
    _check(_libc.sethostname(b, c_size_t(len(b))), "sethostname", name)


def setdomainname(name: str) -> None:
    b = name.encode()
    _check(_libc.setdomainname(b, c_size_t(len(b))), "setdomainname", name)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    ret = _libc.prctl(c_int(option), c_ulong(arg2), c_ulong(arg3),
                      c_ulong(arg4), c_ulong(arg5))
    return _check(ret, "prctl", option, arg2)


def set_dumpable(on: bool) -> None:
    prctl(PR_SET_DUMPABLE, 1 if on else 0)


def set_child_subreaper() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


class _CapHeader(Structure):
    _fields_ = [("version", c_uint32), ("pid", c_int)]


class _CapData(Structure):
    _fields_ = [("effective", c_uint32), ("permitted", c_uint32),
                ("inheritable", c_uint32)]


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of the calling thread as 64-bit masks."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(byref(hdr), data), "capget")
    eff, prm, inh = (getattr(data[0], f) | (getattr(data[1], f) << 32)
                     for f in ("effective", "permitted", "inheritable"))
    return eff, prm, inh


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.capset(byref(hdr), data), "capset", hex(effective), hex(permitted),
           hex(inheritable))


class _RLimit(Structure):
    _fields_ = [("cur", c_ulong), ("max", c_ulong)]


_RLIM_MASK = (1 << 64) - 1     # -1 (or 2**64-1) is RLIM_INFINITY


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """setrlimit(2) (the ``resource`` module is one more shared library to load)."""
    lim = _RLimit(soft & _RLIM_MASK, hard & _RLIM_MASK)
    _check(_libc.setrlimit(c_int(resource), byref(lim)), "setrlimit", resource, soft, hard)


def mark_cloexec_from(first: int) -> None:
    """Set close-on-exec on every descriptor >= first (close_range(2) with CLOEXEC)."""
    ret = _libc.syscall(c_long(_SYS["close_range"]), c_uint(first),
                        c_uint(0xFFFFFFFF), c_uint(CLOSE_RANGE_CLOEXEC))
    if ret < 0:  # older kernels: do it one by one
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd >= first:
                try:
                    os.set_inheritable(fd, False)
                except OSError:
                    pass


def ioctl_int(fd: int, request: int, value: int = 0) -> int:
    buf = fcntl.ioctl(fd, request, struct.pack("i", value))
    return struct.unpack("i", buf)[0]


def set_controlling_tty(fd: int) -> None:
    try:
        fcntl.ioctl(fd, TIOCSCTTY, 0)
    except OSError as e:
        raise OSError(e.errno, f"ioctl(TIOCSCTTY): {os.strerror(e.errno)}") from None


def get_winsize(fd: int) -> bytes:
    return fcntl.ioctl(fd, TIOCGWINSZ, b"\0" * 8)


def set_winsize(fd: int, ws: bytes) -> None:
    fcntl.ioctl(fd, TIOCSWINSZ, ws)


FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 0x2, 0x4, 0x8
PROC_SUPER_MAGIC = 0x9FA0


def detached_tmpfs(options: dict[str, str]) -> int:
    """A new tmpfs mounted nowhere (fsopen/fsconfig/fsmount, Linux 5.2): an fd
    of its root directory, close-on-exec. Only holders of that fd can reach
    it; it goes away with the last one."""
    fs = _check(_libc.syscall(c_long(_SYS_FSOPEN), b"tmpfs", c_uint(1)), "fsopen", "tmpfs")
    try:
        for key, value in options.items():
            _check(_libc.syscall(c_long(_SYS_FSCONFIG), c_int(fs), c_uint(FSCONFIG_SET_STRING),
                                 key.encode(), value.encode(), c_int(0)),
                   "fsconfig", key, value)
        _check(_libc.syscall(c_long(_SYS_FSCONFIG), c_int(fs), c_uint(FSCONFIG_CMD_CREATE),
                             None, None, c_int(0)), "fsconfig", "create")
        attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC
        return _check(_libc.syscall(c_long(_SYS_FSMOUNT), c_int(fs), c_uint(1), c_uint(attrs)),
                      "fsmount", "tmpfs")
    finally:
        os.close(fs)


class _StatFs(Structure):
    _fields_ = [(f"f{i}", c_long) for i in range(15)]    # struct statfs: 120 bytes


def fs_type(path: str) -> int:
    """statfs(2)'s f_type for ``path`` (the magic number of its filesystem)."""
    buf = _StatFs()
    _check(_libc.statfs(_fs(path), byref(buf)), "statfs", path)
    return buf.f0 & 0xFFFFFFFF


_SYS_MOUNT_SETATTR = 442   # one number on every architecture (Linux 5.12)
MOUNT_ATTR_RDONLY = 0x1
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000


def mount_setattr_rdonly_recursive(fd: int) -> None:
    """Make the mount at ``fd`` and every mount below it read-only (``rro``, Linux 5.12+:
    ENOSYS before)."""
    attr = struct.pack("QQQQ", MOUNT_ATTR_RDONLY, 0, 0, 0)
    ret = _libc.syscall(c_long(_SYS_MOUNT_SETATTR), c_int(fd), b"",
                        c_uint(AT_EMPTY_PATH | AT_RECURSIVE), attr, c_size_t(len(attr)))
    _check(ret, "mount_setattr", fd, "MOUNT_ATTR_RDONLY|AT_RECURSIVE")
