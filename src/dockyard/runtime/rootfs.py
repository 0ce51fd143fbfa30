"""Building the container's filesystem view: mounts, /dev, pivot_root, masking.

Runs inside the container's init process (stage 2), in its new mount
namespace, before the user's program exists — so nothing inside the
container can race these steps. Every destination is resolved with
:func:`secure_join`, which follows symlinks as if the rootfs were ``/``: a
rootfs that links ``/proc`` to ``/etc`` (or to ``../../host``) gets its mount
placed inside itself, never on the host. Mount targets are more: a volume shared
with a running container can be changed by it while we mount (CVE-2021-30465), so
:func:`open_dest` opens the target component by component from directory fds (no
symlink followed by the kernel; symlinks resolved inside the root as above) and the
mount is made on that fd (``/proc/self/fd/N``), never on a path walked again.
"""

from __future__ import annotations

import errno
from dockyard.runtime import fastos as os
import stat

from . import syscalls as sc

# option -> (clears the flag?, flag)
MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "defaults": (False, 0), "ro": (False, sc.MS_RDONLY), "rw": (True, sc.MS_RDONLY),
    "suid": (True, sc.MS_NOSUID), "nosuid": (False, sc.MS_NOSUID),
    "dev": (True, sc.MS_NODEV), "nodev": (False, sc.MS_NODEV),
    "exec": (True, sc.MS_NOEXEC), "noexec": (False, sc.MS_NOEXEC),
    "sync": (False, sc.MS_SYNCHRONOUS), "async": (True, sc.MS_SYNCHRONOUS),
    "dirsync": (False, sc.MS_DIRSYNC), "remount": (False, sc.MS_REMOUNT),
    "mand": (False, sc.MS_MANDLOCK), "nomand": (True, sc.MS_MANDLOCK),
    "atime": (True, sc.MS_NOATIME), "noatime": (False, sc.MS_NOATIME),
    "diratime": (True, sc.MS_NODIRATIME), "nodiratime": (False, sc.MS_NODIRATIME),
    "relatime": (False, sc.MS_RELATIME), "norelatime": (True, sc.MS_RELATIME),
    "strictatime": (False, sc.MS_STRICTATIME), "nostrictatime": (True, sc.MS_STRICTATIME),
    "lazytime": (False, sc.MS_LAZYTIME), "nolazytime": (True, sc.MS_LAZYTIME),
    "symfollow": (True, sc.MS_NOSYMFOLLOW), "nosymfollow": (False, sc.MS_NOSYMFOLLOW),
    # read-only, recursively for a recursive bind (mount_setattr; plain ro before 5.12)
    "rro": (False, sc.MS_RDONLY),
}
PROPAGATION_FLAGS: dict[str, int] = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
_IGNORED_OPTIONS = {"bind", "rbind", "tmpcopyup", "idmap", "ridmap", "X-mount.mkdir"}

DEFAULT_DEVICES = (  # name, major, minor
    ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9),
    ("tty", 5, 0),
)


def _read_text(path: str) -> str:
    return os.read_bytes(path).decode()


class RootfsError(Exception):
    """A mount or device step failed; the message names the path."""


def parse_options(options) -> tuple[int, list[int], str]:
    """(mount flags, propagation flags, data string) for a mount's options."""
    flags, props, data = 0, [], []
    for o in options:
        if o in MOUNT_FLAGS:
            clear, f = MOUNT_FLAGS[o]
            flags = flags & ~f if clear else flags | f
        elif o in PROPAGATION_FLAGS:
            props.append(PROPAGATION_FLAGS[o])
        elif o in _IGNORED_OPTIONS:
            continue
        else:
            data.append(o)
    return flags, props, ",".join(data)


def secure_join(root: str, unsafe: str) -> str:
    """``root``/``unsafe`` with every symlink resolved as if ``root`` were ``/``."""
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 255:
                raise RootfsError(f"too many symlinks resolving {unsafe!r} in the rootfs")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _mkdir_all(root: str, path: str) -> None:
    """Create ``path`` (already resolved under root) and its parents, no symlinks followed."""
    rel = os.path.relpath(path, root)
    cur = root
    for part in rel.split("/"):
        if part in ("", "."):
            continue
        cur = os.path.join(cur, part)
        try:
            os.mkdir(cur, 0o755)
        except FileExistsError:
            if os.path.islink(cur) or not os.path.isdir(cur):
                raise RootfsError(f"{cur} exists and is not a directory") from None


