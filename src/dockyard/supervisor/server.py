"""The supervisor process: parents container tasks, keeps their stdio, logs and exit codes.

One asyncio loop, single-threaded. It is a child subreaper, so when the OCI
runtime's ``create`` exits, the container's init is reparented to us and we
collect its exit status. All reaping goes through one SIGCHLD handler: nothing
else may call ``waitpid`` here (so no ``asyncio.subprocess``: children are
started with ``os.posix_spawn``).
"""

from __future__ import annotations

import asyncio
import array
import json
import logging
import os
import signal
import socket
import time

from dockyard import statefiles
from dockyard.supervisor import outjournal, protocol
from dockyard.supervisor.adoption import Adoption, _pid_alive
from dockyard.supervisor.forks import ForkServer, ForkServerDown, ForkServerLost
from dockyard.supervisor.jsonlog import JSONLogWriter, rfc3339nano
from dockyard.supervisor.stdio import Stdio
from dockyard.supervisor.tasks import (Attachment, ConflictError, NotFoundError, Task,
                                       TaskError, _exit_code)

log = logging.getLogger("dockyard.supervisor")

PR_SET_CHILD_SUBREAPER = 36
DRAIN_TIMEOUT = 2.0


def _set_subreaper() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


class Supervisor(Adoption, Stdio):
    def __init__(self, root: str) -> None:
        self.root = root
        self.tasks: dict[str, Task] = {}
        self.by_pid: dict[int, Task] = {}
        self.spawned: dict[int, asyncio.Future] = {}
        self.orphans: dict[int, int] = {}
        self.subscribers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.AbstractServer | None = None
        self.stopping = asyncio.Event()
        self.forks = ForkServer()
        self.probers: dict = {}   # container id -> supervisor.health.Prober
        self.holder = None        # supervisor.holding.HolderLink: our parent keeps our fds
        self.reaped_by_holder: set[str] = set()   # tasks whose exit the holder reports
        self._scratch: outjournal.Scratch | None = None

    # ---- children ------------------------------------------------------------------
    def _spawn(self, argv: list[str], stdio: tuple[int, int, int], cwd: str | None = None) -> int:
        actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(stdio)]
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions, setsid=True)
        return pid

    async def _run(self, argv: list[str], stdio: tuple[int, int, int],
                   forkserver: bool = False) -> int:
        if forkserver:
            try:
                return _exit_code(await self.forks.run(argv, stdio))
            except ForkServerDown as e:
                log.warning("%s; running %s directly", e, os.path.basename(argv[0]))
            except ForkServerLost as e:
                raise TaskError(f"OCI runtime failed: {e}") from None
        pid = self._spawn(argv, stdio)
        fut = asyncio.get_running_loop().create_future()
        self.spawned[pid] = fut
        if pid in self.orphans:  # reaped before we registered it
            fut.set_result(self.orphans.pop(pid))
        status = await fut
        return _exit_code(status)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.forks.pid:
                self.forks.exited()
                continue
            fut = self.spawned.pop(pid, None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(status)
                continue
            task = self.by_pid.pop(pid, None)
            if task is not None:
                self._reaped(task, status)
            else:
                self.orphans[pid] = status

    def _reaped(self, task: Task, status: int) -> None:
        """We reaped the task's process. Its status is written down at once, as the
        holder writes the ones it reaps: a supervisor killed while the output drains
        leaves it to the next one."""
        code, ns = _exit_code(status), time.time_ns()
        try:
            statefiles.write(os.path.join(self._task_dir(task.id), "exit"), f"{code} {ns}\n")
        except OSError:
            pass   # the exit is still saved with the task, and published
        asyncio.get_running_loop().create_task(self._task_exited(task, code, ns))

    async def _task_exited(self, task: Task, code: int, finished_ns: int | None = None) -> None:
        if task.exiting:
            return
        task.exiting = True
        # Let the streams drain: the process may have written just before exiting.
        if task.out_fds:
            task.drained = asyncio.Event()
            try:
                await asyncio.wait_for(task.drained.wait(), DRAIN_TIMEOUT)
            except asyncio.TimeoutError:
                pass
            task.drained = None
        for fd in list(task.out_fds):
            self._close_out(task, fd)
        self._close_log(task)
        self._close_stdin(task)
        if self.holder is not None:
            self.holder.release(task.id)
        self.reaped_by_holder.discard(task.id)
        task.status, task.exit_code = "exited", code
        task.finished_at = rfc3339nano(finished_ns or time.time_ns())
        prober = self.probers.pop(task.id, None)
        if prober is not None:
            prober.stop()
        try:
            self._save(task)
        except OSError as e:   # the exit is still published: the daemon records it
            log.warning("task %s: exit not saved: %s", task.id[:12], e)
        task.exit_event.set()  # attached clients' pumps close their connections
        self._publish({"event": "exit", "id": task.id, "container_id": task.container_id,
                       "kind": task.kind, "exit_code": code, "time": task.finished_at,
                       "pid": task.pid})

    def _publish(self, msg: dict) -> None:
        data = protocol.encode_message(msg)
        for w in list(self.subscribers):
            if w.is_closing():
                self.subscribers.discard(w)
            else:
                w.write(data)

    # ---- operations ----------------------------------------------------------------
    async def op_ping(self, msg: dict) -> dict:
        return {"pid": os.getpid(), "tasks": len(self.tasks),
                "holder": self.holder.pid if self.holder is not None and self.holder.alive else 0}

    async def op_list(self, msg: dict) -> dict:
        return {"tasks": [self._record_with_health(t) for t in self.tasks.values()]}

    def _record_with_health(self, t: Task) -> dict:
        rec = t.record()
        p = self.probers.get(t.id)
        if p is not None:
            rec["health"] = p.health.view()
        return rec

    # ---- health checks (supervisor/health.py) ------------------------------------------
    async def op_health(self, msg: dict) -> dict:
        """Run the container's health check from now on (replacing an earlier one);
        ``health: null`` stops it."""
        from dockyard.supervisor import health

        task = self._task(msg["id"])
        old = self.probers.pop(task.id, None)
        if old is not None:
            old.stop()
        if not msg.get("health"):
            return {}
        rt = {k: msg.get(k) for k in ("runtime", "runtime_root", "runtime_args", "forkserver")}
        pfile = os.path.join(self._task_dir(task.id), "health-process.json")
        health.write_process(pfile, msg["process"])

        async def run_exec(process: dict, out_w: int):
            pid_file = os.path.join(self._task_dir(task.id), "health.pid")
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            try:
                argv = self._runtime_argv(rt, "exec", "--pid-file", pid_file, "--process", pfile,
                                          "--detach", task.id)
                code = await self._run(argv, (devnull, out_w, out_w), bool(rt.get("forkserver")))
                os.close(err_w)
                err_w = -1
                if code != 0:
                    return None, _runtime_error(None, err_r, "exec", code)
                with open(pid_file) as f:
                    return int(f.read().strip()), ""
            except (OSError, ValueError, TaskError) as e:
                return None, str(e)
            finally:
                for fd in (err_r, err_w, devnull):
                    if fd >= 0:
                        os.close(fd)

        def wait_pid(pid: int) -> asyncio.Future:
            fut = asyncio.get_running_loop().create_future()
            if pid in self.orphans:
                fut.set_result(self.orphans.pop(pid))
            else:
                self.spawned[pid] = fut
            return fut

        p = health.Prober(task, msg["health"], msg["process"], self._task_dir(task.id),
                          run_exec, wait_pid, self._publish, saved=msg.get("state"))
        self.probers[task.id] = p
        p.start()
        return {"health": p.health.view()}

    async def op_health_pause(self, msg: dict) -> dict:
        """The container was paused (``paused: true``) or unpaused: its probes stop or
        start again (supervisor/health.py)."""
        p = self.probers.get(self._task(msg["id"]).id)
        if p is None:
            return {}
        if msg.get("paused"):
            p.pause()
        else:
            p.resume()
        return {"health": p.health.view()}

    async def op_get(self, msg: dict) -> dict:
        return {"task": self._task(msg["id"]).record()}

    def _task(self, task_id: str) -> Task:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise NotFoundError(f"no such task: {task_id}") from None

    def _runtime_argv(self, msg: dict, *args: str) -> list[str]:
        rt = msg.get("runtime") or "dockyard-runc"
        path = rt if os.path.isabs(rt) else _which(rt)
        argv = [path]
        if msg.get("runtime_root"):
            argv += ["--root", msg["runtime_root"]]
        return argv + list(msg.get("runtime_args") or []) + list(args)

    async def _start_process(self, task: Task, msg: dict, argv_tail: list[str]) -> None:
        """Run ``runtime <argv_tail>`` with the task's stdio; fills task.pid."""
        tdir = self._task_dir(task.id)
        statefiles.makedirs(tdir)
        pid_file = os.path.join(tdir, "pid")
        log_file = os.path.join(tdir, "runtime.log")
        for p in (pid_file,):
            if os.path.exists(p):
                os.unlink(p)
        # the runtime appends to its log: made here, owner-only
        os.close(statefiles.create(log_file))
        to_close: list[int] = []
        console_sock = None
        extra: list[str] = ["--pid-file", pid_file]
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        to_close.append(devnull)
        err_r, err_w = os.pipe()
        try:
            if task.tty:
                # A short path: unix socket paths are limited to 108 bytes.
                import secrets
                import tempfile

                console_path = os.path.join(tempfile.gettempdir(),
                                            f"dyc-{secrets.token_hex(8)}.sock")
                console_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                console_sock.bind(console_path)
                console_sock_path = console_path
                console_sock.listen(1)
                console_sock.setblocking(False)
                extra += ["--console-socket", console_path]
                stdio = (devnull, devnull, err_w)
            else:
                if task.open_stdin:
                    in_r, in_w = os.pipe()
                    to_close.append(in_r)
                    task.stdin_fd = in_w
                    os.set_blocking(in_w, False)
                else:
                    in_r = devnull
                # FIFOs, not pipes: a supervisor that replaces us (we were killed)
                # reopens them by path. The container gets them read-write, so they
                # always have a reader: while no supervisor reads, its writes wait in
                # the kernel's buffer instead of failing with EPIPE.
                out_r, out_w = _fifo(os.path.join(tdir, "stdout.fifo"))
                e_r, e_w = _fifo(os.path.join(tdir, "stderr.fifo"))
                task.fifos = True
                to_close += [out_w, e_w]
                self._watch_output(task, out_r, protocol.STDOUT)
                self._watch_output(task, e_r, protocol.STDERR)
                stdio = (in_r, out_w, e_w)
            argv = self._runtime_argv(msg, "--log", log_file, "--log-format", "json")
            argv += argv_tail[:1] + extra + argv_tail[1:]
            runner = asyncio.ensure_future(self._run(argv, stdio, bool(msg.get("forkserver"))))
            master = None
            if console_sock is not None:
                master = await _receive_console(console_sock, runner)
            code = await runner
            if code != 0:
                if master is not None:
                    os.close(master)
                raise TaskError(_runtime_error(log_file, err_r, argv_tail[0], code))
            with open(pid_file) as f:
                task.pid = int(f.read().strip())
            # the runtime wrote it with its umask's mode (runc: 0644)
            statefiles.restrict(pid_file)
            if master is not None:
                os.set_blocking(master, False)
                task.stdin_fd = master
                if task.journal is not None:
                    task.relay = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
                self._watch_output(task, master, protocol.STDOUT)
        except BaseException:
            for fd in list(task.out_fds):
                self._close_out(task, fd)
            if task.stdin_fd is not None:
                os.close(task.stdin_fd)
                task.stdin_fd = None
            raise
        finally:
            for fd in to_close + [err_w, err_r]:
                try:
                    os.close(fd)
                except OSError:
                    pass
            if console_sock is not None:
                console_sock.close()
                try:
                    os.unlink(console_sock_path)
                except OSError:
                    pass
        self.by_pid[task.pid] = task
        self._hold(task, task.pid)
        if task.pid in self.orphans:  # died before we knew its pid
            self.by_pid.pop(task.pid)
            self._reaped(task, self.orphans.pop(task.pid))

    async def op_create(self, msg: dict) -> dict:
        cid = msg["id"]
        old = self.tasks.get(cid)
        if old is not None:
            if old.status != "exited":
                raise ConflictError(f"task {cid} already exists")
            self._forget(old)
        task = Task(id=cid, container_id=cid, kind="container", tty=bool(msg.get("tty")),
                    open_stdin=bool(msg.get("open_stdin")), stdin_once=bool(msg.get("stdin_once")),
                    log_path=msg.get("log_path") or "")
        if task.log_path:
            task.log_max_size = int(msg.get("log_max_size") or 10 << 20)
            task.log_max_file = int(msg.get("log_max_file") or 3)
            task.log_compress = bool(msg.get("log_compress"))
        self.tasks[cid] = task
        try:
            if task.log_path:
                task.log = JSONLogWriter(task.log_path, task.log_max_size, task.log_max_file,
                                         compress=task.log_compress)
                statefiles.makedirs(self._task_dir(cid))
                task.journal = outjournal.open_for(self._task_dir(cid), task.log, cid[:12])
            await self._start_process(task, msg, ["create", "--bundle", msg["bundle"], cid])
            task.status = "created"
            task.runtime = {k: msg.get(k) for k in ("runtime", "runtime_root", "runtime_args",
                                                    "forkserver")}
            self._save(task)
        except BaseException:
            # nothing of it stays (the daemon deletes the runtime's container)
            self.by_pid.pop(task.pid, None)
            if self.holder is not None:
                self.holder.release(cid)
            for fd in list(task.out_fds):
                self._close_out(task, fd)
            self._close_stdin(task)
            self._close_log(task)
            self.tasks.pop(cid, None)
            import shutil

            shutil.rmtree(self._task_dir(cid), ignore_errors=True)
            raise
        return {"pid": task.pid}

    async def op_start(self, msg: dict) -> dict:
        task = self._task(msg["id"])
        if task.status != "created":
            raise ConflictError(f"task {task.id} is {task.status}, not created")
        if msg.get("log_attrs") and task.log is not None:
            # fixed for the task: recorded before it runs, so a successor writes them too
            task.log_attrs = dict(msg["log_attrs"])
            task.log.set_attrs(task.log_attrs)
            self._save(task)
        rt = dict(task.runtime or {})
        rt.update({k: msg[k] for k in ("runtime", "runtime_root", "runtime_args", "forkserver")
                   if k in msg})
        if rt.get("forkserver") and rt.get("runtime_root") and not rt.get("runtime_args"):
            # Our own runtime: its `start` only opens the init's FIFO and records the new
            # status; done here, it saves a worker's round trip (~2 ms of a run).
            try:
                done = await asyncio.to_thread(_start_here, rt["runtime_root"], task.id)
            except Exception as e:  # noqa: BLE001 - reported as the command would
                raise TaskError(f"OCI runtime start failed: {e}") from None
            if not done:
                await self._start_by_command(task, rt)
        else:
            await self._start_by_command(task, rt)
        if task.status == "created":
            task.status = "running"
        task.started_at = rfc3339nano(time.time_ns())
        self._save(task)
        return {"pid": task.pid}

    async def _start_by_command(self, task: Task, rt: dict) -> None:
        err_r, err_w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            code = await self._run(self._runtime_argv(rt, "start", task.id), (devnull, devnull, err_w),
                                   bool(rt.get("forkserver")))
            os.close(err_w)
            err_w = -1
            if code != 0:
                raise TaskError(_runtime_error(None, err_r, "start", code))
        finally:
            for fd in (err_r, err_w, devnull):
                if fd >= 0:
                    os.close(fd)

    async def op_runtime(self, msg: dict) -> dict:
        """Run one runtime command (kill, delete, pause, ps, ...) and return its exit code
        and output; through the fork server when it is our own runtime."""
        args = [str(a) for a in msg["args"]]
        argv = self._runtime_argv(msg, *args)
        loop = asyncio.get_running_loop()
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        readers = []
        try:
            for fd in (out_r, err_r):
                os.set_blocking(fd, False)
                readers.append(_collect(loop, fd))
            try:
                code = await self._run(argv, (devnull, out_w, err_w), bool(msg.get("forkserver")))
            finally:
                for fd in (out_w, err_w, devnull):
                    os.close(fd)
            out, err = await asyncio.gather(*readers)
        finally:
            for fd in (out_r, err_r):
                try:
                    loop.remove_reader(fd)
                    os.close(fd)
                except OSError:
                    pass
        return {"code": code, "stdout": out.decode(errors="replace"),
                "stderr": err.decode(errors="replace")}

    async def op_exec(self, msg: dict, writer: asyncio.StreamWriter | None = None) -> dict:
        cid, eid = msg["container_id"], msg["id"]
        parent = self._task(cid)
        if parent.status != "running":
            raise ConflictError(f"Container {cid} is not running")
        task = Task(id=eid, container_id=cid, kind="exec", tty=bool(msg.get("tty")),
                    open_stdin=bool(msg.get("open_stdin")), stdin_once=True)
        self.tasks[eid] = task
        tdir = self._task_dir(eid)
        statefiles.makedirs(tdir)
        proc_file = os.path.join(tdir, "process.json")
        statefiles.write(proc_file, json.dumps(msg["process"]))
        if writer is not None and msg.get("attach"):
            task.attachments.append(Attachment(writer, msg.get("stdout", True),
                                               msg.get("stderr", True), msg.get("stdin", False),
                                               ready=False))
        try:
            await self._start_process(task, msg, ["exec", "--process", proc_file, "--detach", cid])
        except BaseException:
            self.tasks.pop(eid, None)
            raise
        task.status = "running"
        task.started_at = rfc3339nano(time.time_ns())
        self._save(task)
        return {"pid": task.pid}

    async def op_resize(self, msg: dict) -> dict:
        task = self._task(msg["id"])
        if not task.tty or task.stdin_fd is None:
            return {}
        import fcntl
        import struct
        import termios

        fcntl.ioctl(task.stdin_fd, termios.TIOCSWINSZ,
                    struct.pack("HHHH", int(msg["height"]), int(msg["width"]), 0, 0))
        return {}

    async def op_wait(self, msg: dict) -> dict:
        task = self._task(msg["id"])
        await task.exit_event.wait()
        return {"exit_code": task.exit_code, "finished_at": task.finished_at}

    async def op_close_stdin(self, msg: dict) -> dict:
        self._close_stdin(self._task(msg["id"]))
        return {}

    async def op_forget(self, msg: dict) -> dict:
        task = self.tasks.get(msg["id"])
        if task is None:
            return {}
        if task.status != "exited" and _pid_alive(task.pid):
            raise ConflictError(f"task {task.id} is still running")
        self._forget(task)
        return {}

    def _forget(self, task: Task) -> None:
        self.tasks.pop(task.id, None)
        prober = self.probers.pop(task.id, None)
        if prober is not None:
            prober.stop()
        self.by_pid.pop(task.pid, None)
        for fd in list(task.out_fds):
            self._close_out(task, fd)
        self._close_stdin(task)
        if self.holder is not None:
            self.holder.release(task.id)
        self.reaped_by_holder.discard(task.id)
        self._close_log(task)
        import shutil

        shutil.rmtree(self._task_dir(task.id), ignore_errors=True)
        for t in [t for t in self.tasks.values() if t.container_id == task.id]:
            self._forget(t)

    async def op_shutdown(self, msg: dict) -> dict:
        self.stopping.set()
        return {}

    # ---- connections ---------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = protocol.LineDecoder()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for msg in decoder.feed(data):
                    op = msg.get("op")
                    if op == "attach":
                        await self._attach(msg, reader, writer, decoder.rest())
                        return
                    if op == "subscribe":
                        self.subscribers.add(writer)
                        writer.write(protocol.encode_message({"ok": True, "seq": msg.get("seq")}))
                        continue
                    if op == "exec" and msg.get("attach"):
                        await self._exec_attached(msg, reader, writer, decoder.rest())
                        return
                    asyncio.get_running_loop().create_task(self._answer(msg, writer))
        except (protocol.ProtocolError, ConnectionError) as e:
            log.info("control connection closed: %s", e)
        finally:
            self.subscribers.discard(writer)
            writer.close()

    async def _answer(self, msg: dict, writer: asyncio.StreamWriter) -> None:
        seq = msg.get("seq")
        handler = getattr(self, f"op_{msg.get('op')}", None)
        try:
            if handler is None:
                raise TaskError(f"unknown operation {msg.get('op')!r}")
            reply = {"ok": True, "seq": seq, **(await handler(msg))}
        except TaskError as e:
            reply = {"ok": False, "seq": seq, "error": str(e), "kind": e.kind}
        except (KeyError, ValueError, TypeError) as e:
            reply = {"ok": False, "seq": seq, "error": f"bad request: {e}", "kind": "InvalidParameter"}
        except OSError as e:
            reply = {"ok": False, "seq": seq, "error": str(e), "kind": "DockyardError"}
        if not writer.is_closing():
            writer.write(protocol.encode_message(reply))

    async def _attach(self, msg: dict, reader, writer, early: bytes) -> None:
        try:
            task = self._task(msg["id"])
        except TaskError as e:
            writer.write(protocol.encode_message({"ok": False, "error": str(e), "kind": e.kind}))
            await writer.drain()
            writer.close()
            return
        a = Attachment(writer, bool(msg.get("stdout")), bool(msg.get("stderr")), bool(msg.get("stdin")))
        if msg.get("pid") and msg["pid"] != task.pid:
            # a re-attach (the daemon's, after we were replaced) to the run it had: that
            # one ended (a restart made this one)
            writer.write(protocol.encode_message({"ok": True, "tty": task.tty, "status": "exited",
                                                  "exit_code": None, "pid": task.pid}))
            await writer.drain()
            writer.close()
            return
        writer.write(protocol.encode_message({"ok": True, "tty": task.tty, "status": task.status,
                                              "exit_code": task.exit_code, "pid": task.pid}))
        if task.status == "exited":
            await writer.drain()
            writer.close()
            return
        task.attachments.append(a)
        self._read_adopted(task)   # after the attachment is in place: nothing skips it
        await self._pump_stdin(task, a, reader, early)

    async def _exec_attached(self, msg: dict, reader, writer, early: bytes) -> None:
        try:
            reply = await self.op_exec(msg, writer)
            writer.write(protocol.encode_message({"ok": True, **reply}))
            self.tasks[msg["id"]].attachments and self.tasks[msg["id"]].attachments[0].release()
        except TaskError as e:
            writer.write(protocol.encode_message({"ok": False, "error": str(e), "kind": e.kind}))
            writer.close()
            return
        task = self.tasks[msg["id"]]
        await self._pump_stdin(task, task.attachments[0], reader, early)

    async def _pump_stdin(self, task: Task, a: Attachment, reader, early: bytes) -> None:
        """Copy the client's bytes into the task's stdin; end when the task ends."""
        if len(task.attachments) == 1:
            self._note_attached(task, True)

        async def copy() -> None:
            try:
                if early and a.stdin:
                    self._write_stdin(task, early)
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    if a.stdin:
                        self._write_stdin(task, data)
            except ConnectionError:
                pass
            if a.stdin and task.stdin_once and not task.tty:
                self._close_stdin(task)

        copier = asyncio.ensure_future(copy())
        exited = asyncio.ensure_future(task.exit_event.wait())
        await asyncio.wait({copier, exited}, return_when=asyncio.FIRST_COMPLETED)
        if copier.done() and not exited.done():
            # The client half-closed; keep sending output until the task ends or it goes.
            await exited
        copier.cancel()
        exited.cancel()
        if a in task.attachments:
            task.attachments.remove(a)
            if not task.attachments:
                self._note_attached(task, False)
        if a.writer.can_write_eof() and not a.writer.is_closing():
            await a.writer.drain()
        a.writer.close()

    async def serve(self, sock_path: str) -> None:
        statefiles.makedirs(self.root)
        statefiles.makedirs(os.path.join(self.root, "tasks"))
        if os.path.exists(sock_path) and _answers(sock_path):
            # another supervisor serves this root (two were started at once): it owns
            # the tasks (their FIFOs, their exits); we leave before touching them
            log.warning("a supervisor already serves %s: exiting", sock_path)
            return
        _set_subreaper()
        held = self.holder.receive() if self.holder is not None else {}
        self._load(held)
        if self.holder is not None:
            self.holder.start(self._holder_exit)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        self.server = await asyncio.start_unix_server(self.handle, sock_path)
        os.chmod(sock_path, 0o600)
        self._reap()
        loop.run_in_executor(None, _preimport)   # the first start does not wait for it
        await self.stopping.wait()
        self.server.close()
        self.forks.close()
        for t in self.tasks.values():
            if t.journal is not None:
                t.journal.close()   # its partial lines wait there for the next supervisor
            elif t.log:
                t.log.flush_partial()
        if self.holder is not None:
            self.holder.flush()   # what it holds is the next supervisor's (a reload)


def _collect(loop: asyncio.AbstractEventLoop, fd: int) -> asyncio.Future:
    """Everything read from non-blocking ``fd`` until end of file."""
    fut = loop.create_future()
    buf = bytearray()

    def readable() -> None:
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)
                if not fut.done():
                    fut.set_result(bytes(buf))
                return
            buf.extend(data)

    loop.add_reader(fd, readable)
    return fut


