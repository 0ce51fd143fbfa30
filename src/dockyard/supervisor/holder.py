"""The supervisor's holder: a tiny parent that keeps what a killed supervisor would lose.

A supervisor killed with SIGKILL takes with it the last open descriptor of an exited
container's output FIFO (its buffered lines), every tty's pty master (the container's
terminal hangs up) and every stdin pipe, and the wait statuses of its children (a
replacement is not their parent: no status, only a pidfd). The holder is the
supervisor's parent and a child subreaper: when the supervisor dies, its containers
are reparented to the holder, which reaps them and records each exit in
``tasks/<id>/exit`` (``<code> <finished ns>``, written atomically); and the
supervisor gives it a duplicate of each task's descriptors, which it keeps and
hands to the next supervisor. It starts that replacement itself (the supervisor is
its child, so the replacement's containers are the holder's grandchildren too).

One holder outlives supervisor generations: containers adopted from a killed
supervisor stay the holder's children (a process is never reparented to a new
supervisor), so the holder that reaps them must be the one that outlives it.

It does nothing else: no asyncio, no JSON, a few C modules (started ``-I -S``).
It ends with its supervisor when that one exits cleanly (SIGTERM, shutdown: what
was held is dropped, as a stopped supervisor drops it), or when it is killed and
nothing is held; SIGTERM to the holder is passed to the supervisor. A second
holder for the same root finds the lock taken, asks the first (SIGUSR1) to start
a supervisor now if none runs, and exits.

SIGHUP reloads the supervisor in place (an upgrade: ``dockyard supervisor --reload``,
``systemctl reload``): the holder sends it SIGTERM and, when it has exited (cleanly
or not: SIGKILL after RELOAD_KILL_AFTER), starts a new one at once, keeping what it
holds meanwhile; with no supervisor running (a back-off), it starts one now. The
new supervisor is a new interpreter, so it runs the code now on disk; the holder
keeps running the code it started with (upgrading the holder itself needs a full
stop). A SIGTERM or SIGINT during a reload stops both, as at any other time.

Protocol, on a SOCK_SEQPACKET socketpair (the supervisor's ``--holder-fd``): one
message per packet, ASCII words separated by spaces, descriptors attached with
SCM_RIGHTS in the order of the names.
  supervisor -> holder
    hold <task> <pid> <name>...    keep these (replacing what is held under a name);
                                   pid 0: not a process of ours, keep the fds only
    drop <task> <name>...          close those
    release <task>                 forget the task
  holder -> supervisor
    held <task> <pid> <code|-> <finished ns|-> <name>...   once per held task, at start
    ready                                                   end of that list
    exit <task> <code> <finished ns>                        a held task's pid was reaped
Names: ``stdout``/``stderr`` (the output FIFOs' reading ends; a logged tty's
``stdout`` is the reading end of the pipe its master is spliced into, ``relay`` that
pipe's writing end), ``stdin`` (the stdin pipe's writing end), ``pty`` (a tty's master).
"""

import _ctypes
import _signal
import _socket
import fcntl
import os
import select
import sys
import time

NAMES = ("stdout", "stderr", "stdin", "pty", "relay")
MAX_FDS = 8
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NAME = 15
RESTART_MAX_DELAY = 30.0
STABLE_AFTER = 10.0      # a supervisor that lived this long restarts at once
SEND_TIMEOUT = 10.0
RELOAD_KILL_AFTER = 10.0   # a supervisor that has not stopped this long after a reload's SIGTERM