def _create_mountpoint(root: str, dest: str, is_dir: bool) -> None:
    if is_dir:
        _mkdir_all(root, dest)
        return
    _mkdir_all(root, os.path.dirname(dest))
    if not os.path.lexists(dest):
        os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))


def _locked_flags(path: str) -> int:
    """Flags a remount must keep (e.g. nodev set by a parent user namespace)."""
    f = os.statvfs(path).f_flag
    out = 0
    for st_flag, ms_flag in ((os.ST_RDONLY, sc.MS_RDONLY), (os.ST_NOSUID, sc.MS_NOSUID),
                             (os.ST_NODEV, sc.MS_NODEV), (os.ST_NOEXEC, sc.MS_NOEXEC),
                             (os.ST_NOATIME, sc.MS_NOATIME),
                             (os.ST_NODIRATIME, sc.MS_NODIRATIME),
                             (os.ST_RELATIME, sc.MS_RELATIME)):
        if f & st_flag:
            out |= ms_flag
    return out


def remount_bind(path: str, flags: int) -> None:
    base = sc.MS_REMOUNT | sc.MS_BIND | flags
    try:
        sc.mount(None, path, None, base)
    except PermissionError:
        sc.mount(None, path, None, base | (_locked_flags(path) & ~sc.MS_RDONLY))


def _bind(source: str, dest: str, flags: int, recursive: bool) -> None:
    sc.mount(source, dest, None, sc.MS_BIND | (sc.MS_REC if recursive else 0))
    extra = flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
    if extra:
        remount_bind(dest, extra)


_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dest(rootfs: str, unsafe: str, is_dir: bool) -> int:
    """An O_PATH fd of mount target ``unsafe`` in ``rootfs``, made if missing (a
    directory, or an empty file when not ``is_dir``). Each component is opened from
    its parent's fd with O_NOFOLLOW and checked after the open; a symlink is read and
    resolved inside the root (an absolute one restarts there, ``..`` stops there), so
    a swap at any moment leads at worst to another place inside the root."""
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    stack = [os.open(rootfs, _PATH_FLAGS | os.O_DIRECTORY)]
    links = 0
    try:
        while parts:
            part = parts.pop(0)
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            cur = stack[-1]
            last = not parts
            try:
                fd = os.open(part, _PATH_FLAGS, dir_fd=cur)
            except FileNotFoundError:
                try:
                    if last and not is_dir:
                        os.close(os.open(part, os.O_CREAT | os.O_EXCL | os.O_WRONLY
                                         | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=cur))
                    else:
                        os.mkdir(part, 0o755, dir_fd=cur)
                except FileExistsError:
                    pass
                parts.insert(0, part)   # made (or made meanwhile): open it as any other
                continue
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                os.close(fd)
                links += 1
                if links > 255:
                    raise RootfsError(f"too many symlinks resolving {unsafe!r} in the rootfs")
                target = os.readlink(part, dir_fd=cur)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
            if not last and not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise RootfsError(f"mount target {unsafe!r}: a component is not a directory")
            stack.append(fd)
        if len(stack) == 1:
            raise RootfsError(f"mount target {unsafe!r} resolves to the container's root")
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def mount_entry(m, rootfs: str, bundle: str, cgroup_view: "CgroupView | None") -> None:
    """Mount one OCI ``mounts[]`` entry under ``rootfs``: made on the target's fd; the
    remount (flags), recursive read-only and propagation steps on a fresh fd of the
    new mount (a fd opened before the mount still names what lies under it)."""
    flags, props, data = parse_options(m.options)
    try:
        if m.type in ("cgroup", "cgroup2"):
            dest = secure_join(rootfs, m.destination)   # in our fresh /sys: no container data
            _mkdir_all(rootfs, dest)
            mount_cgroup(dest, flags, cgroup_view)
            for p in props:
                sc.mount(None, dest, None, p)
            return
        source = None
        if m.is_bind:
            source = m.source if os.path.isabs(m.source) else os.path.join(bundle, m.source)
        is_dir = source is None or os.path.isdir(source)
        fd = open_dest(rootfs, m.destination, is_dir)
        try:
            if source is not None:
                recursive = "rbind" in m.options or m.type == "rbind"
                sc.mount(source, f"/proc/self/fd/{fd}", None,
                         sc.MS_BIND | (sc.MS_REC if recursive else 0))
                extra = flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
            else:
                recursive = False
                sc.mount(m.source or m.type, f"/proc/self/fd/{fd}", m.type, flags, data or None)
                extra = 0
        finally:
            os.close(fd)
        if not (extra or props or "rro" in m.options):
            return
        fd = open_dest(rootfs, m.destination, is_dir)   # now the new mount's root
        try:
            dest = f"/proc/self/fd/{fd}"
            if extra:
                remount_bind(dest, extra)
            if "rro" in m.options and recursive:
                _readonly_recursive(fd)
            for p in props:
                sc.mount(None, dest, None, p)
        finally:
            os.close(fd)
    except OSError as e:
        raise RootfsError(f"mounting {m.source or m.type!r} to {m.destination!r}: "
                          f"{e.strerror or e}") from None


