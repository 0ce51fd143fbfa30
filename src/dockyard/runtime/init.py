"""The container's two forked stages: entering namespaces, then init.

Stage 1 (forked by ``create``) joins namespaces given by path, unshares a
user namespace (the parent writes its id maps), unshares the remaining
namespaces and forks stage 2 — the fork is what puts stage 2 into the new
PID namespace as its PID 1. Stage 1 reports stage 2's pid and exits.

Most containers (no user or time namespace) skip stage 1: :func:`fork_init`
forks init straight into its PID namespace, new or joined by path
(``unshare(CLONE_NEWPID)`` and ``setns`` of a PID namespace only move the
caller's *future children*; the runtime then switches its own children's
namespace back),
and init joins and unshares the other namespaces itself. That saves a fork,
a process start and a round trip on every `create`.

Stage 2 is the container's init. :class:`Init` runs one fixed sequence of
named steps (``STEPS``), in runc's order; each step says why it sits where it
does. It talks to the parent over the sync socket (see ``sync.Msg``) and
finally blocks on the exec FIFO until ``start``, then execs the user's
program.

Both stages are non-dumpable from their first instruction: a process in the
container must never be able to open our interpreter through
``/proc/<pid>/exe`` (CVE-2019-5736).
"""

from __future__ import annotations

import errno
from dockyard.runtime import fastos as os
import _signal
import sys
import _socket as socket  # the C module: `socket` costs ~8 ms of enum setup
from .record import record

from . import process, rootfs, sync
from . import syscalls as sc
from .sync import Msg

NS_FLAGS = {
    "mount": sc.CLONE_NEWNS, "uts": sc.CLONE_NEWUTS, "ipc": sc.CLONE_NEWIPC,
    "network": sc.CLONE_NEWNET, "pid": sc.CLONE_NEWPID, "cgroup": sc.CLONE_NEWCGROUP,
    "user": sc.CLONE_NEWUSER, "time": sc.CLONE_NEWTIME,
}
# setns order for namespaces given by path: the user namespace first (it
# grants the capabilities to join the others), the mount namespace last.
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


@record
class InitOptions:
    fifo_fd: int | None            # O_PATH fd of <state>/exec.fifo (None: do not wait)
    console_fd: int | None         # connected console socket (terminal only)
    no_pivot: bool = False
    preserve_fds: int = 0
    keyring: str | None = None     # name of a new session keyring (None: keep ours)


def report_error(sock: socket.socket, exc: BaseException) -> None:
    msg = str(exc) or exc.__class__.__name__
    try:
        sync.send(sock, Msg.ERROR, msg=msg)
    except OSError:
        pass


def join_namespaces(cfg, skip: tuple[str, ...] = ()) -> None:
    for kind in JOIN_ORDER:
        ns = cfg.namespace(kind)
        if ns is None or ns.path is None or kind in skip:
            continue
        try:
            fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                sc.setns(fd, NS_FLAGS[kind], f"{kind} namespace {ns.path}")
            finally:
                os.close(fd)
        except OSError as e:
            raise InitError(f"joining the {kind} namespace {ns.path}: {describe(e)}") from None


def new_namespace_flags(cfg, include_user: bool) -> int:
    flags = 0
    for ns in cfg.namespaces:
        if ns.path is None and (include_user or ns.type != "user"):
            flags |= NS_FLAGS[ns.type]
    return flags


def _detach_from_callers_signals() -> None:
    # A caller that stays attached (`run`) catches signals before it creates the
    # container (foreground.Attached.arm): its wakeup pipe is not init's to
    # write to, and until exec (which resets every disposition) init keeps
    # Python's own handlers, as when nothing was armed.
    if _signal.set_wakeup_fd(-1) == -1:
        return
    fg = sys.modules.get("dockyard.runtime.foreground")
    if fg is not None:
        fg.reset_in_child()
        _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)   # as the interpreter starts