def writer_closed(w: asyncio.StreamWriter) -> bool:
    return w.is_closing()


def _answers(sock_path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1)
        s.connect(sock_path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _fifo(path: str) -> tuple[int, int]:
    """A FIFO at ``path`` (made anew, owner-only): (our non-blocking reading end, the
    container's read-write end)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)
    rw = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        r = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except BaseException:
        os.close(rw)
        raise
    return r, rw


def _which(name: str) -> str:
    import shutil

    path = shutil.which(name)
    if path is None:
        raise TaskError(f"runtime {name!r} not found in PATH")
    return path


async def _receive_console(sock: socket.socket, runner: asyncio.Future) -> int | None:
    """Accept the runtime's connection on the console socket and take the pty master."""
    loop = asyncio.get_running_loop()
    accept = asyncio.ensure_future(loop.sock_accept(sock))
    done, _ = await asyncio.wait({accept, runner}, return_when=asyncio.FIRST_COMPLETED)
    if accept not in done:
        accept.cancel()
        return None
    conn, _ = accept.result()
    with conn:
        conn.setblocking(True)
        fds = array.array("i")
        msg, anc, _flags, _addr = await loop.run_in_executor(
            None, conn.recvmsg, 4096, socket.CMSG_SPACE(fds.itemsize))
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if not fds:
        return None
    return fds[0]


def _preimport() -> None:
    try:
        import dockyard.runtime.container  # noqa: F401  (see _start_here)
    except Exception:  # noqa: BLE001 - _start_here will say what is wrong
        pass


def _start_here(runtime_root: str, cid: str) -> bool:
    """`dockyard-runc --root ROOT start CID`, in this process (our runtime's own code).
    False, and nothing done, for a container with poststart hooks: hooks are child
    processes, and this process reaps every child it has (waitpid(-1))."""
    from dockyard.runtime.container import Runtime

    rt = Runtime(runtime_root)
    spec = (rt.store.load(cid).get("dockyard") or {}).get("spec") or {}
    if (spec.get("hooks") or {}).get("poststart"):
        return False
    rt.start(cid)
    return True


def _runtime_error(log_file: str | None, err_r: int, step: str, code: int) -> str:
    """The runtime's own words for a failure: its JSON log's last error, else its stderr."""
    msg = ""
    if log_file and os.path.exists(log_file):
        with open(log_file, errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("level") in ("error", "fatal"):
                    msg = entry.get("msg", "")
    if not msg:
        os.set_blocking(err_r, False)
        try:
            msg = os.read(err_r, 65536).decode(errors="replace").strip()
        except OSError:
            msg = ""
    return f"OCI runtime {step} failed: {msg or f'exit status {code}'}"


def main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="dockyard supervisor")
    p.add_argument("--root", required=True)
    p.add_argument("--socket")
    p.add_argument("--log-level", default="info")
    p.add_argument("--holder-fd", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s supervisor %(levelname)s %(message)s")
    # the runtimes we run create files in containers' root filesystems: the usual umask
    # (the daemon's); our own state is written with explicit owner-only modes
    os.umask(0o022)
    sup = Supervisor(args.root)
    if args.holder_fd is not None:
        from dockyard.supervisor.holding import HolderLink

        sup.holder = HolderLink(args.holder_fd)
    asyncio.run(sup.serve(args.socket or os.path.join(args.root, "supervisor.sock")))
    return 0
