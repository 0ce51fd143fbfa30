"""A fork server for dockyard-runc: the runtime's command line without the interpreter start.

Starting Python and importing the runtime costs ~20 ms per `dockyard-runc`
call, more than the work of most calls. The supervisor, which runs the
runtime three times per container (create, start, delete), keeps one of
these processes: it imports the runtime once, then for each request forks a
worker that runs exactly what ``dockyard-runc ARGS...`` would run, with the
caller's stdin/stdout/stderr and working directory, and reports the worker's
wait status back. Nothing else differs from executing the command: the
worker is a fresh process (fork), starts its own session, and exits with the
command's code; containers created by a worker are reparented, when the
worker exits, to the nearest subreaper above this server (the supervisor),
exactly as when the supervisor executes the runtime itself. This process
must therefore never be a subreaper.

Wire format (a SOCK_SEQPACKET socket, one message per datagram):
request  ``{"id": N, "argv": [...], "cwd": "..."}`` with SCM_RIGHTS [stdin, stdout, stderr];
reply    ``{"id": N, "status": <wait status>}`` when the worker has exited;
         ``{"id": 0, "ready": true}`` once, when the server has imported everything.
End of file on the socket stops the server (running workers finish on their own).
"""

import array
import os
import sys

MAX_MSG = 1 << 20

PRELOAD = ("dockyard.runtime.cli", "dockyard.runtime.commands", "dockyard.runtime.container",
           "dockyard.runtime.init", "dockyard.runtime.sync", "dockyard.runtime.syscalls",
           "dockyard.runtime.foreground", "dockyard.runtime.hooks", "dockyard.runtime.state",
           "dockyard.runtime.spec", "dockyard.runtime.cgroups", "dockyard.runtime.cgroups.v1",
           "dockyard.runtime.cgroups.v2", "dockyard.runtime.execproc",
           "dockyard.runtime.seccomp", "dockyard.runtime.cgwarm", "dockyard.runtime.process",
           "dockyard.runtime.rootfs", "dockyard.runtime.caps", "json", "base64", "_sha256")


def encode_request(req_id: int, argv: list[str], cwd: str) -> bytes:
    import json
    return json.dumps({"id": req_id, "argv": argv, "cwd": cwd}).encode()


def decode(data: bytes) -> dict:
    import json
    msg = json.loads(data)
    if not isinstance(msg, dict) or not isinstance(msg.get("id"), int):
        raise ValueError("fork server message without an id")
    return msg


def _preload() -> None:
    import importlib
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a worker will report it if it matters
            pass
    try:
        import pyseccomp  # noqa: F401  (libseccomp loaded once, not per container)
    except Exception:  # noqa: BLE001
        pass


def _recv(sock):
    import socket
    fds = array.array("i")
    data, anc, flags, _ = sock.recvmsg(MAX_MSG, socket.CMSG_SPACE(16 * fds.itemsize))
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


def _worker(msg: dict, fds: list[int]) -> None:
    """In a worker: become `dockyard-runc ARGV` and exit with its code."""
    import signal
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        if msg.get("cwd"):
            os.chdir(msg["cwd"])
        argv = [str(a) for a in msg.get("argv") or ["dockyard-runc"]]
        sys.argv = argv
        from dockyard.runtime.cli import main
        code = int(main(argv[1:]) or 0)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - the caller sees it on stderr, as from the command
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code & 0xFF)


class _Spare:
    """A worker forked ahead of time, waiting for its one request: the fork (and the
    copy-on-write faults right after it) happens while nobody waits for it."""

    def __init__(self, close_in_child: list) -> None:
        import socket
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                for c in close_in_child:
                    c() if callable(c) else os.close(c)
                import gc
                gc.disable()   # a short life: no collector walking (and copying) shared pages
                data, fds = _recv(theirs)
                if not data:
                    os._exit(0)
                theirs.close()
                msg = decode(data)
            except BaseException:  # noqa: BLE001
                os._exit(1)
            _worker(msg, fds)
        theirs.close()
        self.pid, self.sock = pid, ours

    def hand(self, data: bytes, fds: list[int]) -> None:
        import socket
        self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        self.sock.close()

    def dismiss(self) -> None:
        self.sock.close()   # end of file: it exits


def serve(sock) -> int:
    import gc
    import json
    import select
    import signal
    _preload()
    gc.collect()
    gc.freeze()   # workers' collections never touch (and so never copy) the preloaded objects
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    in_child = [sock.close, wake_r, wake_w]
    running: dict[int, int] = {}   # worker pid -> request id
    spare = _Spare(in_child)
    sock.send(json.dumps({"id": 0, "ready": True}).encode())   # requests may come now
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    open_ = True
    while open_ or running:
        for fd, _ev in poller.poll():
            if fd == wake_r:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
                continue
            try:
                data, fds = _recv(sock)
            except InterruptedError:
                continue
            if not data:
                open_ = False
                poller.unregister(sock.fileno())
                if spare is not None:
                    spare.dismiss()
                    spare = None
                for f in fds:
                    os.close(f)
                continue
            try:
                msg = decode(data)
            except ValueError:
                for f in fds:
                    os.close(f)
                continue
            for attempt in (1, 2):
                try:
                    spare.hand(data, fds)
                    running[spare.pid] = msg["id"]
                    break
                except OSError:   # the spare died (killed?): fork a fresh one, once
                    spare.dismiss()
                    spare = _Spare(in_child)
            else:
                sock.send(json.dumps({"id": msg["id"], "status": 255 << 8}).encode())
            for f in fds:
                os.close(f)
            if spare.pid in running:
                spare = _Spare(in_child)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                running.clear()
                break
            if pid == 0:
                break
            req = running.pop(pid, None)
            if req is not None and open_:
                try:
                    sock.send(json.dumps({"id": req, "status": status}).encode())
                except OSError:
                    open_ = False
    return 0


def main() -> int:
    """Entry point: serve on fd 3 (a SOCK_SEQPACKET socket given by the caller)."""
    import socket
    fd = int(os.environ.pop("DOCKYARD_FORKSERVER_FD", "3"))
    sock = socket.socket(fileno=fd)
    try:
        return serve(sock)
    finally:
        sock.close()


def server_argv() -> list[str]:
    """argv that starts a fork server (it serves on fd 3)."""
    from . import runtime_argv
    return runtime_argv("dockyard.runtime.forkserver")


def run_and_exit() -> None:
    code = main()
    os._exit(code)