def _readonly_recursive(fd: int) -> None:
    """The mount at ``fd`` and all below it read-only (Docker 25's recursive read-only
    binds); a kernel without mount_setattr keeps plain ro."""
    try:
        sc.mount_setattr_rdonly_recursive(fd)
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EINVAL):
            raise


class CgroupView:
    """The host cgroup mounts and this process's cgroup paths, captured before
    the cgroup namespace is entered, so /sys/fs/cgroup can show only the
    container's own subtree (read-only binds, never the host root: no
    release_agent, CVE-2022-0492).

    ``dirs`` ({mountpoint: directory}, from the runtime) are the container's
    cgroups before this process has been moved into them: their paths replace
    ours in those hierarchies, i.e. the paths are those we will have."""

    def __init__(self, dirs: dict[str, str] | None = None, data: dict | None = None) -> None:
        self.mounts: list[tuple[str, str, str, set[str]]] = []   # (mountpoint, root, type, opts)
        self.paths: dict[str, str] = {}                          # controllers key -> path
        if data is not None:      # to_data() of a view the runtime built for us
            self.mounts = [(mp, root, t, set(opts)) for mp, root, t, opts in data["mounts"]]
            self.paths = dict(data["paths"])
            return
        for line in _read_text("/proc/self/mountinfo").splitlines():
            pre, _, post = line.partition(" - ")
            fields, post_f = pre.split(), post.split()
            if post_f and post_f[0] in ("cgroup", "cgroup2"):
                opts = set(post_f[2].split(",")) if len(post_f) > 2 else set()
                mp = fields[4].replace("\\040", " ")
                self.mounts.append((mp, fields[3], post_f[0], opts))
        for line in _read_text("/proc/self/cgroup").splitlines():
            _id, ctrls, path = line.split(":", 2)
            self.paths[ctrls] = path
        for mp, root, fstype, opts in self.mounts if dirs else ():
            d = dirs.get(mp)
            if d is None:
                continue
            path = os.path.normpath(os.path.join(root, os.path.relpath(d, mp)))
            for ctrls in self.paths:
                if (fstype == "cgroup2" and ctrls == "") or (
                        fstype == "cgroup" and ctrls and set(ctrls.split(",")) <= opts):
                    self.paths[ctrls] = path

    def to_data(self) -> dict:
        """Plain data for ``CgroupView(data=...)`` in another process: the runtime
        builds the view while init mounts, so init does not read the files."""
        return {"mounts": [[mp, root, t, sorted(opts)] for mp, root, t, opts in self.mounts],
                "paths": self.paths}

    def path_for(self, fstype: str, opts: set[str]) -> str | None:
        if fstype == "cgroup2":
            return self.paths.get("")
        for ctrls, path in self.paths.items():
            if ctrls and set(ctrls.split(",")) <= opts:
                return path
        return None