def stage1(cfg, sock: socket.socket, opts: InitOptions) -> None:
    """Runs in the first child; never returns.

    Stage 2 is forked at once, before the container's cgroup even exists:
    the parent creates it and moves stage 2 into it (a slow write on cgroup
    v1, which waits for an RCU grace period) while stage 2 already builds the
    root filesystem. Only the cgroup namespace has to wait for that, so
    stage 2 unshares it itself once it is inside (as runc does).
    """
    try:
        _detach_from_callers_signals()
        sc.set_dumpable(False)
        join_namespaces(cfg)
        userns = cfg.namespace("user")
        if userns is not None and userns.path is None:
            sc.unshare(sc.CLONE_NEWUSER)
            sync.send(sock, Msg.USERNS)
            sync.expect(sock, Msg.USERNS_DONE, "user namespace")
        if userns is not None:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        sc.unshare(new_namespace_flags(cfg, include_user=False) & ~sc.CLONE_NEWCGROUP)
        pid = os.fork()
        if pid == 0:
            stage2(cfg, sock, opts)
        sync.send(sock, Msg.CHILD_PID, pid=pid)
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
        report_error(sock, e)
        os._exit(1)


def single_stage(cfg) -> bool:
    """Whether init can be forked without stage 1 (see :func:`fork_init`).

    A user namespace must be unshared before the others (they then belong to
    it) and waits for the parent to write its id maps; a time namespace only
    applies to children. Those cases keep stage 1. A PID namespace, new or
    joined by path (a Kubernetes pod's containers join the sandbox's), is
    entered by the runtime itself for its next child only."""
    return cfg.namespace("user") is None and cfg.namespace("time") is None


