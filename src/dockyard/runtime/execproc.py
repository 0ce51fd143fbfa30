"""`exec`: start another process inside a running container.

The runtime opens the container init's namespace files (/proc/<pid>/ns/*),
forks a non-dumpable child that joins them (user first, mount last) after
the parent put it into the container's cgroup, and that child forks again
so the final process is inside the PID namespace. The final process applies
the container's no_new_privs, seccomp profile, user and capabilities (from
the saved spec, overridden by the exec options), closes every host fd,
changes to its cwd and execs. The sync socket is close-on-exec, so EOF
tells the runtime the program is running; an ERROR message tells it why not.
"""

from __future__ import annotations

from dockyard.runtime import fastos as os
import _socket as socket  # the C module: `socket` costs ~8 ms of enum setup
from .record import Factory, record

from dockyard.errors import InvalidParameter

from . import sync
from .sync import Msg

NS_ORDER = (("user", "user"), ("ipc", "ipc"), ("uts", "uts"), ("net", "network"),
            ("pid", "pid"), ("cgroup", "cgroup"), ("mnt", "mount"))


@record
class ExecOptions:
    process_file: str | None = None
    args: list[str] = Factory(list)
    cwd: str | None = None
    env: list[str] = Factory(list)
    tty: bool = False
    user: str | None = None
    additional_gids: list[int] = Factory(list)
    caps: list[str] = Factory(list)
    no_new_privs: bool = False
    detach: bool = False
    pid_file: str | None = None
    console_socket: str | None = None
    preserve_fds: int = 0


def build_process(spec_raw: dict, o: ExecOptions) -> dict:
    """The OCI process object for the exec, from --process or the options."""
    if o.process_file:
        import json
        try:
            with open(o.process_file) as f:
                proc = json.load(f)
        except (OSError, ValueError) as e:
            raise InvalidParameter(f"reading process file {o.process_file}: {e}") from None
        if not isinstance(proc, dict):
            raise InvalidParameter(f"process file {o.process_file} must hold a JSON object")
        return proc
    if not o.args:
        raise InvalidParameter("exec: no command given (args after the container id or --process)")
    base = spec_raw.get("process") or {}
    # runc's exec without --process starts from the container's process: its rlimits too
    proc = {k: base[k] for k in ("env", "user", "capabilities", "noNewPrivileges", "cwd",
                                 "apparmorProfile", "rlimits") if k in base}
    proc["args"] = list(o.args)
    proc["terminal"] = o.tty
    env = list(proc.get("env") or [])
    for e in o.env:
        key = e.split("=", 1)[0]
        env = [x for x in env if x.split("=", 1)[0] != key] + [e]
    proc["env"] = env
    if o.cwd:
        proc["cwd"] = o.cwd
    if o.user:
        uid, _, gid = o.user.partition(":")
        try:
            proc["user"] = {"uid": int(uid), "gid": int(gid) if gid else 0}
        except ValueError:
            raise InvalidParameter(f"--user {o.user!r}: expected uid[:gid] numbers") from None
    if o.additional_gids:
        proc.setdefault("user", {})["additionalGids"] = list(o.additional_gids)
    if o.caps:
        c = {k: list(v) for k, v in (proc.get("capabilities") or {}).items()}
        for name in o.caps:
            for s in ("bounding", "effective", "permitted"):
                if name not in c.setdefault(s, []):
                    c[s].append(name)
        proc["capabilities"] = c
    if o.no_new_privs:
        proc["noNewPrivileges"] = True
    return proc


