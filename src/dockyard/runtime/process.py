"""The last steps before the user's program runs, shared by init and exec.

Every function here runs inside the container (after pivot_root or setns
into its mount namespace), where the host's Python modules can no longer be
imported: callers import what these steps need *before* entering.

Security notes:

* Host file descriptors never reach the user's program: every fd above the
  preserved ones is closed before ``chdir`` (so a ``cwd`` of
  ``/proc/self/fd/N`` has nothing to point at) and the working directory is
  then verified to lie inside the container (CVE-2024-21626).
* Our own process is non-dumpable from before it enters any namespace, so
  nothing in the container can open ``/proc/<pid>/exe`` or ``/proc/<pid>/fd``
  of the Python interpreter (CVE-2019-5736); the user's program gets its
  normal dumpable state back at execve. The program to execute is also
  checked, through its shebang chain, not to be our own interpreter binary
  (``/bin/sh -> /proc/self/exe``), which would otherwise run the host's
  binary inside the container; the check is made on the open file that is
  then executed (execveat), so it cannot be raced.
"""

from __future__ import annotations

from dockyard.runtime import fastos as os

from . import caps, rootfiles
from . import syscalls as sc

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_RLIMIT = {f"RLIMIT_{n}": i for i, n in enumerate((   # Linux's numbering
    "CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS",
    "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"))}


class ProcessError(Exception):
    pass


def self_exe_id() -> tuple[int, int]:
    st = os.stat("/proc/self/exe")
    return st.st_dev, st.st_ino


def apply_rlimits(rlimits) -> None:
    for typ, hard, soft in rlimits:
        try:
            sc.setrlimit(_RLIMIT[typ], soft, hard)
        except (ValueError, OSError) as e:
            raise ProcessError(f"setting {typ} to soft={soft} hard={hard}: {e}") from None


def set_oom_score_adj(value: int | None) -> None:
    if value is None:
        return
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as e:
        raise ProcessError(f"write {value} to /proc/self/oom_score_adj: {e.strerror}"
                           + (" (lowering it needs CAP_SYS_RESOURCE on the host; containerd's"
                              " restrict_oom_score_adj)" if e.errno == 13 else "")) from None


def env_dict(env) -> dict[str, str]:
    out = {}
    for e in env:
        k, _, v = e.partition("=")
        out[k] = v
    return out


def _home_of(uid: int) -> str:
    """HOME from the container's /etc/passwd (we are inside it: "/" is its root), read
    bounded and as a regular file only (``rootfiles``: a FIFO or /dev/zero there must
    not hang or exhaust the exec)."""
    want = str(uid)
    for parts in rootfiles.entries("/", "/etc/passwd", 6):
        if parts[2] == want:
            return parts[5] or "/"
    return "/"


