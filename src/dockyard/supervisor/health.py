"""Health checks, run by the supervisor beside the container (so they go on while the
daemon stops or restarts), with dockerd's rules (daemon/health.go):

* the first probe comes one interval after the start (``StartInterval`` instead while
  the start period lasts); each probe is ``<runtime> exec`` of the test with the
  container's user, environment and working directory; its stdout and stderr together,
  cut at 4096 bytes, are the result's ``Output``; one that outlives ``Timeout`` is
  killed and counts as failed (exit code -1);
* exit 0 is healthy and resets ``FailingStreak``; a failure adds to it, except during
  the start period while the container was never healthy; ``Retries`` failures in a
  row make it unhealthy; ``Log`` keeps the last five results;
* while the container is paused no probe runs (one under way is killed and its result
  dropped) and the status is ``unhealthy``, streak and log kept, with no event
  (dockerd's updateHealthMonitor/CloseMonitorChannel, seen with Debian's 20.10); after
  the unpause probes start again one interval later.

The decision table (``Health.record``) is plain and tested alone; ``Prober`` is the
loop. Every result is pushed to the daemon's event subscribers (``health`` events
carrying the whole state); the state is also in the task's record (``list``), so a
restarted daemon finds it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable

MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096
# dockerd's defaults (api/types/container: DefaultHealthInterval... )
DEFAULT_INTERVAL = 30_000_000_000
DEFAULT_TIMEOUT = 30_000_000_000
DEFAULT_START_INTERVAL = 5_000_000_000
DEFAULT_RETRIES = 3

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"


@dataclass
class Health:
    """The state shown as inspect's ``.State.Health``."""
    status: str = STARTING
    failing_streak: int = 0
    log: list = field(default_factory=list)

    def view(self) -> dict:
        return {"Status": self.status, "FailingStreak": self.failing_streak, "Log": list(self.log)}

    def record(self, result: dict, retries: int, in_start_period: bool) -> bool:
        """Add one probe's result; True if the status changed."""
        old = self.status
        self.log = (self.log + [result])[-MAX_LOG_ENTRIES:]
        if result["ExitCode"] == 0:
            self.failing_streak = 0
            self.status = HEALTHY
        elif not (in_start_period and self.status == STARTING):
            self.failing_streak += 1
            if self.failing_streak >= retries:
                self.status = UNHEALTHY
        return self.status != old


def settings(cfg: dict) -> dict:
    """The probe's timing, nanoseconds, with dockerd's defaults for zeros."""
    return {"interval": int(cfg.get("Interval") or 0) or DEFAULT_INTERVAL,
            "timeout": int(cfg.get("Timeout") or 0) or DEFAULT_TIMEOUT,
            "start_period": int(cfg.get("StartPeriod") or 0),
            "start_interval": int(cfg.get("StartInterval") or 0) or DEFAULT_START_INTERVAL,
            "retries": int(cfg.get("Retries") or 0) or DEFAULT_RETRIES}


def _rfc3339(ns: int) -> str:
    from dockyard.supervisor.jsonlog import rfc3339nano

    return rfc3339nano(ns)