def open_namespaces(pid: int) -> list[tuple[str, int]]:
    """fds of the container's namespaces that differ from ours, in join order."""
    out = []
    for name, _kind in NS_ORDER:
        path = f"/proc/{pid}/ns/{name}"
        try:
            theirs = os.stat(path).st_ino
            ours = os.stat(f"/proc/self/ns/{name}").st_ino
        except FileNotFoundError:
            continue
        if theirs != ours:
            out.append((name, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
    return out


def run_exec(st: dict, o: ExecOptions, mgr, console_fd: int | None) -> int:
    """Start the process; return its pid (it has exec'd when this returns)."""
    from . import caps, foreground, init, process, rootfs  # noqa: F401  (import before entering)
    from . import spec as specmod
    from . import syscalls as sc
    spec_raw = st["dockyard"].get("spec") or {}
    raw_proc = build_process(spec_raw, o)
    proc = specmod._process(raw_proc)
    problem = _check(proc)
    if problem:
        raise InvalidParameter(problem)
    seccomp_profile = (spec_raw.get("linux") or {}).get("seccomp")
    if seccomp_profile:
        from . import seccomp
        seccomp.prepare(seccomp_profile)
    own = process.self_exe_id()
    ns_fds = open_namespaces(st["pid"])
    root_fd = None
    if not any(n == "mnt" for n, _ in ns_fds):
        # a container without a mount namespace of its own: chrooted into its root
        root_fd = os.open(f"/proc/{st['pid']}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        ns_fds.append(("root", root_fd))
    sc.set_child_subreaper()
    parent, child = sync.pair()
    x = os.fork()
    if x == 0:  # pragma: no cover - child
        parent.close()
        _stage1(child, ns_fds, proc, seccomp_profile, console_fd, o.preserve_fds, own)
    child.close()
    for _n, fd in ns_fds:
        os.close(fd)
    try:
        if mgr is not None:
            mgr.add(x)
        sync.send(parent, Msg.GO)
        msg = sync.expect(parent, Msg.CHILD_PID, "exec")
        pid = msg["pid"]
        os.waitpid(x, 0)
        done = sync.recv(parent)
        if done is not None:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            raise InvalidParameter(done.get("msg", "exec failed"))
        return pid
    except sync.SyncError as e:
        raise InvalidParameter(str(e)) from None
    finally:
        parent.close()


def _check(proc) -> str | None:
    from . import spec as specmod
    fake = specmod.Config(bundle="", oci_version="1", rootfs="/", readonly=False, process=proc,
                          hostname=None, domainname=None, mounts=(), hooks={}, annotations={},
                          namespaces=(), uid_mappings=(), gid_mappings=(), devices=(),
                          cgroups_path=None, resources=None, sysctl={}, seccomp=None,
                          rootfs_propagation="", masked_paths=(), readonly_paths=(), raw={})
    for check in (specmod._check_process, specmod._check_capabilities, specmod._check_rlimits):
        p = check(fake)
        if p:
            return p
    return None


def _stage1(sock: socket.socket, ns_fds, proc, seccomp_profile, console_fd, n_preserved,
            own: tuple[int, int]) -> None:
    from . import init
    from . import syscalls as sc
    try:
        sc.set_dumpable(False)
        from .foreground import reset_in_child
        reset_in_child()
        root_fd = None
        for name, fd in ns_fds:       # while the parent adds us to the cgroup
            if name == "root":
                root_fd = fd
                continue
            sc.setns(fd, 0, f"{name} namespace")
            os.close(fd)
        if root_fd is not None:
            os.fchdir(root_fd)
            os.chroot(".")
            os.close(root_fd)
        sync.expect(sock, Msg.GO, "exec")
        pid = os.fork()
        if pid == 0:
            _stage2(sock, proc, seccomp_profile, console_fd, n_preserved,
                    joined_user=any(n == "user" for n, _ in ns_fds), own=own)
        sync.send(sock, Msg.CHILD_PID, pid=pid)
        os._exit(0)
    except BaseException as e:  # noqa: BLE001
        init.report_error(sock, e)
        os._exit(1)


def _stage2(sock, proc, seccomp_profile, console_fd, n_preserved, joined_user: bool,
            own: tuple[int, int]) -> None:
    from . import init, process
    from . import syscalls as sc
    try:
        if proc.terminal:
            os.setsid()
        if joined_user:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        os.chdir("/")
        if proc.terminal:
            if console_fd is None:
                raise RuntimeError("--tty needs --console-socket when detached")
            init.setup_console(console_fd, proc, bind_console=False)
        process.apply_rlimits(proc.rlimits)
        name_dir = process.name_dir()      # before seccomp, while we may mount
        if proc.no_new_privileges:
            sc.set_no_new_privs()
        if seccomp_profile and not proc.no_new_privileges:
            init.load_seccomp(seccomp_profile)
        env = process.final_env(proc)
        path = process.lookup(proc.args[0], env)
        process.guard_runtime_binary(path, own)
        keep = {sock.fileno()}
        if name_dir is not None:
            keep.add(name_dir)
        process.finalize(proc, setgroups_allowed=True, n_preserved=n_preserved, keep=keep)
        if seccomp_profile and proc.no_new_privileges:
            init.load_seccomp(seccomp_profile)
        process.exec_program(path, proc.args, env, own, named_in=name_dir)
    except BaseException as e:  # noqa: BLE001
        init.report_error(sock, e)
    os._exit(1)