def lookup(name: str, env: dict[str, str]) -> str:
    """Resolve args[0] on the *container's* PATH (from process.env)."""
    if "/" in name:
        if not os.path.exists(name):
            raise ProcessError(f'exec: "{name}": stat {name}: no such file or directory')
        return name
    for d in (env.get("PATH") or DEFAULT_PATH).split(":"):
        cand = os.path.join(d or ".", name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise ProcessError(f'exec: "{name}": executable file not found in $PATH')


def guard_runtime_binary(path: str, own: tuple[int, int], depth: int = 0) -> None:
    """Refuse to execute our own interpreter binary from inside the container."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if (st.st_dev, st.st_ino) == own:
        raise ProcessError(f"refusing to execute {path}: it is the runtime's own binary")
    if depth >= 4:
        return
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return
    if head.startswith(b"#!"):
        interp = head[2:].split(b"\n", 1)[0].strip().split()
        if interp:
            guard_runtime_binary(os.fsdecode(interp[0]), own, depth + 1)


def close_fds(first: int, keep: set[int]) -> None:
    """Close every fd >= first except ``keep`` (which become close-on-exec).

    Without a /proc (a container that has no mount namespace and mounts
    nothing) every fd >= first is only made close-on-exec: none reaches the
    program either."""
    try:
        names = os.listdir("/proc/self/fd")
    except FileNotFoundError:
        names = []
    for name in names:
        fd = int(name)
        if fd < first:
            continue
        if fd in keep:
            os.set_inheritable(fd, False)
            continue
        try:
            os.close(fd)
        except OSError:
            pass
    sc.mark_cloexec_from(first)


def preserve_fds(first: int, count: int) -> None:
    for fd in range(first, first + count):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass


def change_dir(cwd: str) -> None:
    try:
        os.chdir(cwd)
    except OSError as e:
        raise ProcessError(f"chdir to cwd ({cwd!r}) set in config.json failed: "
                           f"{e.strerror}") from None
    try:
        real = os.getcwd()
    except OSError:
        real = ""
    if not real.startswith("/"):
        raise ProcessError(f"current working directory {cwd!r} is outside of the container "
                           "root (a leaked file descriptor?)")


def switch_user(user, setgroups_allowed: bool) -> None:
    if setgroups_allowed:
        os.setgroups(list(user.additional_gids))
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)


def finalize(proc, setgroups_allowed: bool, n_preserved: int, keep: set[int]) -> None:
    """fds, cwd, capabilities and user, in runc's order (see caps.apply)."""
    close_fds(3 + n_preserved, keep)
    preserve_fds(3, n_preserved)
    change_dir(proc.cwd)
    caps.apply(proc.capabilities, lambda: switch_user(proc.user, setgroups_allowed))
    sc.set_dumpable(False)   # a uid change may have reset it (fs.suid_dumpable)
    change_dir(proc.cwd)
    os.umask(proc.user.umask if proc.user.umask is not None else 0o022)


def final_env(proc) -> dict[str, str]:
    env = env_dict(proc.env)
    if "HOME" not in env:
        env["HOME"] = _home_of(proc.user.uid)
    return env


def open_program(path: str, args, own: tuple[int, int]) -> tuple[int, list[str]]:
    """An fd of the binary the kernel would run for ``path``, and the argv for it.

    ``#!`` interpreters are followed here, the way the kernel would (argv
    becomes interpreter, optional argument, script path, original args), so
    the final execveat() runs exactly the file that was checked: a container
    process swapping ``/bin/sh`` for ``/proc/self/exe`` between our check and
    the exec (the CVE-2019-5736 race) has nothing left to swap.
    """
    argv = list(args)
    for _ in range(5):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except PermissionError:        # execute-only file: cannot be a script
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == own:
            os.close(fd)
            raise ProcessError(f"refusing to execute {path}: it is the runtime's own binary")
        try:
            head = os.pread(fd, 256, 0)
        except OSError:
            head = b""
        if not head.startswith(b"#!"):
            return fd, argv
        os.close(fd)
        line = head[2:].split(b"\n", 1)[0].strip()
        if not line:
            raise ProcessError(f'exec: "{path}": exec format error')
        parts = line.split(None, 1)
        interp = os.fsdecode(parts[0])
        argv = [interp, *([os.fsdecode(parts[1].strip())] if len(parts) > 1 else []), path,
                *argv[1:]]
        path = interp
    raise ProcessError(f'exec: "{args[0]}": too many levels of #! interpreters')


def reset_signals() -> None:
    """Default dispositions and an empty mask for the user's program, as runc gives it.

    Ignored signals survive execve, and Python ignores SIGPIPE and SIGXFSZ at
    start: without this, `yes | head` in a container would see EPIPE instead
    of dying of SIGPIPE."""
    import _signal
    for sig in range(1, _signal.NSIG):
        if sig in (_signal.SIGKILL, _signal.SIGSTOP):
            continue
        try:
            if _signal.getsignal(sig) != _signal.SIG_DFL:
                _signal.signal(sig, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass   # real-time signals Python does not manage
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())


def name_dir() -> int | None:
    """A directory for :func:`exec_program` to name the program in, or None.

    A tmpfs mounted nowhere (see ``syscalls.detached_tmpfs``): nothing in the
    container can reach it (our fds are out of its reach: we are
    non-dumpable), and it goes away at the exec (the fd is close-on-exec).
    Made while we still have the capability to mount, before any seccomp
    profile is loaded; None where the kernel refuses (then the program is
    executed by its fd alone)."""
    try:
        return sc.detached_tmpfs({"mode": "0777", "size": "4k", "nr_inodes": "4"})
    except OSError:
        return None


def _exec_named(dirfd: int, name: str, fd: int, argv, env) -> None:
    """Execute the file open at ``fd`` under ``name``; returns only if it could not.

    The kernel names a process (``comm``: what ps, pidof and pgrep show)
    after the last component of the path it was executed by; executed by a
    descriptor (execveat AT_EMPTY_PATH), that is the descriptor's number on
    kernels before 6.14. So a symlink ``name`` -> ``/proc/self/fd/<fd>`` is
    made in our private directory and the program executed through it: the
    path's last component is the program's own name and the file is the
    very one checked (``open_program``), no path the container controls is
    resolved again. ``/proc`` must be the container's procfs (checked: a
    directory whose filesystem is procfs; a mount point cannot be renamed
    away), and the link must lead to our file (checked); otherwise, or if
    anything fails, the caller falls back to the fd. The fds stay
    close-on-exec: nothing of ours reaches the program (CVE-2024-21626)."""
    if not name or name in (".", ".."):
        return
    try:
        os.symlink(f"/proc/self/fd/{fd}", name, dir_fd=dirfd)
        if not os.path.isdir("/proc") or os.path.islink("/proc"):
            return
        if sc.fs_type("/proc/self") != sc.PROC_SUPER_MAGIC:
            return
        link = f"/proc/self/fd/{dirfd}/{name}"
        st, want = os.stat(link), os.fstat(fd)
        if (st.st_dev, st.st_ino) != (want.st_dev, want.st_ino):
            return
        os.execve(link, argv, env)
    except OSError:
        return


def exec_program(path: str, args, env: dict[str, str], own: tuple[int, int],
                 named_in: int | None = None) -> None:
    """Replace this process by the program at ``path`` (looked up in the container).

    ``named_in``: a :func:`name_dir` directory, so that the program's name
    is its own (the basename of ``path``, as runc's execve by path gives),
    not the number of the descriptor it was executed by."""
    fd, argv = open_program(path, args, own)
    reset_signals()
    if named_in is not None:
        os.set_inheritable(named_in, False)   # even if it got a preserved fd's number
        _exec_named(named_in, os.path.basename(path), fd, argv, env)
    try:
        os.execve(fd, argv, env)
    except OSError as e:
        raise ProcessError(f'exec: "{args[0]}": {e.strerror}') from None
