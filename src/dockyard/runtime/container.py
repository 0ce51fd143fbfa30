"""The container lifecycle seen from the runtime command (the parent side).

``create`` validates the bundle first and creates nothing before that; then
state directory, cgroup, exec FIFO, and the forked stages (see ``init``). Any
failure afterwards undoes everything that was made: processes killed and
reaped, cgroup removed, state directory removed.

The runtime process makes itself a child subreaper before forking, so the
container's init (orphaned when stage 1 exits) is reparented to us; when
``create`` exits it moves on to *our* caller's subreaper — containerd's shim,
dockerd's, or the Dockyard supervisor — exactly as with runc.
"""

from __future__ import annotations

from dockyard.runtime import fastos as os
import _signal as signal  # not `signal`: it builds enums at import
import _socket as socket  # the C module: `socket` costs ~8 ms of enum setup
import time
from .record import record

from dockyard.errors import Conflict, DockyardError, NotFound

from . import spec as specmod
from . import state as statemod
from .state import Store


class RuntimeError_(DockyardError):
    """A lifecycle operation failed; the message is user-facing."""


@record
class CreateOptions:
    bundle: str = "."
    pid_file: str | None = None
    console_socket: str | None = None
    console_fd: int | None = None       # already-connected socket (run in the foreground)
    no_pivot: bool = False
    no_new_keyring: bool = False
    preserve_fds: int = 0
    raw_config: dict | None = None      # <bundle>/config.json as already read by the caller
    # `run`: the start follows at once, so open the FIFO's reading end before
    # init gets to it (init then goes on to exec without waiting for `start`)
    start_at_once: bool = False


# Devices runc always allows on top of the spec's rules: creating any node
# (mknod, not using it), and the default /dev entries a container gets.
ALWAYS_ALLOWED_DEVICES = (
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    *({"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
      for ma, mi in ((1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9), (5, 1), (5, 2), (10, 200))),
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
)


def with_default_devices(resources: dict | None) -> dict | None:
    if not resources or "devices" not in resources:
        return resources
    out = dict(resources)
    out["devices"] = [*resources["devices"], *ALWAYS_ALLOWED_DEVICES]
    return out


def _cgroups():
    from . import cgroups
    return cgroups


def _write_atomic(path: str, text: str) -> None:
    path = os.path.abspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _host_id(maps, cid: int) -> int | None:
    for m in maps:
        if m.container_id <= cid < m.container_id + m.size:
            return m.host_id + cid - m.container_id
    return None


def _write_id_maps(pid: int, cfg) -> None:
    for name, maps in (("uid_map", cfg.uid_mappings), ("gid_map", cfg.gid_mappings)):
        text = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)
        except OSError as e:
            raise RuntimeError_(f"writing {name} {text.strip()!r}: {e.strerror}") from None


def _connect_console(path: str) -> int:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise RuntimeError_(f"connecting to console socket {path}: {e.strerror}") from None
    return s.detach()


def _raise_child_error(sock) -> None:
    """If init reported an error (and exited), raise it; return if it said nothing."""
    import select
    from . import sync
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    if not poller.poll(1000):
        return
    try:
        msg = sync.recv(sock)
    except OSError:
        return
    if msg is None:
        raise RuntimeError_("container init exited unexpectedly")
    if msg.get("type") == sync.Msg.ERROR:
        raise RuntimeError_(msg.get("msg", "unknown error"))


def hook_state(cid: str, status: str, pid: int, cfg) -> dict:
    return {"ociVersion": cfg.oci_version, "id": cid, "status": status, "pid": pid,
            "bundle": cfg.bundle, "annotations": cfg.annotations}


class _Undo:
    """What create made so far, undone in reverse on failure."""

    def __init__(self) -> None:
        self.steps: list = []

    def push(self, fn) -> None:
        self.steps.append(fn)

    def run(self) -> None:
        for fn in reversed(self.steps):
            try:
                fn()
            except Exception:
                pass