def _host_dir(mountpoint: str, mount_root: str, path: str) -> str:
    rel = os.path.relpath(path, mount_root) if path.startswith(mount_root) else "."
    return os.path.normpath(os.path.join(mountpoint, rel))


def mount_cgroup(dest: str, flags: int, view: CgroupView | None) -> None:
    """Mount the container's cgroups at ``dest`` (read-only if asked)."""
    if view is None:
        view = CgroupView()
    v2_root = [m for m in view.mounts if m[0] == "/sys/fs/cgroup" and m[2] == "cgroup2"]
    if v2_root:                                    # a pure cgroup v2 host
        mp, root, _t, _o = v2_root[0]
        _bind(_host_dir(mp, root, view.paths.get("", "/")), dest, flags, True)
        return
    sc.mount("tmpfs", dest, "tmpfs", flags & ~sc.MS_RDONLY, "mode=755")
    for mp, root, fstype, opts in view.mounts:
        if not mp.startswith("/sys/fs/cgroup/"):
            continue
        path = view.path_for(fstype, opts)
        if path is None or path == "/":
            continue        # not confined in this hierarchy: never show the host's root
        name = os.path.basename(mp)
        target = os.path.join(dest, name)
        os.mkdir(target, 0o755)
        _bind(_host_dir(mp, root, path), target, flags | sc.MS_NOSUID | sc.MS_NODEV
              | sc.MS_NOEXEC, True)
        if "," in name:
            for part in name.split(","):
                if not os.path.lexists(os.path.join(dest, part)):
                    os.symlink(name, os.path.join(dest, part))
    if flags & sc.MS_RDONLY:
        sc.mount(None, dest, None, sc.MS_REMOUNT | flags)


# ------------------------------------------------------------------ /dev

def needs_dev_setup(cfg) -> bool:
    """runc's rule: populate /dev unless the bundle bind-mounts its own /dev."""
    m = cfg.has_mount_at("/dev")
    return not (m is not None and m.is_bind)


def _mknod(path: str, kind: str, major: int, minor: int, mode: int) -> None:
    fmt = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[kind]
    os.mknod(path, fmt | (mode & 0o7777), os.makedev(major, minor))


def _bind_host_device(rootfs: str, dest: str, host_path: str) -> None:
    _create_mountpoint(rootfs, dest, False)
    sc.mount(host_path, dest, None, sc.MS_BIND)


def create_device(rootfs: str, path: str, kind: str, major: int, minor: int, mode: int,
                  uid: int | None, gid: int | None, in_userns: bool) -> None:
    dest = secure_join(rootfs, path)
    if os.path.lexists(dest):
        return
    _mkdir_all(rootfs, os.path.dirname(dest))
    if in_userns:   # mknod is not allowed in a user namespace: bind the host's node
        _bind_host_device(rootfs, dest, path)
        return
    try:
        _mknod(dest, kind, major, minor, mode)
    except PermissionError:
        _bind_host_device(rootfs, dest, path)
        return
    os.chmod(dest, mode & 0o7777)      # mknod honours the umask; the spec's mode wins
    if uid is not None or gid is not None:
        os.chown(dest, -1 if uid is None else uid, -1 if gid is None else gid)


def setup_dev(cfg, rootfs: str, in_userns: bool) -> None:
    """Default devices, linux.devices, /dev/ptmx and the /proc/self/fd links."""
    if needs_dev_setup(cfg):
        _default_dev(cfg, rootfs, in_userns)
    for d in cfg.devices:
        mode = d.file_mode if d.file_mode is not None else 0o666
        create_device(rootfs, d.path, d.type, d.major, d.minor, mode, d.uid, d.gid, in_userns)