def argv(root: str, extra: list | tuple = ()) -> list:
    """The holder's command line for a supervisor of ``root``: this interpreter
    without ``site`` and isolated, with only our package's directory added."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (f"import sys; sys.path.append({here!r}); "
            "from dockyard.supervisor.holder import main; raise SystemExit(main(sys.argv[1:]))")
    return [sys.executable, "-I", "-S", "-c", code, "--root", root, *extra]


def cli_main(args: list) -> int:
    """``dockyard supervisor ...``: become the holder (same pid, for systemd); with
    ``--reload``, have the running holder start a new supervisor (supervisor/reload.py)."""
    reload = "--reload" in args
    root, extra = _parse([a for a in args if a != "--reload"])
    if root is None:
        return 2
    if reload:
        if "--log-level" in extra:
            _log("error", "--log-level is the running holder's: not taken with --reload")
            return 2
        from dockyard.supervisor.reload import reload as reload_supervisor

        sock = extra[extra.index("--socket") + 1] if "--socket" in extra else None
        return reload_supervisor(root, sock)
    a = argv(root, extra)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(a[0], a)


def _parse(args: list):
    root, extra = None, []
    it = iter(args)
    for a in it:
        key, eq, val = a.partition("=")
        if key in ("--root", "--socket", "--log-level"):
            if not eq:
                val = next(it, None)
            if val is None:
                _log("error", f"{key} needs a value")
                return None, []
            if key == "--root":
                root = val
            else:
                extra += [key, val]
        elif a in ("-h", "--help"):
            sys.stdout.write("usage: dockyard supervisor --root DIR [--socket PATH] "
                             "[--log-level LEVEL]\n"
                             "       dockyard supervisor --root DIR [--socket PATH] --reload\n"
                             "  --reload: the running holder of DIR starts a new supervisor "
                             "(new code, same containers)\n")
            return None, []
        else:
            _log("error", f"unknown argument {a!r}")
            return None, []
    if root is None:
        _log("error", "--root is required")
    return root, extra


def _log(level: str, msg: str) -> None:
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} holder {level.upper()} {msg}\n"
    try:
        os.write(2, line.encode(errors="replace"))
    except OSError:
        pass


def _valid_id(task: str) -> bool:
    return 0 < len(task) <= 128 and task.replace("-", "").replace("_", "").isalnum() \
        and task.isascii()


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _set_subreaper() -> None:
    class c_int(_ctypes._SimpleCData):
        _type_ = "i"

    class Function(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = c_int

    prctl = Function(("prctl", _Lib(_ctypes.dlopen(None, _ctypes.RTLD_LOCAL))))
    if prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(_ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    prctl(PR_SET_NAME, b"dockyard-holder", 0, 0, 0)   # for ps/top (the command line is python's)


class _Lib:
    def __init__(self, handle: int) -> None:
        self._handle = handle


def _pack_fds(fds: list) -> list:
    if not fds:
        return []
    data = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
    return [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, data)]


def _unpack_fds(anc) -> list:
    fds = []
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            for i in range(0, len(data) - len(data) % 4, 4):
                fds.append(int.from_bytes(data[i:i + 4], sys.byteorder, signed=True))
    return fds


def recv(sock) -> tuple:
    """One packet: (words, fds); ([], []) at end of file. The fds are close-on-exec."""
    data, anc, _flags, _addr = sock.recvmsg(4096, _socket.CMSG_SPACE(4 * MAX_FDS),
                                            _socket.MSG_CMSG_CLOEXEC)
    return data.decode("ascii", "replace").split(), _unpack_fds(anc)


def send(sock, words: list, fds: list = ()) -> None:
    sock.sendmsg([" ".join(str(w) for w in words).encode()], _pack_fds(list(fds)))


def _close(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class Held:
    __slots__ = ("pid", "fds", "exit")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fds: dict = {}
        self.exit = None          # (code, finished ns) once reaped


class Holder:
    def __init__(self, root: str, extra: list) -> None:
        self.root = root
        self.extra = extra
        self.tasks: dict = {}
        self.by_pid: dict = {}
        self.sup = 0
        self.sock = None
        self.started = 0.0
        self.failures = 0
        self.restart_at = None
        self.stopping = False
        self.done = False
        self.reload_kill_at = None   # reloading: when to SIGKILL a supervisor that stays

    # ---- the supervisor ----------------------------------------------------------------
    def start_supervisor(self) -> None:
        self.restart_at = None
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0)
        try:
            os.set_inheritable(theirs.fileno(), True)
            args = [sys.executable, "-m", "dockyard.supervisor", "--serve", "--holder-fd",
                    str(theirs.fileno()), "--root", self.root, *self.extra]
            self.sup = os.posix_spawn(sys.executable, args, os.environ, setsid=True)
        except OSError as e:
            ours.close()
            _log("error", f"cannot start the supervisor: {e}")
            self._schedule_restart()
            return
        finally:
            theirs.close()
        self.started = time.monotonic()
        self.sock = ours
        _log("info", f"supervisor started (pid {self.sup}), {len(self.tasks)} tasks held")
        ours.settimeout(SEND_TIMEOUT)
        try:
            for task, h in list(self.tasks.items()):
                code, ns = h.exit if h.exit else ("-", "-")
                names = list(h.fds)
                send(ours, ["held", task, h.pid, code, ns, *names], [h.fds[n] for n in names])
            send(ours, ["ready"])
        except OSError as e:   # it died at once: its exit is reaped and handled
            _log("warning", f"could not hand over to the supervisor: {e}")

    def _schedule_restart(self) -> None:
        lived = time.monotonic() - self.started if self.started else 0.0
        if lived >= STABLE_AFTER:
            self.failures = 0
        delay = 0.0 if self.failures == 0 else min(RESTART_MAX_DELAY, 0.5 * 2 ** self.failures)
        self.failures += 1
        self.restart_at = time.monotonic() + delay

    def supervisor_exited(self, status: int) -> None:
        pid, self.sup = self.sup, 0
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        how = f"exit status {os.WEXITSTATUS(status)}" if os.WIFEXITED(status) else \
            f"signal {os.WTERMSIG(status)}"
        if self.stopping:
            _log("info", f"supervisor (pid {pid}) ended ({how}): the holder ends")
            self.done = True
        elif self.reload_kill_at is not None:
            # a reload: its successor at once, whatever the way it ended
            self.reload_kill_at = None
            self.failures = 0
            self.started = 0.0
            self.restart_at = time.monotonic()
            _log("info", f"supervisor (pid {pid}) ended ({how}) for a reload; "
                         f"{len(self.tasks)} tasks held; starting a new one")
        elif clean:
            _log("info", f"supervisor (pid {pid}) ended ({how}): the holder ends")
            self.done = True
        elif not self.tasks:
            _log("info", f"supervisor (pid {pid}) died ({how}) holding nothing: the holder ends")
            self.done = True
        else:
            self._schedule_restart()
            _log("warning", f"supervisor (pid {pid}) died ({how}); {len(self.tasks)} tasks held; "
                            f"restarting it in {self.restart_at - time.monotonic():.1f} s")

    def from_supervisor(self, wait: bool = True) -> bool:
        """Handle one message (``wait``: the socket is readable); False if none was there."""
        try:
            if wait:
                words, fds = recv(self.sock)
            else:
                self.sock.setblocking(False)
                try:
                    words, fds = recv(self.sock)
                finally:
                    self.sock.settimeout(SEND_TIMEOUT)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return False
        except OSError as e:
            _log("warning", f"supervisor connection: {e}")
            words, fds = [], []
        if not words:
            _close(fds)
            if self.sock is not None:
                self.sock.close()   # it is going: its exit is reaped
                self.sock = None
            return False
        self.handle(words, fds)
        return True

    def drain(self) -> None:
        """Everything the supervisor sent: before its children are reaped, so that a task
        it registered just before it died is known when its process ends."""
        while self.sock is not None and self.from_supervisor(wait=False):
            pass

    def handle(self, words: list, fds: list) -> None:
        op, args = words[0], words[1:]
        if not args or not _valid_id(args[0]):
            _log("warning", f"bad message from the supervisor: {' '.join(words)[:200]!r}")
            _close(fds)
            return
        task = args[0]
        if op == "hold" and len(args) >= 2 and args[1].isdigit() \
                and all(n in NAMES for n in args[2:]) and len(fds) == len(args) - 2:
            pid = int(args[1])
            h = self.tasks.get(task)
            if h is None or h.pid != pid:
                if h is not None:
                    self.by_pid.pop(h.pid, None)
                    _close(h.fds.values())
                h = self.tasks[task] = Held(pid)
                if pid:
                    self.by_pid[pid] = task
            for name, fd in zip(args[2:], fds):
                old = h.fds.pop(name, None)
                if old is not None:
                    _close([old])
                h.fds[name] = fd
        elif op == "drop" and all(n in NAMES for n in args[1:]) and not fds:
            h = self.tasks.get(task)
            for name in args[1:] if h is not None else ():
                fd = h.fds.pop(name, None)
                if fd is not None:
                    _close([fd])
        elif op == "release" and len(args) == 1 and not fds:
            h = self.tasks.pop(task, None)
            if h is not None:
                if self.by_pid.get(h.pid) == task:
                    del self.by_pid[h.pid]
                _close(h.fds.values())
        else:
            _log("warning", f"bad message from the supervisor: {' '.join(words)[:200]!r}")
            _close(fds)

    # ---- children --------------------------------------------------------------------
    def reap(self) -> None:
        self.drain()
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.sup:
                self.supervisor_exited(status)
                continue
            task = self.by_pid.pop(pid, None)
            if task is not None:
                self.task_exited(task, _exit_code(status))

    def task_exited(self, task: str, code: int) -> None:
        ns = time.time_ns()
        h = self.tasks[task]
        h.exit = (code, ns)
        from dockyard import statefiles

        try:
            statefiles.write(os.path.join(self.root, "tasks", task, "exit"),
                             f"{code} {ns}\n", fsync=True)
        except FileNotFoundError:
            pass   # forgotten meanwhile
        except OSError as e:
            _log("warning", f"task {task[:12]}: exit {code} not recorded: {e}")
        _log("info", f"task {task[:12]} exited with {code} while no supervisor was its parent")
        if self.sock is not None:
            try:
                send(self.sock, ["exit", task, code, ns])
            except OSError as e:
                _log("warning", f"could not tell the supervisor of task {task[:12]}'s exit: {e}")

    # ---- loop ------------------------------------------------------------------------
    def run(self) -> int:
        wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        for sig in (_signal.SIGCHLD, _signal.SIGTERM, _signal.SIGINT, _signal.SIGUSR1,
                    _signal.SIGHUP):
            _signal.signal(sig, _noop)
        _signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        _set_subreaper()
        self.start_supervisor()
        while not self.done:
            timeout = None
            for at in (self.restart_at, self.reload_kill_at):
                if at is not None:
                    left = max(0.0, at - time.monotonic())
                    timeout = left if timeout is None else min(timeout, left)
            watch = [wake_r] + ([self.sock] if self.sock is not None else [])
            try:
                ready, _, _ = select.select(watch, [], [], timeout)
            except InterruptedError:
                ready = []
            if wake_r in ready:
                try:
                    sigs = os.read(wake_r, 256)
                except BlockingIOError:
                    sigs = b""
                for s in set(sigs):
                    self.signalled(s)
            if self.sock is not None and self.sock in ready:
                self.from_supervisor()
            self.reap()
            if self.reload_kill_at is not None and self.sup \
                    and time.monotonic() >= self.reload_kill_at:
                _log("warning", f"supervisor (pid {self.sup}) did not stop within "
                                f"{RELOAD_KILL_AFTER:.0f} s of the reload: killing it")
                self.reload_kill_at = time.monotonic() + RELOAD_KILL_AFTER
                try:
                    os.kill(self.sup, _signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if self.restart_at is not None and not self.sup and not self.done \
                    and time.monotonic() >= self.restart_at:
                self.start_supervisor()
        return 0

    def signalled(self, sig: int) -> None:
        if sig in (_signal.SIGTERM, _signal.SIGINT):
            self.stopping = True
            if self.sup:
                try:
                    os.kill(self.sup, _signal.SIGTERM)
                except ProcessLookupError:
                    pass
            else:
                self.done = True
        elif sig == _signal.SIGUSR1:
            # someone needs a supervisor now (client.ensure_running): skip the back-off
            if not self.sup and not self.stopping:
                self.restart_at = time.monotonic()
        elif sig == _signal.SIGHUP:
            self.reload()

    def reload(self) -> None:
        """A new supervisor (new code) in place of the running one; what is held stays."""
        if self.stopping or self.done:
            return
        if not self.sup:
            _log("info", "reload: no supervisor runs; starting one now")
            self.failures = 0
            self.restart_at = time.monotonic()
            return
        if self.reload_kill_at is None:
            self.reload_kill_at = time.monotonic() + RELOAD_KILL_AFTER
        _log("info", f"reload: stopping the supervisor (pid {self.sup}) to start a new one")
        try:
            os.kill(self.sup, _signal.SIGTERM)
        except ProcessLookupError:
            pass


def _noop(signum, frame) -> None:
    pass


def _lock(root: str):
    """Our lock on ``root`` (an fd), or None and the pid of the holder that has it."""
    path = os.path.join(root, "holder.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            pid = int(os.pread(fd, 32, 0).decode().strip() or 0)
        except ValueError:
            pid = 0
        os.close(fd)
        return None, pid
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd, os.getpid()


def running_holder(root: str) -> int | None:
    """The pid of the holder that runs for ``root`` (it has the lock), else None."""
    try:
        fd = os.open(os.path.join(root, "holder.lock"), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
        except ValueError:
            return None
    finally:
        os.close(fd)
    return None


def main(args: list) -> int:
    root, extra = _parse(args)
    if root is None:
        return 2
    from dockyard import statefiles

    # the supervisor makes files inside containers with the usual modes (see server.main)
    os.umask(0o022)
    root = os.path.abspath(root)
    statefiles.makedirs(root)
    statefiles.makedirs(os.path.join(root, "tasks"))
    fd, pid = _lock(root)
    if fd is None:
        # one holder per root: the running one starts a supervisor if none runs
        _log("info", f"a holder already runs for {root} (pid {pid}): asking it for a supervisor")
        if pid:
            try:
                os.kill(pid, _signal.SIGUSR1)
            except OSError:
                pass
        return 0
    return Holder(root, extra).run()