def _kill_and_reap(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


class Runtime:
    def __init__(self, root: str | None = None) -> None:
        self.store = Store(root)
        self._readers: dict[str, int] = {}     # id -> FIFO reading end (start_at_once)

    # ------------------------------------------------------------ create

    def create(self, cid: str, opts: CreateOptions) -> dict:
        """Create the container; return its state as saved. Init waits on the FIFO."""
        specmod.validate_id(cid)
        cfg = specmod.load(opts.bundle, opts.raw_config)
        if cfg.process.terminal and opts.console_socket is None and opts.console_fd is None:
            raise specmod.ConfigError("process.terminal needs --console-socket when detached")
        if self.store.exists(cid):
            raise Conflict(f"container with id {cid!r} already exists")
        from . import init, sync  # noqa: F401  (loads syscalls/ctypes)
        netns = init.prepare_netns(cfg)   # made on a thread while we prepare the rest
        try:
            return self._create(cid, cfg, opts, netns)
        finally:
            if netns is not None:
                netns.close()

    def _create(self, cid: str, cfg, opts: CreateOptions, netns) -> dict:
        from . import init
        from . import syscalls as sc
        if cfg.seccomp:   # compile now: libseccomp is unreachable after pivot_root
            from . import seccomp
            seccomp.prepare(cfg.seccomp, cache_dir=self.store.root)

        undo = _Undo()
        procs: list[int] = []
        # opened before the fork: after it, every first write to a shared page
        # is a copy, and the parent's part is what init waits for
        mgr = _cgroups().open_manager(cfg.cgroups_path, cid)
        try:
            self.store.create_dir(cid)
            undo.push(lambda: self.store.remove(cid))
            undo.push(mgr.destroy)
            undo.push(lambda: _kill_and_reap([*procs, *mgr.pids()]))
            fifo_fd = self._make_fifo(cid, cfg)
            console_fd = opts.console_fd
            if console_fd is None and cfg.process.terminal:
                console_fd = _connect_console(opts.console_socket)
            sc.set_child_subreaper()
            iopts = init.InitOptions(fifo_fd=fifo_fd, console_fd=console_fd,
                                     no_pivot=opts.no_pivot, preserve_fds=opts.preserve_fds,
                                     keyring=None if opts.no_new_keyring else f"_ses.{cid}")
            state = self._spawn(cfg, cid, mgr, iopts, procs, netns, opts.start_at_once)
            os.close(fifo_fd)
            if console_fd is not None and opts.console_fd is None:
                os.close(console_fd)
        except BaseException:
            undo.run()
            raise
        return state

    def _make_fifo(self, cid: str, cfg) -> int:
        path = self.store.fifo(cid)
        os.mkfifo(path, 0o622)
        os.chmod(path, 0o622)
        uid = _host_id(cfg.uid_mappings, 0) if cfg.uid_mappings else 0
        gid = _host_id(cfg.gid_mappings, 0) if cfg.gid_mappings else 0
        os.chown(path, uid or 0, gid or 0)
        return os.open(path, os.O_PATH | os.O_CLOEXEC)

    def _spawn(self, cfg, cid: str, mgr, iopts, procs: list[int], netns=None,
               start_at_once: bool = False) -> dict:
        from . import init, sync
        parent, child = sync.pair()
        c1 = pid = None
        try:
            if init.single_stage(cfg):
                pid = init.fork_init(cfg, child, iopts, close_in_child=parent.fileno(),
                                     netns=netns)
                if pid == 0:  # pragma: no cover - a child that got here failed to exit
                    os._exit(1)
                procs.append(pid)
            else:
                c1 = os.fork()   # cgwarm's thread may still run: it holds no lock the child needs
                if c1 == 0:  # pragma: no cover - runs in the child
                    parent.close()
                    init.stage1(cfg, child, iopts)
                procs.append(c1)
        finally:
            child.close()
        try:
            return self._talk(cfg, cid, mgr, parent, c1, pid, procs, start_at_once)
        except sync.SyncError as e:
            raise RuntimeError_(str(e)) from None
        finally:
            parent.close()

    def _talk(self, cfg, cid: str, mgr, sock, c1: int | None, pid: int | None,
              procs: list[int], start_at_once: bool = False) -> dict:
        """The parent's side of the sync protocol; ``c1`` is stage 1 (None when
        init was forked directly, see ``init.fork_init``; then ``pid`` is init)."""
        from . import sync
        from .sync import Msg
        # while the stages create namespaces and start on the rootfs
        mgr.create()
        from .rootfs import CgroupView
        dirs = mgr.dirs_by_mountpoint()
        # init's view of the cgroup mounts, made here: init is busy mounting
        cgroup_msg = {"dirs": dirs, "view": CgroupView(dirs).to_data()}
        if c1 is None:   # init reads it at its cgroup mount; stage 1 would take it
            self._send_or_child_error(sock, Msg.CGROUP, cgroup_msg)
        # recorded at once, so that `delete --force` can clean up after a
        # create that was itself killed half-way
        self.store.save(cid, {"ociVersion": cfg.oci_version, "id": cid, "status": "creating",
                              "pid": 0, "bundle": cfg.bundle, "annotations": cfg.annotations,
                              "dockyard": {"cgroup": mgr.to_dict()}})
        # before init is moved in: v1 device rules go through "deny all" on their
        # way to the allowed set, and init opens devices (the console) meanwhile
        mgr.apply(with_default_devices(cfg.resources))
        while c1 is not None:
            msg = sync.recv(sock)
            if msg is None:
                raise RuntimeError_("container init exited unexpectedly")
            if msg["type"] == Msg.ERROR:
                raise RuntimeError_(msg.get("msg", "unknown error"))
            if msg["type"] == Msg.USERNS:
                _write_id_maps(c1, cfg)
                sync.send(sock, Msg.USERNS_DONE)
            elif msg["type"] == Msg.CHILD_PID:
                pid = msg["pid"]
                procs.append(pid)
                os.waitpid(c1, 0)
                procs.remove(c1)
                break
        if c1 is not None:
            self._send_or_child_error(sock, Msg.CGROUP, cgroup_msg)
        try:
            mgr.add(pid)
            sync.send(sock, Msg.GO)
        except (OSError, DockyardError):
            _raise_child_error(sock)   # init failed before it could be placed: say why
            raise
        from . import cgwarm
        cgwarm.stop(wait=False)   # init goes on at once (hooks, READY): do not sleep on it
        st = statemod.proc_stat(pid)
        starttime = st[1] if st else 0
        import select  # noqa: F401  (start's; imported while init works, not after)
        if sync.hooks_exchange(cfg):
            sync.expect(sock, Msg.HOOKS, "hooks")
            if cfg.hooks.get("prestart") or cfg.hooks.get("createRuntime"):
                from . import hooks
                hstate = hook_state(cid, "creating", pid, cfg)
                try:
                    hooks.run("prestart", cfg.hooks, hstate)
                    hooks.run("createRuntime", cfg.hooks, hstate)
                except hooks.HookError as e:
                    raise RuntimeError_(str(e)) from None
            sync.send(sock, Msg.HOOKS_DONE, state=hook_state(cid, "created", pid, cfg))
        # saved while init pivots and masks; a failure after this undoes it
        state = self._save_created(cid, cfg, mgr, pid, starttime)
        # our part is done (resources, hooks, state): RUN need not wait for
        # READY, init finds it queued when it gets there
        self._send_or_child_error(sock, Msg.RUN, {})
        sync.expect(sock, Msg.READY, "ready")
        reader = None
        if start_at_once:
            reader = os.open(self.store.fifo(cid), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            msg = sync.recv(sock)
            if msg is not None:
                raise RuntimeError_(msg.get("msg", f"unexpected message {msg!r}"))
        except BaseException:
            if reader is not None:
                os.close(reader)
            raise
        if reader is not None:
            self._readers[cid] = reader
        return state

    @staticmethod
    def _send_or_child_error(sock, kind: str, payload: dict) -> None:
        from . import sync
        try:
            sync.send(sock, kind, **payload)
        except OSError:
            _raise_child_error(sock)   # init is gone: its own error says why
            raise

    def _save_created(self, cid: str, cfg, mgr, pid: int, starttime: int) -> dict:
        state = {"ociVersion": cfg.oci_version, "id": cid, "status": "created", "pid": pid,
                 "bundle": cfg.bundle, "annotations": cfg.annotations,
                 "dockyard": {"cgroup": mgr.to_dict(), "created": statemod.now_rfc3339(),
                              "rootfs": cfg.rootfs, "starttime": starttime,
                              "owner_uid": os.getuid(), "spec": cfg.raw}}
        self.store.save(cid, state)
        # after state.json: the launcher's sh fast path serves kill/delete/state from it
        from . import fastfile
        fastfile.write(self.store.dir(cid), state, mgr, statemod.state_doc(state, "created", pid))
        return state

    # ------------------------------------------------------------- start

    def start(self, cid: str, state: dict | None = None) -> None:
        """Let a created container's init exec the user's program. ``state``:
        what ``create`` returned, if the caller has it (not read back)."""
        st = self.store.load(cid) if state is None else dict(state)
        reader = self._readers.pop(cid, None)
        # created with start_at_once: released already, maybe even exited
        status = "created" if reader is not None else statemod.status(self.store, st)
        if status != "created":
            if status == "stopped":
                raise RuntimeError_("cannot start a container that has stopped")
            raise RuntimeError_(f"cannot start an already {status} container")
        self._release(cid, st, reader)
        st["status"] = "running"
        self.store.save(cid, st)
        spec_raw = st["dockyard"].get("spec", {})
        if (spec_raw.get("hooks") or {}).get("poststart"):
            from . import hooks
            poststart = hooks.from_spec(spec_raw)
            hstate = statemod.oci_state(self.store, st)
            hstate.update(status="running", pid=st["pid"])   # even if it already exited
            hooks.run("poststart", poststart, hstate)

    def forget_reader(self, cid: str) -> None:
        """Close the FIFO reader ``create`` kept for ``start`` (start_at_once), if any."""
        reader = self._readers.pop(cid, None)
        if reader is not None:
            os.close(reader)

    def _release(self, cid: str, st: dict, reader: int | None = None) -> None:
        """Open the FIFO for reading (``reader``: opened already): init's blocked
        open completes, it writes a byte."""
        import select
        path = self.store.fifo(cid)
        fd = reader if reader is not None else os.open(
            path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while not poller.poll(100):
                if not statemod.pid_alive(st["pid"], st["dockyard"].get("starttime")):
                    raise RuntimeError_("container init exited before start")
            if os.read(fd, 1) != b"0":
                raise RuntimeError_("container init exited before start")
        finally:
            os.close(fd)
        os.unlink(path)

    # ------------------------------------------------------ state queries

    def state(self, cid: str) -> dict:
        return statemod.oci_state(self.store, self.store.load(cid))

    def list(self) -> list[dict]:
        out = []
        for cid in self.store.ids():
            try:
                out.append(self.state(cid))
            except DockyardError:
                continue
        return out

    def manager(self, st: dict):
        cg = (st.get("dockyard") or {}).get("cgroup")
        return _cgroups().manager_from_dict(cg) if cg else None

    def pids(self, cid: str) -> list[int]:
        st = self.store.load(cid)
        mgr = self.manager(st)
        return mgr.pids() if mgr else []

    # ----------------------------------------------------- kill & delete

    def kill(self, cid: str, sig: int, all_procs: bool = False) -> None:
        st = self.store.load(cid)
        status = statemod.status(self.store, st)
        if all_procs:
            mgr = self.manager(st)
            if mgr is not None:
                mgr.kill_all(sig)
                return
        if status in ("stopped", "creating"):
            raise RuntimeError_("container not running")
        try:
            os.kill(st["pid"], sig)
        except ProcessLookupError:
            raise RuntimeError_("container not running") from None

    def delete(self, cid: str, force: bool = False, state: dict | None = None) -> None:
        """Remove the container (``force``: kill it first). ``state``: its saved
        state, if the caller has it (`run` does; not read back)."""
        try:
            st = self.store.load(cid) if state is None else state
        except NotFound:
            if force:
                return
            raise
        status = statemod.status(self.store, st)
        if status in ("running", "paused") and not force:
            raise RuntimeError_(f"cannot delete container {cid} that is not stopped: {status}")
        mgr = self.manager(st)
        self._stop_everything(st, mgr, status)
        if mgr is not None:
            mgr.destroy()
        spec_raw = (st.get("dockyard") or {}).get("spec") or {}
        if (spec_raw.get("hooks") or {}).get("poststop"):
            from . import hooks
            ostate = statemod.oci_state(self.store, st)
            ostate["status"] = "stopped"
            hooks.run("poststop", hooks.from_spec(spec_raw), ostate)
        self.store.remove(cid)

    def _stop_everything(self, st: dict, mgr, status: str) -> None:
        alive = status not in ("stopped", "creating")
        if alive:
            try:
                os.kill(st["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        if mgr is not None:
            signalled = mgr.kill_all(signal.SIGKILL)
            if status == "paused":
                mgr.thaw()
            if signalled is False and not alive:
                return          # init gone and nothing left in the cgroup
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            busy = statemod.pid_alive(st.get("pid", 0), st.get("dockyard", {}).get("starttime"))
            live = [p for p in (mgr.pids() if mgr else []) if statemod.pid_alive(p, None)]
            if not busy and not live:
                return
            self._reap()
            time.sleep(0.01)
        raise RuntimeError_("container processes did not exit after SIGKILL")

    @staticmethod
    def _reap() -> None:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass

    # ---------------------------------------------------- pause & resume

    def pause(self, cid: str) -> None:
        st = self.store.load(cid)
        if statemod.status(self.store, st) not in ("running", "created"):
            raise RuntimeError_("container not running")
        self.manager(st).freeze()

    def resume(self, cid: str) -> None:
        st = self.store.load(cid)
        if statemod.status(self.store, st) != "paused":
            raise RuntimeError_("container not paused")
        self.manager(st).thaw()