def _default_dev(cfg, rootfs: str, in_userns: bool) -> None:
    # /dev is resolved inside the rootfs and opened once (O_NOFOLLOW); the
    # entries are made relative to that descriptor by calls that do not follow
    # a symlink in their last component (mknodat, symlinkat, unlinkat,
    # fchownat without following), so an existing entry of any kind is left
    # alone (EEXIST) and nothing is made or changed outside the rootfs; a few
    # syscalls per entry instead of a path walk for each.
    dev = secure_join(rootfs, "/dev")
    _mkdir_all(rootfs, dev)
    dfd = os.open(dev, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    umask = os.umask(0)            # the nodes get exactly 0666
    try:
        for name, major, minor in DEFAULT_DEVICES:
            if in_userns:          # mknod is not allowed there: bind the host's node
                if not os.path.lexists(f"{dev}/{name}"):
                    _bind_host_device(rootfs, f"{dev}/{name}", f"/dev/{name}")
                continue
            try:
                os.mknod(name, stat.S_IFCHR | 0o666, os.makedev(major, minor), dir_fd=dfd)
            except FileExistsError:
                continue
            except PermissionError:
                _bind_host_device(rootfs, f"{dev}/{name}", f"/dev/{name}")
                continue
            os.chown(name, 0, 0, dir_fd=dfd, follow_symlinks=False)
        for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
            try:
                os.symlink(target, link, dir_fd=dfd)
            except FileExistsError:
                pass
        if cfg.has_mount_at("/dev/pts") is not None:
            try:
                os.unlink("ptmx", dir_fd=dfd)
            except FileNotFoundError:
                pass
            os.symlink("pts/ptmx", "ptmx", dir_fd=dfd)
    finally:
        os.umask(umask)
        os.close(dfd)


# ------------------------------------------------------------- root & pivot

def prepare_root(rootfs: str, propagation: str) -> None:
    """Stop our mounts from propagating to the host, then make rootfs a mount."""
    flag = PROPAGATION_FLAGS.get(propagation, sc.MS_SLAVE | sc.MS_REC)
    sc.mount(None, "/", None, flag)
    _make_parent_private(rootfs)
    sc.mount(rootfs, rootfs, "bind", sc.MS_BIND | sc.MS_REC)


def _make_parent_private(rootfs: str) -> None:
    """pivot_root refuses a new root whose parent mount is shared."""
    best, shared = "", False
    for line in _read_text("/proc/self/mountinfo").splitlines():
        fields = line.split(" - ")[0].split()
        mp = fields[4].replace("\\040", " ")
        if (rootfs == mp or rootfs.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
            best, shared = mp, any(o.startswith("shared:") for o in fields[6:])
    if best and shared:
        sc.mount(None, best, None, sc.MS_PRIVATE)


def pivot(rootfs: str) -> None:
    """pivot_root(".", ".") then lazily detach the old root stacked under it."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        sc.pivot_root(".", ".")
        os.fchdir(old)
        # the old root must not propagate the unmount back to the host
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount2(".", sc.MNT_DETACH)
    finally:
        os.close(old)
        os.close(new)
    os.chdir("/")


def move_root(rootfs: str) -> None:
    """--no-pivot: move the rootfs mount over / and chroot (for ramdisk roots)."""
    os.chdir(rootfs)
    sc.mount(rootfs, "/", None, sc.MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def readonly_root() -> None:
    remount_bind("/", sc.MS_RDONLY)


def set_shared_root(propagation: str) -> None:
    if propagation in ("shared", "rshared"):
        sc.mount(None, "/", None, PROPAGATION_FLAGS[propagation])


# ------------------------------------------------- paths after pivot_root

def readonly_path(path: str) -> None:
    try:
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
    except FileNotFoundError:
        return
    remount_bind(path, sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_REC)


def open_dev_null() -> int:
    """An O_PATH fd of /dev/null, verified to be the real 1:3 character device.

    A rootfs (or a shared /dev) could make /dev/null a symlink to a host-side
    file such as /proc/sys/kernel/core_pattern; masking with it would then make
    that file writable (CVE-2025-31133). We mount from the verified fd, so the
    check and the use are the same object.
    """
    try:
        fd = os.open("/dev/null", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise RootfsError(f"cannot open /dev/null to mask paths: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise RootfsError("refusing to mask paths: /dev/null in the container is not the "
                          "null character device (1:3)")
    return fd


def mask_path(path: str, null_fd: int) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, None)
    else:
        try:
            sc.mount(f"/proc/self/fd/{null_fd}", path, None, sc.MS_BIND)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise


def write_sysctls(sysctl: dict) -> None:
    for key, value in sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(str(value))
        except OSError as e:
            raise RootfsError(f"sysctl {key}={value}: {e.strerror}") from None
