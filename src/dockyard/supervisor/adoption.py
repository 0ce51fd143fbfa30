"""The supervisor's tasks across supervisor generations: each task's record in
``tasks/<id>/``, and the adoption of what a killed (or reloaded) supervisor ran: its
stdio back from the holder (or reopened by path), its log and output journal
recovered, its exit from the holder, else a pidfd and the recorded or zombie status.
A mixin of ``server.Supervisor``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

from dockyard import statefiles
from dockyard.supervisor import protocol
from dockyard.supervisor.jsonlog import rfc3339nano
from dockyard.supervisor.tasks import Task, _exit_code

log = logging.getLogger("dockyard.supervisor")

HOLDER_EXIT_WAIT = 2.0   # an adopted task's end -> the holder's word on its status
# An adopted task that had attached clients (its ``attached`` file) has its output read
# only once an attach for it arrives, or this long has passed: the daemon re-attaches
# the clients the killed supervisor had (containers/reattach.py), and what we read
# before that would reach the log only, a gap in the client's stream. The output waits
# in the pipe (or pty) meanwhile.
ADOPT_GRACE = 1.0


class Adoption:
    def _task_dir(self, task_id: str) -> str:
        return os.path.join(self.root, "tasks", task_id)

    def _save(self, task: Task) -> None:
        d = self._task_dir(task.id)
        statefiles.makedirs(d)
        statefiles.write(os.path.join(d, "task.json"), json.dumps(task.record()))

    def _load(self, held: dict | None = None) -> None:
        """The tasks of the supervisor before us, with what our holder kept of them
        (``held``: supervisor.holding.HeldTask by task id)."""
        held = dict(held or {})
        tdir = os.path.join(self.root, "tasks")
        names = os.listdir(tdir) if os.path.isdir(tdir) else []
        for name in names:
            try:
                with open(os.path.join(tdir, name, "task.json")) as f:
                    rec = json.load(f)
            except (OSError, ValueError):
                continue
            known = Task.__dataclass_fields__
            task = Task(**{k: v for k, v in rec.items() if k in known})
            h = held.pop(task.id, None)
            if h is not None and (task.status == "exited" or h.pid not in (0, task.pid)):
                h.close()   # an older run's, or one whose exit was recorded: not needed
                self.holder.release(task.id)
                h = None
            if h is None and task.status in ("running", "created") and not _pid_alive(task.pid):
                # We restarted and lost the child: its status is what our holder
                # recorded when it reaped it, else it is gone with it.
                recorded = _recorded_exit(self._task_dir(task.id))
                code, ns = recorded if recorded else (
                    task.exit_code if task.exit_code is not None else 255, time.time_ns())
                task.status, task.exit_code = "exited", code
                task.finished_at = task.finished_at or rfc3339nano(ns)
            if task.status == "exited":
                task.exit_event.set()
                self._settle_log(task)
            self.tasks[task.id] = task
            if task.status != "exited":
                self._adopt(task, h)
        for task_id, h in held.items():   # tasks we have no record of
            h.close()
            self.holder.release(task_id)

    def _adopt(self, task: Task, held=None) -> None:
        """A task a previous supervisor ran (it was killed): its output is read again
        from the descriptors our holder kept (the FIFOs' reading ends, a tty's pty
        master; its stdin pipe too), else from its FIFOs reopened by path (the
        container holds both ends, so nothing it wrote meanwhile is lost: it waited in
        the kernel's buffer). Its exit is what the holder reaped (the holder is its
        parent now), else learned through a pidfd (it is not our child: no wait
        status; the holder's record, its zombie's /proc stat, else 255)."""
        loop = asyncio.get_running_loop()
        task.held_back = True   # read by _read_adopted
        if os.path.exists(os.path.join(self._task_dir(task.id), "attached")):
            loop.call_later(ADOPT_GRACE, self._read_adopted, task)   # or at the first attach
        else:
            loop.call_soon(self._read_adopted, task)
        if held is not None:
            self._open_log(task)
            fds = held.fds
            held.fds = {}
            for fd in fds.values():
                os.set_blocking(fd, False)
            if "pty" in fds and "stdout" in fds and "relay" in fds and task.journal is not None:
                task.relay = (fds.pop("stdout"), fds.pop("relay"))
            for name, fd in fds.items():
                if name in ("stdout", "stderr"):
                    self._watch_output(task, fd, protocol.STDERR if name == "stderr"
                                       else protocol.STDOUT)
                elif name == "pty":
                    task.stdin_fd = fd
                    self._watch_output(task, fd, protocol.STDOUT)
                elif name == "stdin":
                    task.stdin_fd = fd
                else:   # "relay" without its pipe's other end
                    os.close(fd)
            if held.pid:
                self.reaped_by_holder.add(task.id)
            if held.exit_code is not None:   # it exited while no supervisor ran
                loop.call_soon(lambda: loop.create_task(
                    self._task_exited(task, held.exit_code, held.finished_ns)))
                return
        elif task.fifos:
            for name, stream in (("stdout", protocol.STDOUT), ("stderr", protocol.STDERR)):
                path = os.path.join(self._task_dir(task.id), f"{name}.fifo")
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                except OSError as e:
                    log.warning("task %s: cannot reopen its %s: %s", task.id[:12], name, e)
                    continue
                self._watch_output(task, fd, stream)
            self._open_log(task)
            self._hold(task, 0)   # the holder keeps them from now on (not its child)
        try:
            pidfd = os.pidfd_open(task.pid)
        except OSError:   # gone between the check and now
            loop.call_soon(self._lost_exit, task)
            return
        task.pidfd = pidfd   # type: ignore[attr-defined]

        def exited() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._lost_exit(task)

        loop.add_reader(pidfd, exited)

    def _read_adopted(self, task: Task) -> None:
        """An adopted task's output is read from now on (see ADOPT_GRACE)."""
        if not task.held_back:
            return
        task.held_back = False
        if not task.attachments:
            self._note_attached(task, False)   # none, or no client came back
        loop = asyncio.get_running_loop()
        for fd in task.out_fds:
            loop.add_reader(fd, self._on_output, task, fd)
            if task.tty and task.relay is not None:   # what the killed one spliced, first
                loop.call_soon(self._on_output, task, fd)

    def _note_attached(self, task: Task, attached: bool) -> None:
        """``tasks/<id>/attached`` exists while clients are attached: our successor holds
        the task's output back for their re-attach (ADOPT_GRACE)."""
        path = os.path.join(self._task_dir(task.id), "attached")
        try:
            if attached:
                os.close(statefiles.create(path))
            else:
                os.unlink(path)
        except OSError:
            pass   # no file: a successor reads at once (a gap for a client, no loss)

    def _lost_exit(self, task: Task) -> None:
        """An adopted task's process ended (its pidfd): the holder, its parent, reports
        its status (``_holder_exit``); if it has not within a bound, or is not its
        parent, the holder's record, the zombie's status, else 255."""
        if task.id in self.reaped_by_holder and self.holder is not None and self.holder.alive \
                and not getattr(task, "_waited_for_holder", False):
            task._waited_for_holder = True   # type: ignore[attr-defined]
            asyncio.get_running_loop().call_later(HOLDER_EXIT_WAIT, self._lost_exit, task)
            return
        if task.exiting or task.status == "exited":
            return
        recorded = _recorded_exit(self._task_dir(task.id))
        if recorded:
            code, ns = recorded
        else:
            code, ns = _zombie_exit_code(task.pid), None
        asyncio.get_running_loop().create_task(
            self._task_exited(task, 255 if code is None else code, ns))

    def _holder_exit(self, task_id: str, code: int, finished_ns: int) -> None:
        """The holder reaped an adopted task's process."""
        task = self.tasks.get(task_id)
        if task is None or task.exiting or task.status == "exited":
            return
        asyncio.get_running_loop().create_task(self._task_exited(task, code, finished_ns))

    def _hold(self, task: Task, pid: int) -> None:
        """Give our holder a duplicate of the task's descriptors."""
        if self.holder is None:
            return
        fds = {}
        for fd, stream in task.out_fds.items():
            if task.tty:
                fds["pty"] = fd
            else:
                fds["stderr" if stream == protocol.STDERR else "stdout"] = fd
        if task.relay is not None:
            fds["stdout"], fds["relay"] = task.relay
        if task.stdin_fd is not None and not task.tty:
            fds["stdin"] = task.stdin_fd
        self.holder.hold(task.id, pid, fds)


def _zombie_exit_code(pid: int) -> int | None:
    """The exit code of a process that is not our child, while it is a zombie (field 52
    of /proc/<pid>/stat is its wait status), else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if len(fields) < 50 or fields[0] != "Z":
        return None
    try:
        return _exit_code(int(fields[49]))
    except ValueError:
        return None


def _recorded_exit(task_dir: str) -> tuple[int, int] | None:
    """(exit code, finished ns) the holder recorded when it reaped the task, or None."""
    try:
        with open(os.path.join(task_dir, "exit")) as f:
            code, ns = f.read().split()
        return int(code), int(ns)
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