class PreparedNetns:
    """The new network namespace init will join, made on a thread meanwhile.

    Making a network namespace is the dearest part of unsharing (~1 ms here);
    on the single-stage path (see :func:`fork_init`) the runtime makes it on
    a thread of its own (``unshare`` moves only that thread; the thread ends
    at once) while it goes on preparing the container, and init joins it with
    ``setns`` instead of unsharing. Same owner (the runtime's user namespace,
    as init's own unshare), same fresh namespace."""

    def __init__(self) -> None:
        import _thread
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self._result: list = []
        _thread.start_new_thread(self._make, ())

    def _make(self) -> None:
        try:
            sc.unshare(sc.CLONE_NEWNET)
            self._result.append(os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
        except BaseException as e:  # noqa: BLE001 - raised by fd()
            self._result.append(e)
        finally:
            self._done.release()

    def fd(self) -> int:
        """An fd of the namespace (waits for the thread; raises what it raised)."""
        with self._done:
            r = self._result[0]
        if isinstance(r, BaseException):
            raise r
        return r

    def close(self) -> None:
        with self._done:
            r = self._result[0] if self._result else None
            if isinstance(r, int):
                os.close(r)
                self._result[0] = OSError("closed")


def prepare_netns(cfg) -> PreparedNetns | None:
    """Start making init's new network namespace if it gets one and there is no stage 1."""
    ns = cfg.namespace("network")
    if ns is None or ns.path is not None or not single_stage(cfg):
        return None
    return PreparedNetns()


def fork_init(cfg, sock: socket.socket, opts: InitOptions, close_in_child: int = -1,
              netns: PreparedNetns | None = None) -> int:
    """Fork the container's init directly into its PID namespace; its pid (caller side).

    Runs in the runtime's process (the parent): ``unshare(CLONE_NEWPID)`` and
    ``setns`` of a PID namespace change only the namespace of the caller's
    future children, so we unshare (or join the one given by path), fork, and
    ``setns`` our children's namespace back to our own before anything else
    can fork. ``close_in_child``: our end of the sync socket; ``netns``: the
    network namespace init joins (else it unshares one if the spec asks for it)."""
    netns_fd = netns.fd() if netns is not None else None
    pidns = cfg.namespace("pid")
    own = target = None
    if pidns is not None:
        own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if pidns is not None and pidns.path is not None:
            try:
                target = os.open(pidns.path, os.O_RDONLY | os.O_CLOEXEC)
                sc.setns(target, sc.CLONE_NEWPID, f"pid namespace {pidns.path}")
            except OSError as e:
                raise InitError(f"joining the pid namespace {pidns.path}: "
                                f"{describe(e)}") from None
        elif own is not None:
            sc.unshare(sc.CLONE_NEWPID)
        pid = os.fork()   # cgwarm's thread may still run: it holds no lock the child needs
        if pid == 0:  # pragma: no cover - runs in the child
            for fd in (own, target, close_in_child):
                if fd is not None and fd >= 0:
                    os.close(fd)
            _init_alone(cfg, sock, opts, netns_fd)
    finally:
        if target is not None:
            os.close(target)
        if own is not None:
            try:
                sc.setns(own, sc.CLONE_NEWPID, "the runtime's own pid namespace")
            finally:
                os.close(own)
    return pid


def _init_alone(cfg, sock: socket.socket, opts: InitOptions, netns_fd: int | None) -> None:
    """Stage 1's work for init itself (after :func:`fork_init`), then init; never returns."""
    try:
        _detach_from_callers_signals()
        sc.set_dumpable(False)
        join_namespaces(cfg, skip=("pid",))   # (forked into it)
        flags = new_namespace_flags(cfg, include_user=False) & ~(sc.CLONE_NEWCGROUP
                                                                 | sc.CLONE_NEWPID)
        if netns_fd is not None:
            sc.setns(netns_fd, sc.CLONE_NEWNET, "the new network namespace")
            os.close(netns_fd)
            flags &= ~sc.CLONE_NEWNET
        try:
            sc.unshare(flags)
        except OSError as e:
            raise InitError(f"creating namespaces: {describe(e)}") from None
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
        report_error(sock, e)
        os._exit(1)
    stage2(cfg, sock, opts)


def stage2(cfg, sock: socket.socket, opts: InitOptions) -> None:
    try:
        Init(cfg, sock, opts).run()
    except BaseException as e:  # noqa: BLE001
        report_error(sock, e)
    os._exit(1)


class Init:
    """The container's PID 1 until it execs the user's program."""

    def __init__(self, cfg, sock: socket.socket, opts: InitOptions) -> None:
        self.cfg = cfg
        self.proc = cfg.process
        self.sock = sock
        self.opts = opts
        self.view: rootfs.CgroupView | None = None
        self.in_cgroup = False
        self.rootfs = cfg.rootfs
        self.in_userns = cfg.namespace("user") is not None
        # no mount namespace (runc allows it): init only chroots into the root;
        # validation refused whatever would mount (spec._check_mount_namespace)
        self.own_mounts = cfg.namespace("mount") is not None
        self.state: dict = {}
        self.own_exe = (0, 0)
        self.exe_path = ""
        self.env: dict[str, str] = {}
        self.name_dir: int | None = None
        self.fd_dir: int | None = None     # our /proc/self/fd, when chrooted without /proc

    # Each step is a method; STEPS lists them in the order they run.

    def new_session(self) -> None:
        # A session of our own: the console (if any) must become the
        # controlling terminal of this session, not of the caller's. And a
        # session keyring of our own, so the container cannot use the keys
        # of whoever started the runtime (runc's --no-new-keyring opts out).
        os.setsid()
        if self.opts.keyring:
            try:
                sc.join_session_keyring(self.opts.keyring)
            except OSError as e:
                if e.errno not in (errno.ENOSYS, errno.EPERM, errno.EACCES):
                    raise

    def early_process_settings(self) -> None:
        # oom_score_adj and rlimits are set while the host's /proc is still
        # mounted, and before anything allocates on the container's behalf.
        process.set_oom_score_adj(self.proc.oom_score_adj)
        process.apply_rlimits(self.proc.rlimits)
        self.own_exe = process.self_exe_id()

    def preload(self) -> None:
        # After pivot_root the host's site-packages are gone: import now
        # whatever the later steps need.
        if self.cfg.seccomp:
            from . import seccomp  # noqa: F401
        if self.cfg.hooks.get("startContainer") or self.cfg.hooks.get("createContainer"):
            import subprocess  # noqa: F401
            from . import hooks  # noqa: F401

    def prepare_root(self) -> None:
        # Make our mount tree stop propagating to the host (rslave by
        # default), then make the rootfs a mount point so pivot_root accepts it.
        # (In a mount namespace joined by path this is done in that namespace,
        # as runc does.)
        if self.own_mounts:
            rootfs.prepare_root(self.rootfs, self.cfg.rootfs_propagation)

    def mounts(self) -> None:
        # In config order: later mounts may sit on earlier ones (/dev, /dev/pts).
        for m in self.cfg.mounts:
            if m.type in ("cgroup", "cgroup2"):
                self.cgroup_dirs()
            rootfs.mount_entry(m, self.rootfs, self.cfg.bundle, self.view)

    def cgroup_dirs(self) -> None:
        # The /sys/fs/cgroup mount needs the container's cgroup directories,
        # not our being in them: the parent says where they are as soon as it
        # has made them, and moves us in (GO) while we go on mounting.
        if self.view is not None:
            return
        msg = sync.expect(self.sock, Msg.CGROUP, "cgroup")
        view = msg.get("view")
        self.view = (rootfs.CgroupView(data=view) if view is not None
                     else rootfs.CgroupView(msg.get("dirs") or {}))

    def join_cgroup(self) -> None:
        # Wait until the parent has put us into the container's cgroup; only
        # then unshare the cgroup namespace, so that it is rooted at our cgroup.
        if self.in_cgroup:
            return
        self.cgroup_dirs()
        sync.expect(self.sock, Msg.GO, "cgroup")
        self.in_cgroup = True
        ns = self.cfg.namespace("cgroup")
        if ns is not None and ns.path is None:
            sc.unshare(sc.CLONE_NEWCGROUP)

    def devices(self) -> None:
        # After /dev is mounted (a tmpfs) and before pivot_root, because in a
        # user namespace the nodes are bind mounts of the host's devices.
        if self.own_mounts:
            rootfs.setup_dev(self.cfg, self.rootfs, self.in_userns)

    def create_cwd(self) -> None:
        # runc creates a missing working directory; best effort, inside the root.
        try:
            rootfs._mkdir_all(self.rootfs, rootfs.secure_join(self.rootfs, self.proc.cwd))
        except (OSError, rootfs.RootfsError):
            pass

    def runtime_hooks(self) -> None:
        # prestart and createRuntime hooks run in the runtime's namespace
        # (the parent), once our namespaces exist and before pivot_root.
        self.join_cgroup()
        if sync.hooks_exchange(self.cfg):
            sync.send(self.sock, Msg.HOOKS)
            self.state = sync.expect(self.sock, Msg.HOOKS_DONE, "hooks").get("state", {})

    def create_container_hooks(self) -> None:
        # createContainer hooks run in the container's namespaces, before pivot_root.
        if self.cfg.hooks.get("createContainer"):
            from . import hooks
            hooks.run("createContainer", self.cfg.hooks, self.state)

    def enter_root(self) -> None:
        # pivot_root, not chroot: the old root is detached entirely, so no
        # path (and no chroot escape) leads back to the host's filesystem.
        # Without a mount namespace there is nothing to pivot: chroot (runc's way).
        if not self.own_mounts:
            # the FIFO is reopened through our fd directory; the root may have no /proc
            if self.opts.fifo_fd is not None:
                self.fd_dir = os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            os.chdir(self.rootfs)
            os.chroot(".")
            os.chdir("/")
        elif self.opts.no_pivot:
            rootfs.move_root(self.rootfs)
        else:
            rootfs.pivot(self.rootfs)

    def console(self) -> None:
        # After pivot_root, so the pty comes from the container's own devpts
        # instance; its master goes to the console socket (runc's protocol).
        if not self.proc.terminal:
            return
        if self.opts.console_fd is None:
            raise RuntimeError("process.terminal is set but no console socket was given")
        setup_console(self.opts.console_fd, self.proc,
                      self.own_mounts and rootfs.needs_dev_setup(self.cfg))

    def readonly_root(self) -> None:
        # Late, because the steps before needed to create mount points and devices.
        if not self.own_mounts:
            return
        if self.cfg.readonly:
            rootfs.readonly_root()
        rootfs.set_shared_root(self.cfg.rootfs_propagation)

    def hostname(self) -> None:
        # In the container's uts namespace, new or joined by path (validation
        # insists on one; runc sets the name in a joined one too).
        if self.cfg.hostname:
            sc.sethostname(self.cfg.hostname)
        if self.cfg.domainname:
            sc.setdomainname(self.cfg.domainname)

    def sysctls(self) -> None:
        # Through the container's /proc, i.e. in its own net/ipc namespaces.
        rootfs.write_sysctls(self.cfg.sysctl)

    def readonly_paths(self) -> None:
        # After pivot_root and after sysctls (which write under /proc/sys).
        for p in self.cfg.readonly_paths:
            rootfs.readonly_path(p)

    def masked_paths(self) -> None:
        # After the read-only paths: a masked path may lie inside one.
        if not self.cfg.masked_paths:
            return
        null_fd = rootfs.open_dev_null()
        try:
            for p in self.cfg.masked_paths:
                rootfs.mask_path(p, null_fd)
        finally:
            os.close(null_fd)

    def no_new_privs(self) -> None:
        # Before seccomp: with it set, loading a filter needs no CAP_SYS_ADMIN.
        if self.proc.no_new_privileges:
            sc.set_no_new_privs()

    def exec_name_dir(self) -> None:
        # While we may still mount and before any seccomp profile: the private
        # directory the program is executed from under its own name.
        self.name_dir = process.name_dir()

    def ready(self) -> None:
        # The parent has recorded the state (status "created") and sends RUN
        # without waiting for READY; errors after this still reach `create`.
        sync.send(self.sock, Msg.READY)
        sync.expect(self.sock, Msg.RUN, "ready")

    def early_seccomp(self) -> None:
        # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which
        # the capability step may drop: load it before.
        if self.cfg.seccomp and not self.proc.no_new_privileges:
            load_seccomp(self.cfg.seccomp)

    def resolve_program(self) -> None:
        # Before the user switch and the FIFO, so `create` reports a missing
        # program (runc does the same).
        self.env = process.final_env(self.proc)
        self.exe_path = process.lookup(self.proc.args[0], self.env)
        process.guard_runtime_binary(self.exe_path, self.own_exe)

    def finalize(self) -> None:
        # Close leaked fds, chdir (verified inside the root), user and caps.
        keep = {self.sock.fileno()}
        if self.opts.fifo_fd is not None:
            keep.add(self.opts.fifo_fd)
        for fd in (self.name_dir, self.fd_dir):
            if fd is not None:
                keep.add(fd)
        process.finalize(self.proc, setgroups_allowed=True, n_preserved=self.opts.preserve_fds,
                         keep=keep)

    def init_done(self) -> None:
        # Closing the sync socket tells `create` that init succeeded.
        self.sock.close()

    def wait_for_start(self) -> None:
        # Blocks until `start` opens the FIFO for reading.
        if self.opts.fifo_fd is None:
            return
        if self.fd_dir is not None:
            fd = os.open(str(self.opts.fifo_fd), os.O_WRONLY | os.O_CLOEXEC, dir_fd=self.fd_dir)
            os.close(self.fd_dir)
            self.fd_dir = None
        else:
            fd = os.open(f"/proc/self/fd/{self.opts.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
        os.close(fd)
        os.close(self.opts.fifo_fd)

    def start_container_hooks(self) -> None:
        # After `start`, in the container, as its user: the spec's place for them.
        if self.cfg.hooks.get("startContainer"):
            from . import hooks
            hooks.run("startContainer", self.cfg.hooks, self.state)

    def late_seccomp(self) -> None:
        # With no_new_privs, as late as possible: fewer of our own syscalls
        # need to be allowed by the container's profile.
        if self.cfg.seccomp and self.proc.no_new_privileges:
            load_seccomp(self.cfg.seccomp)

    def exec(self) -> None:
        # execveat of the checked file: the user's program replaces us as PID 1.
        process.exec_program(self.exe_path, self.proc.args, self.env, self.own_exe,
                             named_in=self.name_dir)

    STEPS = ("new_session", "early_process_settings", "preload", "prepare_root", "mounts",
             "devices", "create_cwd", "runtime_hooks", "create_container_hooks", "enter_root",
             "console", "readonly_root", "hostname", "sysctls", "readonly_paths",
             "masked_paths", "no_new_privs", "exec_name_dir", "ready", "early_seccomp", "resolve_program",
             "finalize", "init_done", "wait_for_start", "start_container_hooks",
             "late_seccomp", "exec")

    def run(self) -> None:
        for name in self.STEPS:
            try:
                getattr(self, name)()
            except process.ProcessError as e:
                if name in ("resolve_program", "exec"):
                    raise    # "exec: ...": runc's (and dockerd's exit code's) words
                raise InitError(f"{STEP_WHAT[name]}: {e}") from None
            except sync.SyncError:
                raise
            except Exception as e:  # noqa: BLE001 - named, then reported to the parent
                raise InitError(f"{STEP_WHAT[name]}: {describe(e)}") from None


# What each step does, for errors: runc's "error during container init: <what>: <why>".
STEP_WHAT = {
    "new_session": "new session and session keyring",
    "early_process_settings": "oom_score_adj and rlimits",
    "preload": "loading the runtime's modules",
    "prepare_root": "making the root a private mount",
    "mounts": "mounting the config's mounts",
    "devices": "creating devices in /dev",
    "create_cwd": "creating the working directory",
    "runtime_hooks": "prestart/createRuntime hooks",
    "create_container_hooks": "createContainer hooks",
    "enter_root": "pivot_root into the root",
    "console": "setting up the console",
    "readonly_root": "making the root read-only",
    "hostname": "setting the hostname",
    "sysctls": "writing sysctls",
    "readonly_paths": "making readonlyPaths read-only",
    "masked_paths": "masking maskedPaths",
    "no_new_privs": "setting no_new_privs",
    "exec_name_dir": "the directory the program is executed from",
    "ready": "waiting for the runtime",
    "early_seccomp": "loading the seccomp profile",
    "resolve_program": "finding the program",
    "finalize": "closing fds, cwd, user and capabilities",
    "init_done": "reporting success",
    "wait_for_start": "waiting for start on the exec FIFO",
    "start_container_hooks": "startContainer hooks",
    "late_seccomp": "loading the seccomp profile",
    "exec": "executing the program",
}


class InitError(Exception):
    """A step of init failed; the message names it (sent to the parent as is)."""

    def __str__(self) -> str:
        return f"error during container init: {self.args[0]}"


def describe(e: BaseException) -> str:
    """An exception as words: ``OSError``'s text without ``[Errno N]``, with its path."""
    if isinstance(e, OSError) and e.strerror:
        text = e.strerror
        if e.filename is not None and str(e.filename) not in text:
            text = f"{e.filename}: {text}"
        return text
    return str(e) or e.__class__.__name__


def load_seccomp(profile: dict) -> None:
    from . import seccomp
    seccomp.load_filter(profile)


def setup_console(console_fd: int, proc, bind_console: bool) -> None:
    """Open a pty in the container, send its master, make the slave our tty."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    sc.ioctl_int(master, sc.TIOCSPTLCK, 0)
    slave_path = f"/dev/pts/{sc.ioctl_int(master, sc.TIOCGPTN)}"
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.fchown(slave, proc.user.uid, -1)
    except OSError:
        pass
    if proc.console_size and all(proc.console_size):
        import struct
        sc.set_winsize(slave, struct.pack("HHHH", proc.console_size[0], proc.console_size[1],
                                          0, 0))
    if bind_console:
        if not os.path.lexists("/dev/console"):
            os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        sc.mount(slave_path, "/dev/console", None, sc.MS_BIND)
    s = socket.socket(fileno=console_fd)
    try:
        sync.send_fd(s, master, slave_path)
    finally:
        s.close()
        os.close(master)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
    sc.set_controlling_tty(0)