class Prober:
    """One container's probe loop in the supervisor.

    ``run_exec(process_file) -> (pid or None, error text)`` starts the probe through the
    runtime (``exec --detach``); ``wait_pid(pid) -> future of the wait status``;
    ``publish(msg)`` tells the daemon."""

    def __init__(self, task: Any, cfg: dict, process: dict, state_dir: str,
                 run_exec: Callable, wait_pid: Callable, publish: Callable,
                 saved: dict | None = None) -> None:
        self.task = task
        self.cfg = settings(cfg)
        self.process = process
        self.state_dir = state_dir
        self.run_exec = run_exec
        self.wait_pid = wait_pid
        self.publish = publish
        self.health = Health()
        if saved:
            self.health = Health(saved.get("Status", STARTING), int(saved.get("FailingStreak", 0)),
                                 list(saved.get("Log") or []))
        self.started = time.monotonic()
        self.loop_task: asyncio.Task | None = None
        self.paused = False

    def start(self) -> None:
        self.loop_task = asyncio.get_running_loop().create_task(self._loop())

    def stop(self) -> None:
        if self.loop_task is not None:
            self.loop_task.cancel()
            self.loop_task = None

    def pause(self) -> None:
        """The container was paused: no probes until ``resume``, and unhealthy."""
        self.paused = True
        self.stop()
        self.health.status = UNHEALTHY

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.start()

    def _in_start_period(self) -> bool:
        return (time.monotonic() - self.started) * 1e9 < self.cfg["start_period"]

    async def _loop(self) -> None:
        try:
            while self.task.status in ("created", "running"):
                period = self.cfg["interval"]
                if self.health.status == STARTING and self._in_start_period():
                    period = self.cfg["start_interval"]
                await asyncio.sleep(period / 1e9)
                if self.task.status != "running":
                    break
                in_start = self._in_start_period()
                result = await self._probe()
                if self.task.status != "running":
                    break   # the container ended meanwhile: that result means nothing
                changed = self.health.record(result, self.cfg["retries"], in_start)
                self.publish({"event": "health", "kind": "health", "id": self.task.id,
                              "health": self.health.view(), "changed": changed})
        except asyncio.CancelledError:
            pass

    async def _probe(self) -> dict:
        start = time.time_ns()
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        loop = asyncio.get_running_loop()
        buf = bytearray()
        eof = loop.create_future()

        def readable() -> None:
            try:
                data = os.read(out_r, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(out_r)
                if not eof.done():
                    eof.set_result(None)
                return
            if len(buf) < MAX_OUTPUT:
                buf.extend(data[: MAX_OUTPUT - len(buf)])

        os.set_blocking(out_r, False)
        loop.add_reader(out_r, readable)
        code: int
        try:
            try:
                pid, err = await self.run_exec(self.process, out_w)
            finally:
                os.close(out_w)
            if pid is None:
                code, text = -1, err
            else:
                timeout = self.cfg["timeout"] / 1e9
                try:
                    status = await asyncio.wait_for(asyncio.shield(self.wait_pid(pid)), timeout)
                    code = (128 + os.WTERMSIG(status)) if os.WIFSIGNALED(status) \
                        else os.WEXITSTATUS(status)
                    try:   # what it wrote before it left (its children may hold the pipe)
                        await asyncio.wait_for(asyncio.shield(eof), 0.5)
                    except asyncio.TimeoutError:
                        pass
                    text = buf.decode(errors="replace")
                except asyncio.TimeoutError:
                    _kill(pid)
                    code = -1
                    text = f"Health check exceeded timeout ({_duration(self.cfg['timeout'])})"
                except asyncio.CancelledError:   # stopped or paused: as dockerd's cancelProbe
                    _kill(pid)
                    raise
        finally:
            try:
                loop.remove_reader(out_r)
            except (ValueError, RuntimeError):
                pass
            os.close(out_r)
        return {"Start": _rfc3339(start), "End": _rfc3339(time.time_ns()), "ExitCode": code,
                "Output": text}


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _duration(ns: int) -> str:
    """Go's time.Duration String for whole milliseconds and up (30s, 1.5s, 1m0s)."""
    s = ns / 1e9
    if ns < 1_000_000_000:
        return f"{ns / 1e6:g}ms"
    if s < 60:
        return f"{s:g}s"
    m, sec = divmod(s, 60)
    if m < 60:
        return f"{int(m)}m{sec:g}s"
    h, m = divmod(m, 60)
    return f"{int(h)}h{int(m)}m{sec:g}s"


def write_process(path: str, process: dict) -> None:
    from dockyard import statefiles

    statefiles.write(path, json.dumps(process))
